"""The CRDs on a real API server: install, examples, validation, defaults, printing."""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

import pytest
import yaml

from keepfix.api import conventions, models

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"
MALFORMED = yaml.safe_load((REPO / "tests/unit/data/api/malformed.yaml").read_text("utf-8"))
#: How long to wait for the API server to publish a new CRD's OpenAPI (kubectl explain).
OPENAPI_TIMEOUT = float(os.environ.get("KEEPFIX_TEST_OPENAPI_TIMEOUT", "60"))


class Cluster(Protocol):
    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]: ...


def apply(
    cluster: Cluster, obj: dict[str, Any], *args: str, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """Server-side apply one object (as JSON on stdin)."""
    return cluster.kubectl(
        "apply",
        "--server-side",
        "--field-manager=keepfix-tests",
        *args,
        "-f",
        "-",
        input=json.dumps(obj),
        check=check,
    )


def dry_run(cluster: Cluster, obj: dict[str, Any], namespace: str) -> dict[str, Any]:
    """The object as the API server would store it (defaults applied), without storing it."""
    out = apply(cluster, obj, "--dry-run=server", "-n", namespace, "-o", "json").stdout
    result: dict[str, Any] = json.loads(out)
    return result


def columns(cluster: Cluster, *args: str) -> tuple[list[str], dict[str, list[str]]]:
    """`kubectl get` output as its header and its rows by name, cut at the header's columns."""
    header, *lines = cluster.kubectl("get", *args).stdout.rstrip().splitlines()
    spans = [(m.start(), m.group()) for m in re.finditer(r"\S+(?: \S+)*", header)]
    ends = [start for start, _ in spans[1:]] + [None]
    cuts = list(zip(spans, ends, strict=True))
    rows = [[line[start:end].strip() for (start, _), end in cuts] for line in lines]
    return [name for _, name in spans], {row[0]: row[1:] for row in rows}


def example_documents() -> list[dict[str, Any]]:
    return [
        doc
        for path in sorted(EXAMPLES.rglob("*.yaml"))
        for doc in yaml.safe_load_all(path.read_text("utf-8"))
    ]


@pytest.fixture(scope="module")
def examples(cluster: Cluster, crds: list[str]) -> Iterator[list[dict[str, Any]]]:
    """examples/ (workloads included) applied for real; removed again, except the namespace."""
    # First exactly what a user types, then the workloads in examples/workloads/ too.
    cluster.kubectl("apply", "--server-side", "--field-manager=keepfix-tests", "-f", str(EXAMPLES))
    cluster.kubectl(
        "apply", "--server-side", "--field-manager=keepfix-tests", "-R", "-f", str(EXAMPLES)
    )
    docs = example_documents()
    yield docs
    # The namespace stays: another test may apply examples/ again, and a terminating
    # namespace would refuse it.
    kept = [d for d in docs if d["kind"] != "Namespace"]
    cluster.kubectl(
        "delete",
        "--ignore-not-found",
        "--wait=false",
        "-f",
        "-",
        input=yaml.safe_dump_all(kept),
        check=False,
    )


def test_crds_install_and_are_established(cluster: Cluster, crds: list[str]) -> None:
    """The four CRDs are Established with their names accepted."""
    expected = {f"{k.PLURAL}.{conventions.GROUP}" for k in models.KINDS}
    assert set(crds) == expected
    for name in expected:
        status = cluster.kubectl("get", "crd", name, "-o", "json").stdout
        conditions = {c["type"]: c["status"] for c in json.loads(status)["status"]["conditions"]}
        assert conditions["Established"] == conditions["NamesAccepted"] == "True"


def test_every_example_is_accepted_and_listed_by_category(
    cluster: Cluster, examples: list[dict[str, Any]]
) -> None:
    """kubectl apply --server-side takes every example; `kubectl get keepfix` lists them."""
    listed = set(cluster.kubectl("get", "keepfix", "-A", "-o", "name").stdout.split())
    for doc in examples:
        if doc["apiVersion"] == conventions.API_VERSION:
            assert f"{doc['kind'].lower()}.{conventions.GROUP}/{doc['metadata']['name']}" in listed
    workloads = cluster.kubectl("get", "deploy,cm", "-n", "shop", "-o", "name").stdout.split()
    assert {"deployment.apps/web", "configmap/shop-flags"} <= set(workloads)


@pytest.fixture(scope="module")
def scratch(cluster: Cluster, crds: list[str]) -> Iterator[str]:
    """One namespace for the dry runs of this module (nothing is stored in it)."""
    name = f"crd-validation-{secrets.token_hex(3)}"
    cluster.kubectl("create", "namespace", name)
    yield name
    cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


@pytest.mark.parametrize("case", MALFORMED, ids=[c["id"] for c in MALFORMED])
def test_malformed_objects_are_rejected_naming_the_field(
    cluster: Cluster, scratch: str, case: dict[str, Any]
) -> None:
    """The API server rejects each malformed object and the message names the field."""
    proc = apply(cluster, case["object"], "--dry-run=server", "-n", scratch, check=False)
    fields = [case["field"]] if isinstance(case["field"], str) else case["field"]
    assert proc.returncode != 0, f"{case['id']} was accepted"
    for field in fields:
        assert field in proc.stderr


def test_defaults_are_applied_by_the_api_server(
    cluster: Cluster, crds: list[str], namespace: str
) -> None:
    """Leaving out action, admission, watchWindow, enforcement... gives the documented defaults."""
    mit = dry_run(cluster, _mitigation(), namespace)["spec"]
    gr = dry_run(
        cluster, _guardrail({"name": "r", "path": "spec.replicas", "atLeast": 2}), namespace
    )
    ar = dry_run(
        cluster, _route({"type": "webhook", "url": "https://hooks.example.com"}), namespace
    )
    assert {k: mit[k] for k in ("action", "admission", "watchWindow", "capture", "category")} == {
        "action": "Rollback",
        "admission": "Warn",
        "watchWindow": "30d",
        "capture": False,
        "category": "ConfigDrift",
    }
    assert (gr["spec"]["enforcement"], gr["spec"]["remediation"]) == ("Audit", "None")
    assert ar["spec"]["repeatInterval"] == "4h"


def test_free_form_values_are_stored_as_given(
    cluster: Cluster, crds: list[str], namespace: str
) -> None:
    """value: null (field must be absent), objects and mixed knownBad lists survive storage."""
    fields = [
        {"path": "data.gone", "value": None, "knownBad": [None, "x", 3, True, {"a": [1]}]},
        {"path": "data.obj", "value": {"nested": {"list": [1, "two"]}}},
        {"path": "data.captured"},
    ]
    apply(cluster, _mitigation(fields=fields, capture=True), "-n", namespace)
    stored = cluster.kubectl("get", "mit", "free", "-n", namespace, "-o", "json").stdout
    assert json.loads(stored)["spec"]["fields"] == fields


def test_equals_null_is_a_constraint(cluster: Cluster, crds: list[str], namespace: str) -> None:
    """A rule `equals: null` has its one constraint (the field must be null)."""
    rule = {"name": "no-host-path", "path": "podSpec.volumes[*].hostPath", "equals": None}
    assert dry_run(cluster, _guardrail(rule), namespace)["spec"]["rules"] == [
        {**rule, "optional": False}
    ]


def test_conditions_are_validated_as_metav1_conditions(
    cluster: Cluster, crds: list[str], namespace: str
) -> None:
    """status.conditions accepts metav1.Condition shapes only, one entry per type."""
    apply(cluster, _mitigation(), "-n", namespace)
    good = {
        "type": "Ready",
        "status": "True",
        "reason": "TargetsFound",
        "message": "1 target",
        "lastTransitionTime": "2026-01-01T00:00:00Z",
    }

    def patch(conditions: list[dict[str, Any]]) -> subprocess.CompletedProcess[str]:
        body = json.dumps({"status": {"phase": "Watching", "conditions": conditions}})
        return cluster.kubectl(
            "patch", "mit", "free", "-n", namespace, "--subresource=status",
            "--type=merge", "-p", body, check=False,
        )  # fmt: skip

    assert patch([good]).returncode == 0
    bad = patch([{**good, "status": "Yes"}])
    assert bad.returncode != 0
    assert "status.conditions[0].status" in bad.stderr
    duplicate = patch([good, {**good, "status": "False"}])
    assert duplicate.returncode != 0
    assert "status.conditions[1]" in duplicate.stderr


def test_status_is_a_subresource(cluster: Cluster, crds: list[str], namespace: str) -> None:
    """A status sent with the object is ignored: only the status subresource writes it."""
    apply(cluster, {**_mitigation(), "status": {"phase": "Watching", "drifts": 9}}, "-n", namespace)
    stored = json.loads(cluster.kubectl("get", "mit", "free", "-n", namespace, "-o", "json").stdout)
    assert "status" not in stored


def test_kubectl_explain_prints_the_model_descriptions(cluster: Cluster, crds: list[str]) -> None:
    """kubectl explain shows the descriptions written in keepfix.api.models."""
    target = _explain(cluster, "mitigation.spec.target")
    assert "set exactly one of name and selector" in " ".join(target.split())
    assert "selector" in target
    enforcement = " ".join(_explain(cluster, "guardrail.spec.enforcement").split())
    assert "Defaults to Audit so a new Guardrail never causes an outage" in enforcement


def _explain(cluster: Cluster, field: str) -> str:
    deadline = time.monotonic() + OPENAPI_TIMEOUT
    while True:
        proc = cluster.kubectl("explain", field, check=False)
        if proc.returncode == 0 or time.monotonic() > deadline:
            assert proc.returncode == 0, proc.stderr
            return proc.stdout
        time.sleep(0.5)


def test_printer_columns_of_mitigations(cluster: Cluster, examples: list[dict[str, Any]]) -> None:
    """kubectl get mit shows target, action, admission, phase, drifts, regressions, age."""
    status = {"status": {"phase": "Drifted", "drifts": 2, "regressions": 1}}
    cluster.kubectl(
        "patch", "mit", "web-memory-fix", "-n", "shop", "--subresource=status",
        "--type=merge", "-p", json.dumps(status),
    )  # fmt: skip
    header, rows = columns(cluster, "mit", "-n", "shop")
    assert header == [
        "NAME", "KIND", "TARGET", "SELECTOR", "ACTION", "ADMISSION", "PHASE", "DRIFTS",
        "REGRESSIONS", "AGE",
    ]  # fmt: skip
    assert rows["web-memory-fix"][:8] == [
        "Deployment", "web", "", "Rollback", "Deny", "Drifted", "2", "1",
    ]  # fmt: skip
    assert rows["backend-grace-period"][:4] == ["Deployment", "", '{"tier":"backend"}', "Rollback"]


def test_printer_columns_of_guardrails_and_routes(
    cluster: Cluster, examples: list[dict[str, Any]]
) -> None:
    """kubectl get gr / ar show enforcement, remediation, violations; teams, min severity."""
    header, rows = columns(cluster, "gr")
    assert header == ["NAME", "ENFORCEMENT", "REMEDIATION", "VIOLATIONS", "PREVENTED", "AGE"]
    assert rows["no-privileged"][:2] == ["Deny", "None"]
    assert rows["shop-floors"][:2] == ["Audit", "None"]
    header, rows = columns(cluster, "ar")
    assert header == ["NAME", "TEAMS", "MIN SEVERITY", "AGE"]
    assert rows["shop-oncall"][:2] == ['["shop-sre","checkout"]', "High"]


def test_printer_columns_of_regressions(cluster: Cluster, crds: list[str], namespace: str) -> None:
    """kubectl get reg shows severity, state, target, occurrences and incident."""
    regression = {
        "apiVersion": conventions.API_VERSION,
        "kind": "Regression",
        "metadata": {"name": "web-memory-fix-1a2b3c"},
        "spec": {
            "mitigation": {"name": "web-memory-fix", "uid": "0000"},
            "target": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
            "severity": "Critical",
            "signature": "sha256:1a2b3c",
            "drift": [{"path": "spec.replicas", "expected": 3, "actual": 1, "knownBad": True}],
            "incident": {"id": "INC-1234"},
            "firstSeen": "2026-01-01T00:00:00Z",
            "lastSeen": "2026-01-02T00:00:00Z",
            "occurrences": 2,
        },
    }
    apply(cluster, regression, "-n", namespace)
    cluster.kubectl(
        "patch", "reg", "web-memory-fix-1a2b3c", "-n", namespace, "--subresource=status",
        "--type=merge", "-p", json.dumps({"status": {"state": "Open", "action": "RolledBack"}}),
    )  # fmt: skip
    header, rows = columns(cluster, "reg", "-n", namespace)
    assert header == [
        "NAME", "SEVERITY", "STATE", "KIND", "TARGET", "OCCURRENCES", "INCIDENT", "AGE",
    ]  # fmt: skip
    assert rows["web-memory-fix-1a2b3c"][:6] == [
        "Critical", "Open", "Deployment", "web", "2", "INC-1234",
    ]  # fmt: skip
    listed = cluster.kubectl("get", "keepfix", "-n", namespace, "-o", "name").stdout.split()
    assert f"regression.{conventions.GROUP}/web-memory-fix-1a2b3c" in listed


def _mitigation(**spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "target": {"apiVersion": "v1", "kind": "ConfigMap", "name": "flags"},
        "fields": [{"path": "data.flag", "value": "off"}],
        **spec,
    }
    return {
        "apiVersion": conventions.API_VERSION,
        "kind": "Mitigation",
        "metadata": {"name": "free"},
        "spec": body,
    }


def _guardrail(*rules: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": conventions.API_VERSION,
        "kind": "Guardrail",
        "metadata": {"name": "defaults-probe"},
        "spec": {"match": {"resources": [{"kinds": ["Deployment"]}]}, "rules": list(rules)},
    }


def _route(*sinks: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": conventions.API_VERSION,
        "kind": "AlertRoute",
        "metadata": {"name": "defaults-probe"},
        "spec": {"sinks": list(sinks)},
    }
