"""Guardrails at run time: audit, status sample, Events, remediation of `equals` rules."""

from __future__ import annotations

import json
from typing import Any

import pytest
from operator_helpers import Operator, apply, configmap, events, eventually, get, patch, until

pytestmark = pytest.mark.integration


def guardrail(name: str, namespace: str, remediation: str) -> dict[str, Any]:
    return {
        "apiVersion": "keepfix.dev/v1alpha1",
        "kind": "Guardrail",
        "metadata": {"name": name},
        "spec": {
            "match": {
                "resources": [{"apiGroups": [""], "kinds": ["ConfigMap"]}],
                "namespaces": [namespace],
                "selector": {"matchLabels": {"guarded": "yes"}},
            },
            "rules": [
                {"name": "safe-mode", "path": "data.mode", "equals": "safe"},
                {"name": "no-debug", "path": "data.level", "notIn": ["debug"],
                 "message": "debug logging leaked tokens in INC-77"},
            ],
            "enforcement": "Audit",
            "remediation": remediation,
        },
    }  # fmt: skip


def test_guardrail_audits_existing_and_changed_objects(
    cluster: Any, namespace: str, operator: Operator
) -> None:
    """Violations are counted and sampled; equals rules are put back; fixing clears them."""
    apply(cluster, configmap("good", namespace, {"mode": "safe"}, guarded="yes"))
    apply(cluster, configmap("unsafe", namespace, {"mode": "fast"}, guarded="yes"))
    apply(cluster, configmap("noisy", namespace, {"mode": "safe", "level": "debug"}, guarded="yes"))
    apply(cluster, configmap("ignored", namespace, {"mode": "fast"}, guarded="no"))
    name = f"floors-{namespace}"
    apply(cluster, guardrail(name, namespace, "Rollback"))
    try:
        eventually(
            lambda: get(cluster, "configmap", "unsafe", namespace)["data"]["mode"] == "safe",
            "equals rule remediated",
        )
        status = until(
            lambda: get(cluster, "guardrail", name).get("status") or {},
            lambda s: s.get("violations") == 1,
            "one violating object",
        )
        [sample] = status["sample"]
        assert (sample["name"], sample["rule"]) == ("noisy", "no-debug")
        [event] = eventually(
            lambda: events(cluster, namespace, "GuardrailViolation"), "GuardrailViolation Event"
        )
        assert event["regarding"]["name"] == "noisy"
        assert get(cluster, "configmap", "ignored", namespace)["data"]["mode"] == "fast"

        patch(cluster, "configmap", "noisy", namespace, {"data": {"level": "info"}}, "kubectl-edit")

        until(
            lambda: get(cluster, "guardrail", name)["status"],
            lambda s: s["violations"] == 0 and not s["sample"],
            "no violation left",
        )
        patch(cluster, "configmap", "good", namespace, {"data": {"mode": "turbo"}}, "kubectl-edit")
        eventually(
            lambda: get(cluster, "configmap", "good", namespace)["data"]["mode"] == "safe",
            "a change after the audit remediated too",
        )
    finally:
        cluster.kubectl("delete", "guardrail", name, "--ignore-not-found")


def test_guardrail_without_remediation_only_reports(
    cluster: Any, namespace: str, operator: Operator
) -> None:
    """remediation None: the object keeps its value, the violation is reported."""
    apply(cluster, configmap("unsafe", namespace, {"mode": "fast"}, guarded="yes"))
    name = f"report-{namespace}"
    apply(cluster, guardrail(name, namespace, "None"))
    try:
        status = until(
            lambda: get(cluster, "guardrail", name).get("status") or {},
            lambda s: s.get("violations") == 1,
            "one violating object",
        )
        assert status["sample"][0]["rule"] == "safe-mode"
        assert get(cluster, "configmap", "unsafe", namespace)["data"]["mode"] == "fast"
    finally:
        cluster.kubectl("delete", "guardrail", name, "--ignore-not-found")


def test_guardrails_created_together_each_audit_existing_objects(
    cluster: Any, namespace: str, operator: Operator
) -> None:
    """Guardrails that arrive at once (a Helm install, a restart) share their audit LISTs.

    The first one opens the ConfigMap stream; the next six join it and are
    audited by a shared LIST. Each still counts exactly its own violations.
    """
    for i in range(12):
        apply(cluster, configmap(f"cm-{i}", namespace, {"mode": str(i % 4)}, guarded="yes"))
    first = f"first-{namespace}"
    apply(cluster, guardrail(first, namespace, "None"))
    names = [f"batch-{i}-{namespace}" for i in range(6)]
    try:
        until(
            lambda: get(cluster, "guardrail", first).get("status") or {},
            lambda s: s.get("violations") == 12,
            "the first Guardrail audited every object",
        )
        docs = []
        for i, name in enumerate(names):
            doc = guardrail(name, namespace, "None")
            # Guardrail i allows mode i % 4 only: 3 of the 12 objects pass it.
            doc["spec"]["rules"] = [{"name": "mode", "path": "data.mode", "equals": str(i % 4)}]
            docs.append(doc)
        cluster.kubectl("apply", "-f", "-", input="\n---\n".join(json.dumps(d) for d in docs))
        for i, name in enumerate(names):
            status = until(
                lambda n=name: get(cluster, "guardrail", n).get("status") or {},
                lambda s: s.get("observedGeneration") == 1 and s.get("violations") == 9,
                f"Guardrail {name} counted its 9 violating objects",
            )
            assert {s["name"] for s in status["sample"]} <= {
                f"cm-{j}" for j in range(12) if j % 4 != i % 4
            }
    finally:
        cluster.kubectl("delete", "guardrail", first, *names, "--ignore-not-found")


def test_guardrail_on_a_cluster_scoped_kind_audits_it(
    cluster: Any, namespace: str, operator: Operator
) -> None:
    """Namespaces (cluster-scoped) are audited: a new one without a `team` label is counted."""
    name = f"ns-team-{namespace}"
    mark = namespace[-6:]
    apply(
        cluster,
        {
            "apiVersion": "keepfix.dev/v1alpha1",
            "kind": "Guardrail",
            "metadata": {"name": name},
            "spec": {
                "match": {
                    "resources": [{"apiGroups": [""], "kinds": ["Namespace"]}],
                    "selector": {"matchLabels": {"audit-mark": mark}},
                },
                "rules": [{"name": "team", "path": "metadata.labels.team", "present": True}],
                "enforcement": "Audit",
            },
        },
    )
    extra = f"{namespace}-x"
    try:
        until(
            lambda: get(cluster, "guardrail", name).get("status") or {},
            lambda s: s.get("observedGeneration") == 1 and s.get("violations") == 0,
            "the first audit",
        )
        namespace_doc = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": extra}}
        namespace_doc["metadata"]["labels"] = {"audit-mark": mark}
        apply(cluster, namespace_doc)
        status = until(
            lambda: get(cluster, "guardrail", name)["status"],
            lambda s: s["violations"] == 1,
            "the new Namespace counted",
        )
        assert status["sample"][0]["name"] == extra
    finally:
        cluster.kubectl("delete", "guardrail", name, "--ignore-not-found")
        cluster.kubectl("delete", "namespace", extra, "--ignore-not-found", "--wait=false")
