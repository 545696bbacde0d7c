"""Guardrails at run time: audit, status sample, Events, remediation of `equals` rules."""

from __future__ import annotations

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
