"""Which kinds the ValidatingWebhookConfiguration lists, and how it is built."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from keepfix.adapters.webhook import registration, service
from keepfix.api import conventions, convert
from keepfix.core import policy

GR = conventions.WEBHOOK_GUARDRAILS
MIT = conventions.WEBHOOK_MITIGATIONS


def _guardrail(name: str, enforcement: str, resources: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "apiVersion": conventions.API_VERSION,
        "kind": "Guardrail",
        "metadata": {"name": name},
        "spec": {
            "match": {"resources": resources},
            "rules": [{"name": "r", "path": "spec.replicas", "atLeast": 2}],
            "enforcement": enforcement,
        },
    }


def _mitigation(name: str, admission: str, api_version: str, kind: str) -> dict[str, Any]:
    return {
        "apiVersion": conventions.API_VERSION,
        "kind": "Mitigation",
        "metadata": {"name": name, "namespace": "shop"},
        "spec": {
            "target": {"apiVersion": api_version, "kind": kind, "name": "x"},
            "fields": [{"path": "data.mode", "value": "safe"}],
            "admission": admission,
        },
    }


def test_targets_list_only_enforced_kinds() -> None:
    """Deny/Warn policies register their kinds; Audit and admission Off register none."""
    policies = policy.PolicySet.build(
        [
            convert.mitigation(_mitigation("a", "Deny", "v1", "ConfigMap")),
            convert.mitigation(_mitigation("b", "Warn", "apps/v1", "StatefulSet")),
            convert.mitigation(_mitigation("c", "Off", "v1", "Secret")),
        ],
        [
            convert.guardrail(
                _guardrail("d", "Deny", [{"apiGroups": ["apps"], "kinds": ["Deployment"]}])
            ),
            convert.guardrail(_guardrail("w", "Warn", [{"apiGroups": [""], "kinds": ["Pod"]}])),
            convert.guardrail(
                _guardrail("a", "Audit", [{"apiGroups": ["batch"], "kinds": ["Job"]}])
            ),
        ],
    )
    assert registration.targets(policies) == {
        GR: frozenset({("apps", "Deployment"), ("", "Pod")}),
        MIT: frozenset({("", "ConfigMap"), ("apps", "StatefulSet")}),
    }


def test_no_policies_no_targets() -> None:
    """An empty PolicySet registers nothing."""
    empty = policy.PolicySet.build([], [])
    assert registration.targets(empty) == {GR: frozenset(), MIT: frozenset()}


def _options(endpoint: registration.Endpoint) -> registration.Options:
    return registration.Options(
        endpoint=endpoint,
        ca_bundle=b"-----BEGIN CERTIFICATE-----\n",
        operator_namespace="keepfix-system",
        failure_policy="Fail",
        timeout_seconds=5,
    )


def test_configuration_in_dev_mode() -> None:
    """Dev mode points each webhook at its path on the loopback URL, with every setting."""
    body = registration.configuration(
        {GR: [registration.rule("apps", ["deployments"])], MIT: []},
        _options(registration.Endpoint(url="https://127.0.0.1:9443")),
    )
    assert body["metadata"] == {"name": conventions.WEBHOOK_CONFIGURATION_NAME}
    assert [w["name"] for w in body["webhooks"]] == [GR]
    hook = body["webhooks"][0]
    assert hook == {
        "name": GR,
        "admissionReviewVersions": ["v1"],
        "sideEffects": "None",
        "failurePolicy": "Fail",
        "matchPolicy": "Equivalent",
        "timeoutSeconds": 5,
        "namespaceSelector": {
            "matchExpressions": [
                {
                    "key": "kubernetes.io/metadata.name",
                    "operator": "NotIn",
                    "values": ["keepfix-system", "kube-node-lease", "kube-system"],
                }
            ]
        },
        "rules": [
            {
                "apiGroups": ["apps"],
                "apiVersions": ["*"],
                "operations": ["CREATE", "UPDATE"],
                "resources": ["deployments"],
                "scope": "*",
            }
        ],
        "clientConfig": {
            "caBundle": base64.b64encode(b"-----BEGIN CERTIFICATE-----\n").decode(),
            "url": "https://127.0.0.1:9443/validate/guardrails.keepfix.dev",
        },
    }


def test_configuration_in_service_mode() -> None:
    """Service mode names the Service, its namespace, port and the webhook's path."""
    endpoint = registration.Endpoint(
        service_namespace="keepfix-system", service_name="keepfix-webhook"
    )
    body = registration.configuration(
        {MIT: [registration.rule("", ["configmaps"])]}, _options(endpoint)
    )
    assert body["webhooks"][0]["clientConfig"]["service"] == {
        "namespace": "keepfix-system",
        "name": "keepfix-webhook",
        "path": "/validate/mitigations.keepfix.dev",
        "port": 443,
    }


@pytest.mark.parametrize(
    ("mode", "server", "expected"),
    [
        ("auto", "https://127.0.0.1:6443", "dev"),
        ("auto", "https://localhost:6443", "dev"),
        ("auto", "https://[::1]:6443", "dev"),
        ("auto", "https://10.0.0.1:443", "service"),
        ("auto", "https://api.example.com", "service"),
        ("dev", "https://api.example.com", "dev"),
        ("service", "https://127.0.0.1:6443", "service"),
        ("off", "https://127.0.0.1:6443", None),
    ],
)
def test_resolve_mode(mode: str, server: str, expected: str | None) -> None:
    """`auto` is dev for a loopback API server and service otherwise; explicit modes win."""
    assert service.resolve_mode(mode, api_server=server) == expected


def _selecting(name: str, admission: str, selector: dict[str, Any]) -> dict[str, Any]:
    doc = _mitigation(name, admission, "apps/v1", "Deployment")
    doc["spec"]["target"] = {"apiVersion": "apps/v1", "kind": "Deployment", "selector": selector}
    return doc


def test_mitigations_webhook_is_conditioned_on_the_protected_objects() -> None:
    """Only enforced Mitigations' targets reach the webhook: names per namespace, selectors."""
    policies = policy.PolicySet.build(
        [
            convert.mitigation(_mitigation("a", "Deny", "v1", "ConfigMap")),
            convert.mitigation(_mitigation("off", "Off", "v1", "Secret")),
            convert.mitigation(
                _selecting(
                    "s",
                    "Warn",
                    {
                        "matchLabels": {"tier": "web"},
                        "matchExpressions": [
                            {"key": "track", "operator": "NotIn", "values": ["canary"]},
                            {"key": "legacy", "operator": "DoesNotExist"},
                        ],
                    },
                )
            ),
        ],
        [],
    )
    [condition] = registration.conditions(policies)[MIT]
    expression = condition["expression"]
    assert condition["name"] == registration.MATCH_CONDITION_NAME
    assert '{"shop/x": true}' in expression  # namespaced objects: namespace/name
    assert '{"x": true}' in expression  # cluster-scoped objects: the name alone
    for term in ('== "shop"', '"tier"', '== "web"', '!("track" in', '["canary"]', '!("legacy" in'):
        assert term in expression, term
    assert GR not in registration.conditions(policies)


def test_no_enforced_mitigation_no_condition() -> None:
    """Off Mitigations add no condition (and the webhook is not registered at all)."""
    policies = policy.PolicySet.build(
        [convert.mitigation(_mitigation("off", "Off", "v1", "ConfigMap"))], []
    )
    assert registration.conditions(policies) == {}


def test_names_are_cel_escaped() -> None:
    """A quote or backslash in a name cannot break out of the CEL string."""
    doc = _mitigation("a", "Deny", "v1", "ConfigMap")
    doc["spec"]["target"]["name"] = 'we"b\\'
    policies = policy.PolicySet.build([convert.mitigation(doc)], [])
    expression = registration.conditions(policies)[MIT][0]["expression"]
    assert r'{"shop/we\"b\\": true}' in expression


def test_an_over_long_condition_is_left_out(monkeypatch: pytest.MonkeyPatch) -> None:
    """Past the length limit the webhook reviews every request of its kinds instead."""
    policies = policy.PolicySet.build(
        [convert.mitigation(_mitigation("a", "Deny", "v1", "ConfigMap"))], []
    )
    monkeypatch.setattr(registration, "MAX_CONDITION_CHARS", 10)
    assert registration.conditions(policies) == {}


def test_a_wildcard_rule_skips_cluster_plumbing() -> None:
    """A webhook with a `*` rule gets the condition that spares Events, Leases and reviews."""
    options = _options(registration.Endpoint(url="https://127.0.0.1:9443"))
    wildcard = registration.configuration({GR: [registration.rule("*", ["*"])]}, options)
    [hook] = wildcard["webhooks"]
    assert hook["matchConditions"] == [registration.PLUMBING_CONDITION]
    expression = registration.PLUMBING_CONDITION["expression"]
    for part in ('"events"', '"leases"', '"coordination.k8s.io"', '"authorization.k8s.io"'):
        assert part in expression
    assert f'"{conventions.GROUP}"' in expression
    plain = registration.configuration({GR: [registration.rule("apps", ["deployments"])]}, options)
    assert "matchConditions" not in plain["webhooks"][0]
