"""`keepfix gate --format json|sarif|junit`: shapes CI tools and scripts rely on."""

from __future__ import annotations

import io
import json
import pathlib
import xml.etree.ElementTree as ET
from typing import Any

import jsonschema
import pytest

from keepfix.cli import gate
from keepfix.cli.output import report

DATA = pathlib.Path(__file__).resolve().parent.parent / "data"

POLICIES = """\
apiVersion: keepfix.dev/v1alpha1
kind: Mitigation
metadata: {name: web-replicas-fix, namespace: shop}
spec:
  target: {apiVersion: apps/v1, kind: Deployment, name: web}
  fields:
    - {path: spec.replicas, value: 3, knownBad: [1]}
  admission: Deny
  owner: {team: shop-sre}
  incident: {id: INC-1234}
  runbook: https://runbooks.example.com/web
---
apiVersion: keepfix.dev/v1alpha1
kind: Guardrail
metadata: {name: workloads}
spec:
  match:
    resources: [{apiGroups: [apps], kinds: [Deployment]}]
  rules:
    - {name: pinned, path: "podSpec.containers[*].image", notMatches: ':latest$'}
    - {name: memory-limit, path: "podSpec.containers[*].resources.limits.memory", present: true}
  enforcement: Warn
  incident: {id: INC-99}
---
apiVersion: keepfix.dev/v1alpha1
kind: Guardrail
metadata: {name: labelled}
spec:
  match:
    resources: [{apiGroups: [""], kinds: [Service]}]
  rules:
    - {name: team-label, path: 'metadata.labels["team"]', present: true}
  enforcement: Audit
"""

MANIFESTS = """\
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: shop}
spec:
  replicas: 1
  template:
    spec:
      containers:
        - {name: web, image: "web:latest", resources: {limits: {memory: 512Mi}}}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop}
spec: {ports: [{port: 80}]}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: api, namespace: shop}
spec:
  replicas: 2
  template:
    spec:
      containers:
        - {name: api, image: "api:1.0", resources: {limits: {memory: 1Gi}}}
"""


@pytest.fixture
def files(tmp_path: pathlib.Path) -> tuple[str, str]:
    (tmp_path / "policies.yaml").write_text(POLICIES)
    (tmp_path / "deploy").mkdir()
    (tmp_path / "deploy" / "app.yaml").write_text(MANIFESTS)
    return str(tmp_path / "policies.yaml"), str(tmp_path / "deploy" / "app.yaml")


def render(files: tuple[str, str], fmt: str) -> tuple[int, str]:
    out, err = io.StringIO(), io.StringIO()
    code = gate.gate(
        policies=[files[0]],
        manifests=[files[1]],
        output_format=fmt,
        stdin=io.StringIO(),
        stdout=out,
        stderr=err,
    )
    assert err.getvalue() == ""
    return code, out.getvalue()


# --- JSON ----------------------------------------------------------------------------------


def test_json_has_exactly_the_documented_shape(files: tuple[str, str]) -> None:
    """{"checked": N, "violations": [...]} with the DESIGN.md keys, in input order."""
    code, out = render(files, "json")
    body = json.loads(out)
    assert code == 1
    assert set(body) == {"checked", "violations"}
    assert body["checked"] == 3
    first = body["violations"][0]
    assert first == {
        "manifest": {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "namespace": "shop",
            "name": "web",
        },
        "source": f"{files[1]}:1",
        "policy": {"kind": "Mitigation", "name": "web-replicas-fix", "namespace": "shop"},
        "rule": "spec.replicas",
        "path": "spec.replicas",
        "expected": 3,
        "actual": 1,
        "severity": "Critical",
        "level": "Deny",
        "message": "spec.replicas=1 reverts Mitigation shop/web-replicas-fix (known-bad), "
        "INC-1234, owner shop-sre: expected 3",
        "incident": "INC-1234",
    }
    levels = [
        (v["policy"]["name"], v["rule"], v["level"], v["severity"], v["source"])
        for v in body["violations"]
    ]
    assert levels == [
        ("web-replicas-fix", "spec.replicas", "Deny", "Critical", f"{files[1]}:1"),
        ("workloads", "pinned", "Warn", "Medium", f"{files[1]}:1"),
        ("labelled", "team-label", "Audit", "Low", f"{files[1]}:2"),
    ]
    assert body["violations"][2]["policy"]["namespace"] is None
    assert body["violations"][2]["actual"] is None


def test_json_with_nothing_found(files: tuple[str, str], tmp_path: pathlib.Path) -> None:
    """An empty violations list, still an object."""
    clean = tmp_path / "clean.yaml"
    clean.write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n")
    out = io.StringIO()
    code = gate.gate(
        policies=[files[0]],
        manifests=[str(clean)],
        output_format="json",
        stdin=io.StringIO(),
        stdout=out,
        stderr=io.StringIO(),
    )
    assert (code, json.loads(out.getvalue())) == (0, {"checked": 1, "violations": []})


# --- SARIF ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sarif_schema() -> dict[str, Any]:
    schema: dict[str, Any] = json.loads((DATA / "sarif-schema-2.1.0.json").read_text())
    return schema


def test_sarif_validates_against_the_official_schema(
    files: tuple[str, str], sarif_schema: dict[str, Any]
) -> None:
    """SARIF 2.1.0 as OASIS publishes it (draft-04 schema)."""
    _, out = render(files, "sarif")
    log = json.loads(out)
    jsonschema.Draft4Validator(sarif_schema).validate(log)
    assert log["version"] == "2.1.0"


def test_sarif_empty_run_validates(tmp_path: pathlib.Path, sarif_schema: dict[str, Any]) -> None:
    """No findings: one run, no results, still valid."""
    (tmp_path / "p.yaml").write_text(POLICIES)
    (tmp_path / "m.yaml").write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n")
    out = io.StringIO()
    gate.gate(
        policies=[str(tmp_path / "p.yaml")],
        manifests=[str(tmp_path / "m.yaml")],
        output_format="sarif",
        stdin=io.StringIO(),
        stdout=out,
        stderr=io.StringIO(),
    )
    log = json.loads(out.getvalue())
    jsonschema.Draft4Validator(sarif_schema).validate(log)
    assert log["runs"][0]["results"] == []


def test_sarif_results_carry_levels_rules_and_document_lines(files: tuple[str, str]) -> None:
    """Deny/Warn/Audit -> error/warning/note; the region is the document's first line."""
    _, out = render(files, "sarif")
    run = json.loads(out)["runs"][0]
    rules = run["tool"]["driver"]["rules"]
    results = run["results"]
    assert [(r["ruleId"], r["level"]) for r in results] == [
        ("Mitigation/shop/web-replicas-fix/spec.replicas", "error"),
        ("Guardrail/workloads/pinned", "warning"),
        ("Guardrail/labelled/team-label", "note"),
    ]
    assert [rules[r["ruleIndex"]]["id"] for r in results] == [r["ruleId"] for r in results]
    lines = [r["locations"][0]["physicalLocation"]["region"]["startLine"] for r in results]
    assert lines == [1, 1, 11]
    uri = results[0]["locations"][0]["physicalLocation"]["artifactLocation"]["uri"]
    assert uri == pathlib.Path(files[1]).as_uri()
    assert rules[0]["helpUri"] == "https://runbooks.example.com/web"
    assert "INC-1234" in rules[0]["fullDescription"]["text"]


def test_sarif_fingerprints_are_stable_across_line_moves(
    files: tuple[str, str], tmp_path: pathlib.Path
) -> None:
    """Adding a document above the object moves the region, not the fingerprint."""
    _, before = render(files, "sarif")
    moved = tmp_path / "deploy" / "app.yaml"
    moved.write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: first}\n---\n" + MANIFESTS)
    _, after = render(files, "sarif")
    fp_before = [r["partialFingerprints"] for r in json.loads(before)["runs"][0]["results"]]
    fp_after = [r["partialFingerprints"] for r in json.loads(after)["runs"][0]["results"]]
    assert fp_before == fp_after
    assert len({json.dumps(fp) for fp in fp_before}) == 3


def test_sarif_relative_paths_stay_relative(
    monkeypatch: pytest.MonkeyPatch, files: tuple[str, str]
) -> None:
    """Code scanning resolves relative URIs against the checkout."""
    root = pathlib.Path(files[1]).parent.parent
    monkeypatch.chdir(root)
    _, out = render(("policies.yaml", "deploy/app.yaml"), "sarif")
    result = json.loads(out)["runs"][0]["results"][0]
    assert (
        result["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] == "deploy/app.yaml"
    )


# --- JUnit ---------------------------------------------------------------------------------


def test_junit_has_a_case_per_manifest_and_policy_and_fails_only_deny(
    files: tuple[str, str],
) -> None:
    """Deny is a failure; Warn/Audit go to system-out; policies that hold are passing cases."""
    code, out = render(files, "junit")
    assert code == 1
    root = ET.fromstring(out)
    assert root.tag == "testsuites"
    (suite,) = root.findall("testsuite")
    assert suite.get("name") == files[1]
    cases = {(c.get("classname"), c.get("name")): c for c in suite.findall("testcase")}
    assert set(cases) == {
        ("Deployment shop/web", "Mitigation shop/web-replicas-fix"),
        ("Deployment shop/web", "Guardrail workloads"),
        ("Service shop/web", "Guardrail labelled"),
        ("Deployment shop/api", "Guardrail workloads"),
    }
    failure = cases[("Deployment shop/web", "Mitigation shop/web-replicas-fix")].find("failure")
    assert failure is not None
    assert "INC-1234" in failure.get("message", "")
    warned = cases[("Deployment shop/web", "Guardrail workloads")]
    assert warned.find("failure") is None
    assert "Warn: Guardrail workloads, rule pinned" in (warned.findtext("system-out") or "")
    assert cases[("Deployment shop/api", "Guardrail workloads")].find("system-out") is None
    assert (root.get("tests"), root.get("failures")) == ("4", "1")
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors")) == ("4", "1", "0")


def test_junit_one_suite_per_manifest_file(files: tuple[str, str], tmp_path: pathlib.Path) -> None:
    """Two manifest files, two suites; counts add up at the root."""
    (tmp_path / "deploy" / "more.yaml").write_text(MANIFESTS.split("---\n", maxsplit=1)[0])
    out = io.StringIO()
    gate.gate(
        policies=[files[0]],
        manifests=[str(tmp_path / "deploy")],
        output_format="junit",
        stdin=io.StringIO(),
        stdout=out,
        stderr=io.StringIO(),
    )
    root = ET.fromstring(out.getvalue())
    suites = root.findall("testsuite")
    assert [s.get("name") for s in suites] == [files[1], str(tmp_path / "deploy" / "more.yaml")]
    assert [s.get("failures") for s in suites] == ["1", "1"]
    assert (root.get("tests"), root.get("failures")) == ("6", "2")


# --- text ----------------------------------------------------------------------------------


def test_text_groups_findings_under_their_manifest(files: tuple[str, str]) -> None:
    """One header per manifest with findings, findings indented under it, a summary last."""
    _, out = render(files, "text")
    lines = out.splitlines()
    assert lines[0] == f"{files[1]}:1 Deployment shop/web"
    assert lines[1].startswith("  DENY  spec.replicas=1 reverts Mitigation shop/web-replicas-fix")
    assert lines[2].startswith("  WARN  Guardrail workloads, rule pinned: ")
    assert lines[3] == f"{files[1]}:2 Service shop/web"
    assert lines[4].startswith("  AUDIT Guardrail labelled, rule team-label: ")
    assert lines[5] == (
        "FAILED: 3 manifests checked against 1 Mitigation and 2 Guardrails: 1 deny, 1 warn, 1 audit"
    )


def test_yaml_only_values_render_in_every_format(tmp_path: pathlib.Path) -> None:
    """A YAML timestamp (not JSON) in a finding prints as text, not a crash."""
    (tmp_path / "p.yaml").write_text(
        "apiVersion: keepfix.dev/v1alpha1\nkind: Guardrail\nmetadata: {name: no-stamp}\n"
        "spec:\n  match: {resources: [{kinds: [ConfigMap]}]}\n"
        "  rules: [{name: unstamped, path: data.deployed, present: false}]\n  enforcement: Deny\n"
    )
    (tmp_path / "m.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\ndata: {deployed: 2024-01-02}\n"
    )
    for fmt in ("text", "json", "sarif", "junit"):
        out = io.StringIO()
        code = gate.gate(
            policies=[str(tmp_path / "p.yaml")],
            manifests=[str(tmp_path / "m.yaml")],
            output_format=fmt,
            stdin=io.StringIO(),
            stdout=out,
            stderr=io.StringIO(),
        )
        assert code == 1, fmt
        assert "2024-01-02" in out.getvalue(), fmt


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("a\x1b[2Kb", "a\\x1b[2Kb"),
        ("a\r\nb", "a\\r\\nb"),
        ("tab\tstays", "tab\tstays"),
        ("\x00\x7f\x85\x9b", "\\x00\\x7f\\x85\\x9b"),
        ("line\u2028sep", "line\\u2028sep"),
        ("\ud800\ufffe\uffff", "\\ud800\\ufffe\\uffff"),
        ("plain ümlaut 日本", "plain ümlaut 日本"),
    ],
)
def test_printable_escapes_control_characters(raw: str, shown: str) -> None:
    """Control characters from manifests are spelled as escapes; other text is untouched."""
    assert report.printable(raw) == shown


def test_junit_and_text_escape_every_character_xml_cannot_hold(tmp_path: pathlib.Path) -> None:
    """A manifest value with NUL, ESC, a lone surrogate or U+FFFE keeps JUnit well-formed."""
    policy = tmp_path / "p.yaml"
    policy.write_text(
        "apiVersion: keepfix.dev/v1alpha1\nkind: Guardrail\nmetadata: {name: g}\nspec:\n"
        "  match: {resources: [{apiGroups: [''], kinds: [ConfigMap]}]}\n"
        "  rules: [{name: r, path: data.k, equals: ok}]\n  enforcement: Deny\n"
    )
    manifest = tmp_path / "m.yaml"
    manifest.write_text(
        'apiVersion: v1\nkind: ConfigMap\nmetadata: {name: "c\\e", namespace: s}\n'
        'data: {k: "\\0\\e[31m\\uFFFE\\x85\\n"}\n'
    )
    for fmt in ("junit", "text"):
        out, err = io.StringIO(), io.StringIO()
        code = gate.gate(
            policies=[str(policy)],
            manifests=[str(manifest)],
            output_format=fmt,
            stdin=io.StringIO(),
            stdout=out,
            stderr=err,
        )
        assert code == 1, err.getvalue()
        assert "\\x1b[31m" in out.getvalue()
        if fmt == "junit":
            root = ET.fromstring(out.getvalue())
            case = root.find("testsuite/testcase")
            assert case is not None
            assert case.get("classname") == "ConfigMap s/c\\x1b"
