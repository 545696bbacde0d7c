"""`keepfix gate` on real input: the examples/ policies over the public-manifest corpus."""

from __future__ import annotations

import io
import json
import os
import pathlib

import pytest

from keepfix.cli import gate, sources

REPO = pathlib.Path(__file__).resolve().parents[3]
EXAMPLES = REPO / "examples"
CORPUS = pathlib.Path(
    os.environ.get("KEEPFIX_CORPUS", REPO.parent / "shared" / "corpus" / "manifests")
)


def example_policies() -> list[str]:
    files = sorted(EXAMPLES.glob("mitigation-*.yaml")) + sorted(EXAMPLES.glob("guardrail-*.yaml"))
    return [str(f) for f in files]


needs_examples = pytest.mark.skipif(
    not example_policies(), reason="examples/ has no Mitigations or Guardrails yet"
)
needs_corpus = pytest.mark.skipif(
    not CORPUS.is_dir(), reason=f"the manifest corpus is not at {CORPUS}"
)


def run(policies: list[str], manifests: list[str], fmt: str = "json") -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = gate.gate(
        policies=policies,
        manifests=manifests,
        output_format=fmt,
        stdin=io.StringIO(),
        stdout=out,
        stderr=err,
    )
    return code, out.getvalue(), err.getvalue()


@needs_examples
@needs_corpus
@pytest.mark.parametrize("fmt", ["text", "json", "sarif", "junit"])
def test_the_gate_reads_the_whole_corpus_without_bad_input(fmt: str) -> None:
    """Every real manifest parses and is checked: exit 0 or 1, never 2 or a crash."""
    code, out, err = run(example_policies(), [str(CORPUS)], fmt)
    assert err == ""
    assert code in (gate.EXIT_PASSED, gate.EXIT_BLOCKED)
    assert out


@needs_examples
@needs_corpus
def test_every_corpus_object_is_counted() -> None:
    """`checked` is the number of objects in the corpus (empty documents aside)."""
    loaded = sources.read([str(CORPUS)], stdin=io.StringIO())
    assert loaded.problems == ()
    code, out, _ = run(example_policies(), [str(CORPUS)])
    assert json.loads(out)["checked"] == len(loaded.documents)
    assert code in (0, 1)


@needs_examples
def test_the_example_workloads_keep_their_fixes() -> None:
    """The shop workloads the examples protect pass their own Mitigations and Guardrails."""
    code, out, err = run(example_policies(), [str(EXAMPLES / "workloads")])
    assert (code, err) == (0, "")
    assert json.loads(out)["violations"] == []


@needs_examples
def test_an_example_revert_is_caught(tmp_path: pathlib.Path) -> None:
    """Cutting the web memory limit back to the incident's 128Mi fails the gate (Critical)."""
    text = (EXAMPLES / "workloads" / "shop.yaml").read_text()
    assert "memory: 512Mi" in text
    (tmp_path / "shop.yaml").write_text(text.replace("memory: 512Mi", "memory: 128Mi", 1))
    code, out, _ = run(example_policies(), [str(tmp_path)])
    body = json.loads(out)
    assert code == 1
    assert any(
        v["policy"]["name"] == "web-memory-fix"
        and v["actual"] == "128Mi"
        and v["severity"] == "Critical"
        for v in body["violations"]
    ), body["violations"]


@needs_examples
def test_the_examples_folder_as_policies_is_bad_input() -> None:
    """examples/ also holds a Namespace and workloads: --policies takes policies only."""
    code, out, err = run([str(EXAMPLES)], [str(EXAMPLES / "workloads")])
    assert (code, out) == (2, "")
    assert "unknown kind 'Namespace'" in err
