"""`keepfix gate`: inputs (files, folders, stdin, multi-document), exit codes and bad input."""

from __future__ import annotations

import gc
import io
import json
import pathlib
import subprocess
import sys
import textwrap

import pytest
import yaml

from keepfix.cli import gate

MITIGATION = """\
apiVersion: keepfix.dev/v1alpha1
kind: Mitigation
metadata: {name: web-replicas-fix, namespace: shop}
spec:
  target: {apiVersion: apps/v1, kind: Deployment, name: web}
  fields:
    - path: spec.replicas
      value: 3
      knownBad: [1]
  admission: Deny
  owner: {team: shop-sre}
  incident: {id: INC-1234}
"""

GUARDRAIL = """\
apiVersion: keepfix.dev/v1alpha1
kind: Guardrail
metadata: {name: no-latest}
spec:
  match:
    resources: [{apiGroups: [apps], kinds: [Deployment]}]
  rules:
    - name: pinned
      path: podSpec.containers[*].image
      notMatches: ':latest$'
  enforcement: Warn
  owner: {team: platform-sre}
  incident: {id: INC-99}
"""


def deployment(replicas: int = 3, image: str = "web:1.2.3", namespace: str | None = "shop") -> str:
    ns = f", namespace: {namespace}" if namespace else ""
    return textwrap.dedent(
        f"""\
        apiVersion: apps/v1
        kind: Deployment
        metadata: {{name: web{ns}}}
        spec:
          replicas: {replicas}
          template:
            spec:
              containers: [{{name: web, image: "{image}"}}]
        """
    )


SERVICE = (
    "apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: shop}\n"
    "spec: {ports: [{port: 80}]}\n"
)


class Run:
    def __init__(self, code: int, out: str, err: str) -> None:
        self.code, self.out, self.err = code, out, err


def run_gate(
    policies: list[str],
    manifests: list[str],
    *,
    fmt: str = "text",
    stdin: str = "",
    namespace: str = "default",
) -> Run:
    out, err = io.StringIO(), io.StringIO()
    code = gate.gate(
        policies=policies,
        manifests=manifests,
        output_format=fmt,
        namespace=namespace,
        stdin=io.StringIO(stdin),
        stdout=out,
        stderr=err,
    )
    return Run(code, out.getvalue(), err.getvalue())


@pytest.fixture
def repo(tmp_path: pathlib.Path) -> pathlib.Path:
    """policies/ with one Mitigation and one Guardrail (two files), manifests/ with a clean app."""
    (tmp_path / "policies" / "team").mkdir(parents=True)
    (tmp_path / "policies" / "mitigations.yaml").write_text(MITIGATION)
    (tmp_path / "policies" / "team" / "guardrails.yml").write_text(GUARDRAIL)
    (tmp_path / "policies" / "README.md").write_text("not YAML, not read\n")
    (tmp_path / "manifests").mkdir()
    (tmp_path / "manifests" / "web.yaml").write_text(deployment() + "---\n" + SERVICE)
    return tmp_path


def write(path: pathlib.Path, text: str) -> str:
    path.write_text(text)
    return str(path)


# --- exit codes ----------------------------------------------------------------------------


def test_clean_manifests_pass_with_exit_0(repo: pathlib.Path) -> None:
    """Folders are read recursively; nothing breaks; the summary says passed."""
    r = run_gate([str(repo / "policies")], [str(repo / "manifests")])
    assert (r.code, r.err) == (0, "")
    assert r.out == (
        "passed: 2 manifests checked against 1 Mitigation and 1 Guardrail: "
        "0 deny, 0 warn, 0 audit\n"
    )


def test_a_revert_fails_with_exit_1_and_names_incident_and_owner(repo: pathlib.Path) -> None:
    """The text output groups by manifest and carries the message from the issue."""
    bad = write(repo / "bad.yaml", SERVICE + "---\n" + deployment(replicas=1))
    r = run_gate([str(repo / "policies")], [bad])
    assert r.code == 1
    assert r.out.splitlines() == [
        f"{bad}:2 Deployment shop/web",
        "  DENY  spec.replicas=1 reverts Mitigation shop/web-replicas-fix (known-bad), INC-1234, "
        "owner shop-sre: expected 3",
        "FAILED: 2 manifests checked against 1 Mitigation and 1 Guardrail: 1 deny, 0 warn, 0 audit",
    ]


def test_warn_findings_print_but_pass(repo: pathlib.Path) -> None:
    """A Warn-level Guardrail violation is shown and the exit code stays 0."""
    latest = write(repo / "latest.yaml", deployment(image="web:latest"))
    r = run_gate([str(repo / "policies")], [latest])
    assert r.code == 0
    assert "  WARN  Guardrail no-latest, rule pinned: " in r.out
    assert "(INC-99, owner platform-sre)" in r.out
    assert r.out.endswith("0 deny, 1 warn, 0 audit\n")


def test_manifests_from_stdin(repo: pathlib.Path) -> None:
    """`--manifests -` reads stdin, as after `helm template`; the source is `-`."""
    r = run_gate(
        [str(repo / "policies")],
        ["-"],
        fmt="json",
        stdin=deployment(replicas=1) + "---\n" + SERVICE,
    )
    assert r.code == 1
    body = json.loads(r.out)
    assert body["checked"] == 2
    assert [v["source"] for v in body["violations"]] == ["-:1"]


def test_policies_from_stdin(repo: pathlib.Path) -> None:
    """`--policies -` works the same way."""
    r = run_gate(["-"], [str(repo / "manifests")], stdin=MITIGATION + "---\n" + GUARDRAIL)
    assert r.code == 0
    assert "1 Mitigation and 1 Guardrail" in r.out


def test_stdin_cannot_be_read_twice(repo: pathlib.Path) -> None:
    """Both sides on `-` is bad input, not a silently empty second read."""
    r = run_gate(["-"], ["-"], stdin=MITIGATION)
    assert (r.code, r.out) == (2, "")
    assert "error: -: standard input can be read only once" in r.err


def test_manifest_without_namespace_uses_the_namespace_flag(repo: pathlib.Path) -> None:
    """helm template output names no namespace: --namespace says where it lands."""
    bare = write(repo / "bare.yaml", deployment(replicas=1, namespace=None))
    assert run_gate([str(repo / "policies")], [bare]).code == 0
    r = run_gate([str(repo / "policies")], [bare], namespace="shop", fmt="json")
    assert r.code == 1
    assert json.loads(r.out)["violations"][0]["manifest"]["namespace"] == "shop"


def test_an_empty_namespace_flag_matches_bare_manifests_in_any_namespace(
    repo: pathlib.Path,
) -> None:
    """`--namespace ""`: checked as cluster-scoped objects, by kind and name only."""
    bare = write(repo / "bare.yaml", deployment(replicas=1, namespace=None))
    r = run_gate([str(repo / "policies")], [bare], namespace="", fmt="json")
    assert r.code == 1
    (violation,) = json.loads(r.out)["violations"]
    assert violation["manifest"]["namespace"] is None
    assert violation["policy"]["namespace"] == "shop"


def test_keepfix_kinds_that_are_not_policies_are_skipped(repo: pathlib.Path) -> None:
    """AlertRoute and Regression in a policies folder are ignored without error."""
    write(
        repo / "policies" / "routes.yaml",
        "apiVersion: keepfix.dev/v1alpha1\nkind: AlertRoute\nmetadata: {name: r}\nspec: {}\n---\n"
        "apiVersion: keepfix.dev/v1alpha1\nkind: Regression\nmetadata: {name: x}\nspec: {}\n",
    )
    r = run_gate([str(repo / "policies")], [str(repo / "manifests")])
    assert (r.code, r.err) == (0, "")


def test_empty_documents_and_comments_are_skipped(repo: pathlib.Path) -> None:
    """`---` separators with nothing between them do not count as manifests."""
    text = "# leading comment\n---\n---\n" + deployment() + "---\n# only a comment\n"
    r = run_gate([str(repo / "policies")], [write(repo / "sparse.yaml", text)], fmt="json")
    assert (r.code, json.loads(r.out)["checked"]) == (0, 1)


def test_a_list_object_is_checked_item_by_item(repo: pathlib.Path) -> None:
    """`kubectl get -o yaml` wraps objects in a v1 List."""
    items = json.dumps(
        {
            "apiVersion": "v1",
            "kind": "List",
            "items": [
                {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}},
                {
                    "apiVersion": "apps/v1",
                    "kind": "Deployment",
                    "metadata": {"name": "web", "namespace": "shop"},
                    "spec": {"replicas": 1},
                },
            ],
        }
    )
    r = run_gate([str(repo / "policies")], [write(repo / "list.yaml", items)], fmt="json")
    assert r.code == 1
    assert json.loads(r.out)["checked"] == 2


# --- bad input: exit 2, stderr names file and document, stdout stays empty -----------------


def bad_input(repo: pathlib.Path, policies: str | None = None, manifests: str | None = None) -> Run:
    p = [write(repo / "policies" / "extra.yaml", policies)] if policies is not None else []
    m = [write(repo / "extra-manifests.yaml", manifests)] if manifests is not None else []
    r = run_gate([str(repo / "policies"), *p], [str(repo / "manifests"), *m])
    assert r.code == 2
    assert r.out == "", "nothing is printed as if the run had passed"
    return r


def test_bad_yaml_names_file_document_and_line(repo: pathlib.Path) -> None:
    """A YAML syntax error in document 2 says document 2 and where."""
    r = bad_input(repo, manifests=SERVICE + "---\nkind: Deployment\nspec: [unclosed\n")
    path = repo / "extra-manifests.yaml"
    assert r.err.startswith(f"error: {path} (document 2): invalid YAML: line ")


def test_an_unknown_kind_in_policies_is_bad_input(repo: pathlib.Path) -> None:
    """A Deployment (or anything not a keepfix policy) in --policies is exit 2."""
    other = MITIGATION.replace("web-replicas-fix", "other-fix")
    r = bad_input(repo, policies=other + "---\n" + deployment())
    path = repo / "policies" / "extra.yaml"
    assert r.err == (
        f"error: {path} (document 2): unknown kind 'Deployment' (apiVersion 'apps/v1'): "
        "--policies takes keepfix.dev/v1alpha1 Mitigation and Guardrail objects\n"
    )


def test_a_mitigation_missing_a_required_field_is_named_by_path(repo: pathlib.Path) -> None:
    """The error names the field as a person would write it."""
    broken = MITIGATION.replace("    - path: spec.replicas\n", "    - pathh: spec.replicas\n")
    r = bad_input(
        repo,
        policies=SERVICE.replace("v1\nkind: Service", "keepfix.dev/v1alpha1\nkind: AlertRoute")
        + "---\n"
        + broken,
    )
    path = repo / "policies" / "extra.yaml"
    assert f"error: {path} (document 2): spec.fields[0].path: field required\n" in r.err
    assert (
        f"error: {path} (document 2): spec.fields[0].pathh: extra inputs are not permitted\n"
        in r.err
    )


def test_a_bad_path_points_at_the_column(repo: pathlib.Path) -> None:
    """A protected field path that does not parse is exit 2 with its column."""
    broken = MITIGATION.replace("path: spec.replicas", "path: spec.containers[name=web")
    r = bad_input(repo, policies=broken)
    assert (
        '(document 1): spec.fields[0].path: bad path "spec.containers[name=web" at column 16'
        in r.err
    )


def test_a_bad_regular_expression_is_bad_input(repo: pathlib.Path) -> None:
    """A Guardrail regex that does not compile is exit 2, naming the rule's field."""
    r = bad_input(repo, policies=GUARDRAIL.replace("':latest$'", "'(unclosed'"))
    assert "(document 1): spec.rules[0]" in r.err
    assert "notMatches" in r.err
    assert "regular expression" in r.err
    assert "position 0" in r.err


def test_a_manifest_that_is_not_an_object_is_bad_input(repo: pathlib.Path) -> None:
    """A scalar or a mapping without kind is not something the gate can check."""
    r = bad_input(repo, manifests="just a string\n---\n{metadata: {name: x}}\n")
    assert r.err.count("not a Kubernetes object") == 2
    assert "(document 1)" in r.err
    assert "(document 2)" in r.err


def test_a_policy_document_that_is_not_a_mapping_is_bad_input(repo: pathlib.Path) -> None:
    """A YAML list where a Mitigation should be."""
    r = bad_input(repo, policies="- a\n- b\n")
    assert "(document 1): expected a keepfix Mitigation or Guardrail, found a YAML list" in r.err


def test_a_list_item_that_is_not_an_object_is_bad_input(repo: pathlib.Path) -> None:
    """Items of a v1 List are checked like documents, and named by index."""
    r = bad_input(repo, manifests="apiVersion: v1\nkind: List\nitems: [42]\n")
    assert "(document 1): items[0]: not a Kubernetes object" in r.err


def test_a_missing_path_is_bad_input(repo: pathlib.Path) -> None:
    """A PATH that does not exist is named."""
    r = run_gate([str(repo / "policies")], [str(repo / "nope.yaml")])
    assert (r.code, r.out) == (2, "")
    assert r.err == f"error: {repo / 'nope.yaml'}: no such file or directory\n"


def test_every_problem_is_reported_at_once(repo: pathlib.Path) -> None:
    """Bad YAML in one file and a bad policy in another: both are listed."""
    write(repo / "manifests" / "broken.yaml", "a: [\n")
    broken = MITIGATION.replace("admission: Deny", "admission: Sometimes")
    r = bad_input(repo, policies=broken)
    assert len(r.err.splitlines()) == 2
    assert "spec.admission: input should be 'Deny', 'Warn' or 'Off'" in r.err


def test_a_file_that_is_not_utf8_is_bad_input(repo: pathlib.Path) -> None:
    """Binary junk in a manifests folder is named, not a traceback."""
    (repo / "manifests" / "junk.yaml").write_bytes(b"\xff\xfe\x00kind")
    r = run_gate([str(repo / "policies")], [str(repo / "manifests")])
    assert r.code == 2
    assert "junk.yaml: not UTF-8 text" in r.err


def test_in_process_callers_get_the_garbage_collector_back(repo: pathlib.Path) -> None:
    """gate() pauses the cyclic GC while it runs and restores it, on success and on error."""
    assert gc.isenabled()
    assert run_gate([str(repo / "policies")], [str(repo / "manifests")]).code == 0
    assert gc.isenabled()
    code = gate.gate(
        policies=[str(repo / "policies")],
        manifests=[str(repo / "manifests")],
        output_format="yaml",  # no such renderer: an internal error
        stdin=io.StringIO(),
        stdout=io.StringIO(),
        stderr=io.StringIO(),
    )
    assert code == 2
    assert gc.isenabled()


# --- the real command ----------------------------------------------------------------------


def test_the_keepfix_command_reads_stdin_and_exits_1(repo: pathlib.Path) -> None:
    """End to end through `python -m keepfix gate ... --manifests -`."""
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "keepfix",
            "gate",
            "--policies",
            str(repo / "policies"),
            "--manifests",
            "-",
            "--format",
            "json",
        ],
        input=deployment(replicas=1),
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 1, proc.stderr
    (violation,) = json.loads(proc.stdout)["violations"]
    assert violation["policy"] == {
        "kind": "Mitigation",
        "name": "web-replicas-fix",
        "namespace": "shop",
    }


def test_the_keepfix_command_exits_2_on_bad_input(tmp_path: pathlib.Path) -> None:
    """Exit 2 and an `error:` line, nothing on stdout."""
    proc = subprocess.run(
        [sys.executable, "-m", "keepfix", "gate", "--policies", "-", "--manifests", str(tmp_path)],
        input="kind: [\n",
        capture_output=True,
        text=True,
        check=False,
    )
    assert (proc.returncode, proc.stdout) == (2, "")
    assert proc.stderr.startswith("error: - (document 1): invalid YAML")


def test_an_internal_error_is_exit_2_not_the_deny_code(
    repo: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A crash inside the gate never exits 1 (a Deny finding): exit 2, said on stderr."""

    def crash(*_args: object, **_kwargs: object) -> None:
        raise TypeError("boom")

    monkeypatch.setattr(gate, "check", crash)
    r = run_gate([str(repo / "policies")], [str(repo / "manifests")])
    assert (r.code, r.out) == (2, "")
    assert r.err.startswith("error: internal error in keepfix gate (TypeError: boom)")


# --- namespaces, duplicates, lists and empty policy sets -----------------------------------


def test_without_a_namespace_flag_a_bare_manifest_matches_any_namespace(
    repo: pathlib.Path,
) -> None:
    """helm template prints no namespace: a revert of shop/web must not pass silently."""
    bare = write(repo / "bare.yaml", deployment(replicas=1, namespace=None))
    code = gate.gate(
        policies=[str(repo / "policies")],
        manifests=[bare],
        stdin=io.StringIO(),
        stdout=(out := io.StringIO()),
        stderr=io.StringIO(),
    )
    assert code == 1
    assert "reverts Mitigation shop/web-replicas-fix" in out.getvalue()
    assert run_gate([str(repo / "policies")], [bare], namespace="cart").code == 0


def test_empty_policies_are_bad_input(repo: pathlib.Path) -> None:
    """A gate that checks nothing would pass every pipeline: exit 2 instead."""
    empty = repo / "empty"
    empty.mkdir()
    (empty / "routes.yaml").write_text(
        "apiVersion: keepfix.dev/v1alpha1\nkind: AlertRoute\nmetadata: {name: r}\nspec: {}\n"
    )
    r = run_gate([str(empty)], [str(repo / "manifests")])
    assert (r.code, r.out) == (2, "")
    assert r.err == (
        f"error: {empty}: no policies found: --policies takes keepfix.dev/v1alpha1 "
        "Mitigation and Guardrail objects\n"
    )


def test_an_invalid_policy_is_not_also_reported_as_no_policies(repo: pathlib.Path) -> None:
    """When the only policy is broken, its error is the one reported."""
    broken = write(repo / "broken.yaml", MITIGATION.replace("admission: Deny", "admission: X"))
    r = run_gate([broken], [str(repo / "manifests")])
    assert r.code == 2
    assert "no policies found" not in r.err


@pytest.mark.parametrize(
    ("first", "second", "name"),
    [
        (
            MITIGATION,
            MITIGATION.replace("value: 3", "value: 5"),
            "Mitigation shop/web-replicas-fix",
        ),
        (GUARDRAIL, GUARDRAIL, "Guardrail no-latest"),
    ],
    ids=["mitigation", "guardrail"],
)
def test_one_policy_defined_twice_is_bad_input(
    tmp_path: pathlib.Path, first: str, second: str, name: str
) -> None:
    """The cluster holds one object per name: both places are named."""
    a, b = write(tmp_path / "a.yaml", first), write(tmp_path / "b.yaml", "---\n" + second)
    r = run_gate([a, b], [write(tmp_path / "m.yaml", deployment())])
    assert (r.code, r.out) == (2, "")
    assert r.err == f"error: {b} (document 1): {name} defined twice: also in {a} (document 1)\n"


def test_policies_in_a_list_are_read_item_by_item(tmp_path: pathlib.Path) -> None:
    """`kubectl get mit,gr -A -o yaml` output; a bad item is named by its index."""
    items = [yaml.safe_load(MITIGATION), yaml.safe_load(GUARDRAIL)]
    listed = write(
        tmp_path / "l.yaml", yaml.safe_dump({"apiVersion": "v1", "kind": "List", "items": items})
    )
    r = run_gate([listed], ["-"], stdin=deployment(replicas=1))
    assert r.code == 1, r.err
    assert "against 1 Mitigation and 1 Guardrail" in r.out
    items.append({"apiVersion": "v1", "kind": "Pod"})
    bad = write(
        tmp_path / "l.yaml", yaml.safe_dump({"apiVersion": "v1", "kind": "List", "items": items})
    )
    r = run_gate([bad], ["-"], stdin=deployment())
    assert r.code == 2
    assert r.err.startswith(f"error: {bad} (document 1): items[2]: unknown kind 'Pod'")


def test_an_unknown_keepfix_kind_in_policies_is_bad_input(repo: pathlib.Path) -> None:
    """keepfix.dev/v1alpha1 with a kind that is no keepfix kind is named, not skipped."""
    r = bad_input(repo, policies="apiVersion: keepfix.dev/v1alpha1\nkind: Mitigations\n")
    assert "unknown kind 'Mitigations' (apiVersion 'keepfix.dev/v1alpha1')" in r.err
