"""Black-box acceptance of the admission webhook (issue 5) through kubectl and a real API server.

The operator serves its webhook on loopback (`--webhook=dev`, failurePolicy
Ignore); Guardrails are cluster-scoped, so each test deletes the ones it made.
Every test first waits until its policy is in force (a probe request gets the
expected answer), since the operator picks policies up asynchronously.
"""

from __future__ import annotations

import base64
import json
import re
import secrets
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from acceptance_helpers import Kube, Operator, eventually

WEBHOOK = "dev"

OWNER = {"team": "platform-sre", "contact": "#platform"}


def pod_workload(name: str, namespace: str, *, privileged: bool, **labels: str) -> dict[str, Any]:
    container: dict[str, Any] = {"name": "web", "image": "nginx:1.27"}
    if privileged:
        container["securityContext"] = {"privileged": True}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace, "labels": {"app": name, **labels}},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [container]},
            },
        },
    }


def guardrail(name: str, enforcement: str, **match: Any) -> dict[str, Any]:
    return {
        "apiVersion": "keepfix.dev/v1alpha1",
        "kind": "Guardrail",
        "metadata": {"name": name},
        "spec": {
            "match": {
                "resources": [{"apiGroups": ["apps"], "kinds": ["Deployment"]}],
                "excludeNamespaces": ["kube-system"],
                **match,
            },
            "rules": [
                {
                    "name": "not-privileged",
                    "path": "podSpec.containers[*].securityContext.privileged",
                    "notIn": [True],
                    "message": "privileged containers caused INC-99",
                }
            ],
            "enforcement": enforcement,
            "owner": OWNER,
            "incident": {"id": "INC-99"},
        },
    }


@pytest.fixture
def guardrails(kube: Kube, operator: Operator) -> Iterator[Callable[[dict[str, Any]], str]]:
    """Create Guardrails with a unique name; delete them afterwards."""
    made: list[str] = []

    def make(manifest: dict[str, Any]) -> str:
        manifest = json.loads(json.dumps(manifest))
        manifest["metadata"]["name"] += "-" + secrets.token_hex(3)
        kube.apply(manifest)
        made.append(manifest["metadata"]["name"])
        return str(manifest["metadata"]["name"])

    yield make
    for name in made:
        kube.run("delete", "guardrail", name, "--ignore-not-found", check=False)


def attempt(kube: Kube, manifest: dict[str, Any], *extra: str) -> Any:
    """`kubectl apply` that may fail; returns the CompletedProcess."""
    return kube.apply(manifest, *extra, check=False)


def denied_until_in_force(kube: Kube, manifest: dict[str, Any], what: str) -> Any:
    """Wait until a server-side dry run of `manifest` is denied by keepfix; return that result."""

    def probe() -> Any:
        proc = attempt(kube, manifest, "--dry-run=server")
        return proc if proc.returncode != 0 and "keepfix.dev" in proc.stderr else None

    return eventually(probe, what)


def test_deny_guardrail_rejects_privileged_deployment_with_full_message(
    kube: Kube, guardrails: Callable[[dict[str, Any]], str], namespace: str
) -> None:
    name = guardrails(guardrail("no-privileged", "Deny", namespaces=[namespace]))
    bad = pod_workload("priv", namespace, privileged=True)
    dry = denied_until_in_force(kube, bad, "the Deny Guardrail in force")
    proc = attempt(kube, bad)
    assert proc.returncode != 0
    message = proc.stderr
    assert 'admission webhook "guardrails.keepfix.dev" denied the request' in message, message
    for part in (
        f"Guardrail {name}",
        "rule not-privileged",
        "spec.template.spec.containers[name=web].securityContext.privileged",
        "INC-99",
        "platform-sre",
    ):
        assert part in message, message
    # --dry-run=server gives the same answer.
    assert _denial(dry.stderr) == _denial(message)
    assert kube.run("get", "deployment", "priv", "-n", namespace, check=False).returncode != 0
    # A compliant Deployment is admitted.
    attempt_ok = attempt(kube, pod_workload("fine", namespace, privileged=False))
    assert attempt_ok.returncode == 0, attempt_ok.stderr
    assert "Warning" not in attempt_ok.stderr, attempt_ok.stderr


def _denial(stderr: str) -> str:
    return stderr.split("denied the request:", 1)[-1].strip()


def test_dry_run_denial_is_not_counted_as_prevented(
    kube: Kube, guardrails: Callable[[dict[str, Any]], str], namespace: str
) -> None:
    name = guardrails(guardrail("dry", "Deny", namespaces=[namespace]))
    bad = pod_workload("priv", namespace, privileged=True)
    denied_until_in_force(kube, bad, "the Deny Guardrail in force")
    for _ in range(3):
        assert attempt(kube, bad, "--dry-run=server").returncode != 0
    assert attempt(kube, bad).returncode != 0

    def prevented() -> int | None:
        st = kube.get("guardrail", name).get("status") or {}
        return st.get("prevented") if st.get("prevented") else None

    assert eventually(prevented, "status.prevented counted") == 1


def test_warn_guardrail_admits_and_kubectl_prints_a_short_warning(
    kube: Kube, guardrails: Callable[[dict[str, Any]], str], namespace: str
) -> None:
    # Scoped to this test's namespace: Guardrails are cluster-scoped and another
    # test's must not see this one while the operator processes its deletion.
    manifest = guardrail("warn-privileged", "Warn", namespaces=[namespace])
    rule = manifest["spec"]["rules"][0]
    rule["name"] = "not-privileged-" + "x" * 60
    rule["message"] = "privileged containers caused INC-99 " + "and more words " * 12
    name = guardrails(manifest)

    def warned() -> Any:
        proc = attempt(kube, pod_workload("probe", namespace, privileged=True), "--dry-run=server")
        return proc if "Warning:" in proc.stderr else None

    eventually(warned, "the Warn Guardrail in force")
    proc = attempt(kube, pod_workload("priv", namespace, privileged=True))
    assert proc.returncode == 0, proc.stderr
    warnings = [line for line in proc.stderr.splitlines() if line.startswith("Warning:")]
    assert warnings, proc.stderr
    assert any(name in w for w in warnings), warnings
    for w in warnings:
        assert len(w.removeprefix("Warning: ")) <= 120, w
    kube.get("deployment", "priv", namespace)


def test_audit_guardrail_admits_silently_and_counts_the_violation(
    kube: Kube, operator: Operator, guardrails: Callable[[dict[str, Any]], str], namespace: str
) -> None:
    """Audit never blocks nor warns; the runtime audit counts the object in status.violations.

    (An Audit-only kind is not registered with the webhook at all, so the
    admission counter moves only when a Deny/Warn policy also targets the kind.)
    """
    name = guardrails(guardrail("audit-privileged", "Audit", namespaces=[namespace]))
    proc = attempt(kube, pod_workload("priv", namespace, privileged=True))
    assert proc.returncode == 0, proc.stderr
    assert "Warning" not in proc.stderr, proc.stderr
    eventually(lambda: _violations(kube, name) >= 1, "status.violations counts the object")
    sample = (kube.get("guardrail", name).get("status") or {}).get("sample") or []
    assert any("priv" in json.dumps(s) for s in sample), sample


def _violations(kube: Kube, name: str) -> int:
    return int((kube.get("guardrail", name).get("status") or {}).get("violations") or 0)


def test_unrelated_update_of_a_legacy_violation_passes_with_a_warning(
    kube: Kube, guardrails: Callable[[dict[str, Any]], str], namespace: str
) -> None:
    legacy = pod_workload("legacy", namespace, privileged=True)
    kube.apply(legacy)
    guardrails(guardrail("no-privileged-legacy", "Deny", namespaces=[namespace]))
    denied_until_in_force(kube, pod_workload("probe", namespace, privileged=True), "in force")
    proc = kube.run("label", "deployment", "legacy", "-n", namespace, "touched=yes", check=False)
    assert proc.returncode == 0, proc.stderr
    assert "Warning:" in proc.stderr, "the pre-existing violation is reported as a warning"
    # Scaling the legacy object through the main resource also passes.
    legacy["spec"]["replicas"] = 3
    proc = attempt(kube, legacy)
    assert proc.returncode == 0, proc.stderr


def test_kube_system_and_unmatched_namespaces_are_not_enforced(
    kube: Kube, guardrails: Callable[[dict[str, Any]], str], namespace: str
) -> None:
    name = guardrails(guardrail("ns-scoped", "Deny", namespaces=[namespace]))
    denied_until_in_force(kube, pod_workload("probe", namespace, privileged=True), "in force")
    proc = attempt(kube, pod_workload("priv", "default", privileged=True), "--dry-run=server")
    assert proc.returncode == 0, f"{name} applies only to {namespace}: {proc.stderr}"
    proc = attempt(kube, pod_workload("priv", "kube-system", privileged=True), "--dry-run=server")
    assert proc.returncode == 0, proc.stderr


def test_webhook_configuration_lists_only_targeted_kinds_and_excludes_kube_system(
    kube: Kube, guardrails: Callable[[dict[str, Any]], str], namespace: str
) -> None:
    guardrails(guardrail("only-deployments", "Deny", namespaces=[namespace]))
    denied_until_in_force(kube, pod_workload("probe", namespace, privileged=True), "in force")
    vwc = kube.get("validatingwebhookconfiguration", "keepfix")
    resources: set[str] = set()
    for hook in vwc["webhooks"]:
        assert hook["sideEffects"] == "None", hook
        assert hook.get("timeoutSeconds", 10) <= 3, hook
        assert hook["failurePolicy"] == "Ignore", hook
        expressions = hook.get("namespaceSelector", {}).get("matchExpressions", [])
        excluded = {v for e in expressions if e["operator"] == "NotIn" for v in e["values"]}
        assert "kube-system" in excluded, hook
        for rule in hook["rules"]:
            assert "*" not in rule["resources"], rule
            assert set(rule["operations"]) <= {"CREATE", "UPDATE", "DELETE", "CONNECT"}, rule
            resources.update(f"{g}/{r}" for g in rule["apiGroups"] for r in rule["resources"])
    assert "apps/deployments" in resources, resources
    assert not {r for r in resources if r.endswith("/secrets") or r.endswith("/namespaces")}, (
        resources
    )


def test_guardrail_created_later_and_deleted_takes_effect_without_restart(
    kube: Kube, operator: Operator, guardrails: Callable[[dict[str, Any]], str], namespace: str
) -> None:
    bad = pod_workload("priv", namespace, privileged=True)
    bad["kind"] = "StatefulSet"
    bad["spec"]["serviceName"] = "priv"
    manifest = guardrail("late", "Deny", namespaces=[namespace])
    manifest["spec"]["match"]["resources"] = [{"apiGroups": ["apps"], "kinds": ["StatefulSet"]}]
    name = guardrails(manifest)
    denied_until_in_force(kube, bad, "a Guardrail created after start-up in force")
    kube.run("delete", "guardrail", name)

    def admitted() -> bool:
        return bool(attempt(kube, bad, "--dry-run=server").returncode == 0)

    eventually(admitted, "the deleted Guardrail no longer enforced")

    def unregistered() -> bool:
        vwc = kube.run(
            "get", "validatingwebhookconfiguration", "keepfix", "-o", "json", check=False
        )
        if vwc.returncode != 0:
            return True
        text = json.dumps(json.loads(vwc.stdout).get("webhooks", []))
        return "statefulsets" not in text

    eventually(unregistered, "statefulsets dropped from the webhook configuration")
    assert operator.proc.poll() is None


# --- Mitigations at admission --------------------------------------------------------------------


def mitigation(name: str, namespace: str, admission: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "keepfix.dev/v1alpha1",
        "kind": "Mitigation",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "target": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
            "fields": [{"path": "spec.replicas", "value": 2, "knownBad": [1]}],
            "action": "Alert",
            "admission": admission,
            "owner": {"team": "shop-sre"},
            "incident": {"id": "INC-1234"},
            **spec,
        },
    }


def replicas(kube: Kube, namespace: str) -> int:
    return int(kube.get("deployment", "web", namespace)["spec"]["replicas"])


def _mitigation_in_force(kube: Kube, namespace: str, name: str) -> Any:
    def probe() -> Any:
        proc = kube.run(
            "patch",
            "deployment",
            "web",
            "-n",
            namespace,
            "--dry-run=server",
            "-p",
            '{"spec":{"replicas":1}}',
            check=False,
        )
        return proc if "mitigations.keepfix.dev" in proc.stderr else None

    return eventually(probe, f"Mitigation {name} in force at admission")


def test_mitigation_deny_rejects_a_revert_naming_everything(
    kube: Kube, operator: Operator, namespace: str
) -> None:
    kube.apply(pod_workload("web", namespace, privileged=False))
    kube.apply(mitigation("web-replicas", namespace, "Deny"))
    dry = _mitigation_in_force(kube, namespace, "web-replicas")
    assert dry.returncode != 0, dry.stderr
    proc = kube.run(
        "patch", "deployment", "web", "-n", namespace, "-p", '{"spec":{"replicas":1}}', check=False
    )
    assert proc.returncode != 0, proc.stderr
    message = proc.stderr
    assert 'admission webhook "mitigations.keepfix.dev" denied the request' in message
    for part in ("web-replicas", "INC-1234", "shop-sre", "spec.replicas"):
        assert part in message, message
    assert re.search(r"expected\W+2", message), message
    assert re.search(r"\b1\b", _denial(message)), message
    assert _denial(dry.stderr) == _denial(message)
    assert replicas(kube, namespace) == 2
    # An unrelated change to the same object is admitted.
    ok = kube.run("label", "deployment", "web", "-n", namespace, "tier=web", check=False)
    assert ok.returncode == 0, ok.stderr
    # So is setting the protected field to its stable value.
    ok = kube.run(
        "patch", "deployment", "web", "-n", namespace, "-p", '{"spec":{"replicas":2}}', check=False
    )
    assert ok.returncode == 0, ok.stderr


def test_mitigation_deny_also_covers_kubectl_scale(
    kube: Kube, operator: Operator, namespace: str
) -> None:
    kube.apply(pod_workload("web", namespace, privileged=False))
    kube.apply(mitigation("web-replicas", namespace, "Deny"))
    _mitigation_in_force(kube, namespace, "web-replicas")
    proc = kube.run("scale", "deployment", "web", "-n", namespace, "--replicas=1", check=False)
    assert proc.returncode != 0, "kubectl scale to the known-bad replica count was admitted"
    assert "web-replicas" in proc.stderr
    assert replicas(kube, namespace) == 2


def test_guardrail_floor_also_covers_kubectl_scale(
    kube: Kube, guardrails: Callable[[dict[str, Any]], str], namespace: str
) -> None:
    manifest = guardrail("min-replicas", "Deny", namespaces=[namespace])
    manifest["spec"]["rules"] = [{"name": "min-replicas", "path": "spec.replicas", "atLeast": 2}]
    guardrails(manifest)
    kube.apply(pod_workload("web", namespace, privileged=False))
    low = pod_workload("web", namespace, privileged=False)
    low["spec"]["replicas"] = 1
    denied_until_in_force(kube, low, "the floor in force")
    proc = kube.run("scale", "deployment", "web", "-n", namespace, "--replicas=1", check=False)
    assert proc.returncode != 0, "kubectl scale below the floor was admitted"
    assert replicas(kube, namespace) == 2


def test_mitigation_warn_admits_with_a_warning(
    kube: Kube, operator: Operator, namespace: str
) -> None:
    kube.apply(pod_workload("web", namespace, privileged=False))
    kube.apply(mitigation("web-replicas", namespace, "Warn"))

    def warned() -> Any:
        proc = kube.run(
            "patch",
            "deployment",
            "web",
            "-n",
            namespace,
            "--dry-run=server",
            "-p",
            '{"spec":{"replicas":1}}',
            check=False,
        )
        return proc if "Warning:" in proc.stderr else None

    eventually(warned, "the Warn Mitigation in force")
    proc = kube.run(
        "patch", "deployment", "web", "-n", namespace, "-p", '{"spec":{"replicas":1}}', check=False
    )
    assert proc.returncode == 0, proc.stderr
    warnings = [line for line in proc.stderr.splitlines() if line.startswith("Warning:")]
    assert any("web-replicas" in w for w in warnings), warnings
    for w in warnings:
        assert len(w.removeprefix("Warning: ")) <= 120, w
    assert replicas(kube, namespace) == 1


def test_captured_mitigation_with_admission_deny_rejects_a_revert(
    kube: Kube, operator: Operator, namespace: str
) -> None:
    kube.run("create", "configmap", "flags", "-n", namespace, "--from-literal=mode=safe")
    kube.apply(
        {
            "apiVersion": "keepfix.dev/v1alpha1",
            "kind": "Mitigation",
            "metadata": {"name": "captured", "namespace": namespace},
            "spec": {
                "target": {"apiVersion": "v1", "kind": "ConfigMap", "name": "flags"},
                "fields": [{"path": "data.mode"}],
                "capture": True,
                "action": "Alert",
                "admission": "Deny",
                "incident": {"id": "INC-7"},
            },
        }
    )

    def captured() -> bool:
        st = kube.get("mitigation", "captured", namespace).get("status") or {}
        return st.get("stable") == [{"path": "data.mode", "value": "safe"}]

    eventually(captured, "the stable value captured into status.stable")

    def denied() -> Any:
        proc = kube.run(
            "patch",
            "configmap",
            "flags",
            "-n",
            namespace,
            "--dry-run=server",
            "-p",
            '{"data":{"mode":"fast"}}',
            check=False,
        )
        return proc if proc.returncode != 0 else None

    proc = eventually(denied, "a revert of the captured value denied", patience=20)
    assert "captured" in proc.stderr


def test_selector_mitigation_denies_creating_a_matching_object_at_known_bad(
    kube: Kube, operator: Operator, namespace: str
) -> None:
    kube.apply(
        {
            "apiVersion": "keepfix.dev/v1alpha1",
            "kind": "Mitigation",
            "metadata": {"name": "edge-flags", "namespace": namespace},
            "spec": {
                "target": {
                    "apiVersion": "v1",
                    "kind": "ConfigMap",
                    "selector": {"matchLabels": {"tier": "edge"}},
                },
                "fields": [{"path": "data.flag", "value": "on", "knownBad": ["off"]}],
                "admission": "Deny",
                "incident": {"id": "INC-8"},
                "owner": {"team": "edge-sre"},
            },
        }
    )
    bad = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "new", "namespace": namespace, "labels": {"tier": "edge"}},
        "data": {"flag": "off"},
    }
    dry = eventually(
        lambda: (p := attempt(kube, bad, "--dry-run=server")).returncode != 0 and p,
        "the selector Mitigation in force",
    )
    for part in ("edge-flags", "INC-8", "edge-sre", "off"):
        assert part in dry.stderr, dry.stderr
    unlabelled = json.loads(json.dumps(bad))
    unlabelled["metadata"]["labels"] = {"tier": "core"}
    proc = attempt(kube, unlabelled)
    assert proc.returncode == 0, proc.stderr


def test_secret_values_never_appear_in_admission_messages(
    kube: Kube, guardrails: Callable[[dict[str, Any]], str], namespace: str
) -> None:
    manifest = guardrail("weak-token", "Warn", namespaces=[namespace])
    manifest["spec"]["match"]["resources"] = [{"apiGroups": [""], "kinds": ["Secret"]}]
    manifest["spec"]["rules"] = [{"name": "no-weak", "path": "data.token", "notMatches": "^d2Vh"}]
    guardrails(manifest)
    weak = "weak-token-value-42"

    def secret(name: str) -> dict[str, Any]:
        return {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": name, "namespace": namespace},
            "data": {"token": base64.b64encode(weak.encode()).decode()},
        }

    proc = eventually(
        lambda: (
            (p := attempt(kube, secret("probe"), "--dry-run=server"))
            and "Warning" in p.stderr
            and p
        ),
        "the Secret Guardrail in force",
    )
    proc = attempt(kube, secret("real"))
    assert proc.returncode == 0, proc.stderr
    assert "Warning" in proc.stderr
    for needle in (weak, base64.b64encode(weak.encode()).decode()):
        assert needle not in proc.stderr, proc.stderr


def test_secret_hash_in_a_denial_matches_the_regression(
    kube: Kube, operator: Operator, namespace: str
) -> None:
    ns = namespace

    def b64(text: str) -> str:
        return base64.b64encode(text.encode()).decode()

    kube.run("create", "secret", "generic", "db", "-n", ns, "--from-literal=mode=StableX")
    mit: dict[str, Any] = {
        "apiVersion": "keepfix.dev/v1alpha1",
        "kind": "Mitigation",
        "metadata": {"name": "db-mode", "namespace": ns},
        "spec": {
            "target": {"apiVersion": "v1", "kind": "Secret", "name": "db"},
            "fields": [{"path": "data.mode", "value": b64("StableX"), "knownBad": [b64("BadY")]}],
            "action": "Rollback",
            "admission": "Deny",
        },
    }
    kube.apply(mit)
    body = json.dumps({"data": {"mode": b64("BadY")}})

    def dry_run() -> Any:
        return kube.run(
            "patch", "secret", "db", "-n", ns, "--dry-run=server", "-p", body, check=False
        )

    denial = eventually(lambda: (p := dry_run()).returncode != 0 and p, "the Secret revert denied")
    denied_hashes = re.findall(r"sha256:[0-9a-f]+", denial.stderr)
    assert denied_hashes, denial.stderr
    mit["spec"]["admission"] = "Off"
    kube.apply(mit)
    eventually(lambda: dry_run().returncode == 0, "admission Off in force")
    kube.run("patch", "secret", "db", "-n", ns, "-p", body)

    def drift() -> Any:
        regs = kube.regressions(ns)
        return regs[0]["spec"]["drift"][0] if regs else None

    found = eventually(drift, "the Regression of the Secret")
    actual, expected = found["actual"], found["expected"]
    assert any(h.startswith(actual) or actual.startswith(h) for h in denied_hashes), (
        f"Regression says actual {actual}, expected {expected}; the denial said {denied_hashes}"
    )


def test_an_invalid_guardrail_is_reported_and_does_not_disable_the_others(
    kube: Kube, operator: Operator, guardrails: Callable[[dict[str, Any]], str], namespace: str
) -> None:
    broken = guardrail("bad-regex", "Deny", namespaces=[namespace])
    broken["spec"]["rules"] = [{"name": "r", "path": "metadata.name", "matches": "(("}]
    bad_name = guardrails(broken)
    guardrails(guardrail("still-works", "Deny", namespaces=[namespace]))
    denied_until_in_force(kube, pod_workload("priv", namespace, privileged=True), "in force")

    def reported() -> Any:
        conds = (kube.get("guardrail", bad_name).get("status") or {}).get("conditions") or []
        return [c for c in conds if c["type"] == "Valid" and c["status"] == "False"]

    cond = eventually(reported, "Valid=False on the broken Guardrail")[0]
    assert "spec.rules[0].matches" in cond["message"], cond
    ok = attempt(kube, pod_workload("fine", namespace, privileged=False))
    assert ok.returncode == 0, ok.stderr
    assert operator.proc.poll() is None


def test_guardrail_status_sample_is_capped(
    kube: Kube, guardrails: Callable[[dict[str, Any]], str], namespace: str
) -> None:
    manifest = guardrail("cm-flag", "Audit", namespaces=[namespace])
    manifest["spec"]["match"]["resources"] = [{"apiGroups": [""], "kinds": ["ConfigMap"]}]
    manifest["spec"]["rules"] = [{"name": "flag-on", "path": "data.flag", "equals": "on"}]
    name = guardrails(manifest)
    docs = [
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": f"cm{i}", "namespace": namespace},
            "data": {"flag": "off"},
        }
        for i in range(25)
    ]
    kube.run(
        "apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": docs})
    )
    # (kube-root-ca.crt, which every namespace holds, has no flag either.)
    eventually(lambda: _violations(kube, name) >= 25, "violations counting all 25")
    sample = kube.get("guardrail", name)["status"].get("sample") or []
    assert 1 <= len(sample) <= 20, len(sample)
    violations = kube.events(namespace, "GuardrailViolation")
    assert violations, "GuardrailViolation Events on the violating objects"
