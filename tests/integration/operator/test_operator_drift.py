"""The drift story on a real API server: detect, roll back, record, resolve."""

from __future__ import annotations

from typing import Any

import pytest
from operator_helpers import (
    Operator,
    apply,
    configmap,
    events,
    eventually,
    get,
    items,
    mitigation,
    patch,
    regressions,
    until,
)

pytestmark = pytest.mark.integration

MEMORY = "spec.template.spec.containers[name=web].resources.limits.memory"


def deployment(
    name: str, namespace: str, memory: str = "512Mi", replicas: int = 2
) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace, "labels": {"app": name}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "containers": [
                        {
                            "name": "web",
                            "image": "nginx:1.27",
                            "resources": {"limits": {"memory": memory}},
                        }
                    ]
                },
            },
        },
    }


def memory_of(cluster: Any, namespace: str, name: str = "web") -> str:
    obj = get(cluster, "deployment", name, namespace)
    return str(obj["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["memory"])


def watching(cluster: Any, namespace: str, name: str) -> dict[str, Any] | None:
    obj = get(cluster, "mitigation", name, namespace)
    status = obj.get("status") or {}
    return obj if status.get("phase") == "Watching" and status.get("targets") == 1 else None


def test_rollback_of_one_field_records_a_critical_regression(
    cluster: Any, namespace: str, operator: Operator
) -> None:
    """kubectl-edit cuts the limit to the known-bad 128Mi: rolled back, Critical, attributed."""
    apply(cluster, deployment("web", namespace))
    apply(
        cluster,
        mitigation(
            "web-memory-fix",
            namespace,
            {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
            [{"path": MEMORY, "value": "512Mi", "knownBad": ["128Mi"]}],
            incident={"id": "INC-1234"},
            owner={"team": "shop-sre"},
            runbook="https://runbooks.example.com/web-oom",
        ),
    )
    eventually(lambda: watching(cluster, namespace, "web-memory-fix"), "Mitigation Watching")
    before = operator.metric("keepfix_rollbacks_total", result="Succeeded")

    cluster.kubectl(
        "patch",
        "deployment",
        "web",
        "-n",
        namespace,
        "--field-manager=kubectl-edit",
        "--type=json",
        "-p",
        '[{"op":"replace","path":"/spec/template/spec/containers/0/resources/limits/memory",'
        '"value":"128Mi"}]',
    )

    eventually(lambda: regressions(cluster, namespace), "a Regression")
    assert eventually(lambda: memory_of(cluster, namespace) == "512Mi", "rollback to 512Mi")
    [reg] = regressions(cluster, namespace)
    spec = reg["spec"]
    assert spec["severity"] == "Critical"
    assert spec["incident"]["id"] == "INC-1234"
    assert spec["owner"]["team"] == "shop-sre"
    assert spec["runbook"] == "https://runbooks.example.com/web-oom"
    assert spec["changedBy"][0]["manager"] == "kubectl-edit"
    assert spec["drift"] == [
        {"path": MEMORY, "expected": "512Mi", "actual": "128Mi", "knownBad": True}
    ]
    assert spec["occurrences"] == 1
    assert reg["metadata"]["labels"]["keepfix.dev/severity"] == "Critical"
    assert reg["metadata"]["labels"]["keepfix.dev/mitigation"] == "web-memory-fix"
    reg = eventually(
        lambda: next(
            (
                r
                for r in regressions(cluster, namespace)
                if r.get("status", {}).get("state") == "Resolved"
            ),
            None,
        ),
        "Regression Resolved",
    )
    assert reg["status"]["action"] == "RolledBack"
    assert reg["status"]["resolutionSeconds"] >= 0
    eventually(lambda: events(cluster, namespace, "DriftRolledBack"), "DriftRolledBack Event")
    [detected] = events(cluster, namespace, "DriftDetected")
    assert detected["regarding"]["name"] == "web"
    assert detected["related"]["name"] == "web-memory-fix"
    assert "128Mi" in detected["note"]
    status = until(
        lambda: get(cluster, "mitigation", "web-memory-fix", namespace)["status"],
        lambda s: s.get("rollbacks") == 1,
        "Mitigation counters",
    )
    assert status["drifts"] == 1
    assert status["regressions"] == 1
    assert status["lastRegression"] == reg["metadata"]["name"]
    assert operator.metric("keepfix_rollbacks_total", result="Succeeded") == before + 1
    assert operator.metric("keepfix_drift_to_rollback_seconds_count") >= 1
    deployed = get(cluster, "deployment", "web", namespace)
    assert not any(
        k.startswith(("keepfix", "kopf")) for k in deployed["metadata"].get("annotations", {})
    )
    assert not deployed["metadata"].get("finalizers")


def test_rollback_of_several_fields_leaves_other_fields(
    cluster: Any, namespace: str, operator: Operator
) -> None:
    """Two protected keys drift at once: both go back, an unprotected change stays."""
    apply(
        cluster, configmap("flags", namespace, {"checkout": "on", "cache": "256", "color": "blue"})
    )
    apply(
        cluster,
        mitigation(
            "flags-fix",
            namespace,
            {"apiVersion": "v1", "kind": "ConfigMap", "name": "flags"},
            [{"path": "data.checkout", "value": "on"}, {"path": "data.cache", "value": "256"}],
        ),
    )
    eventually(lambda: watching(cluster, namespace, "flags-fix"), "Mitigation Watching")

    patch(
        cluster,
        "configmap",
        "flags",
        namespace,
        {"data": {"checkout": "off", "cache": "1", "color": "red"}},
        "script",
    )

    data = until(
        lambda: get(cluster, "configmap", "flags", namespace)["data"],
        lambda d: d["checkout"] == "on" and d["cache"] == "256",
        "both fields back",
    )
    assert data["color"] == "red"
    [reg] = regressions(cluster, namespace)
    assert sorted(d["path"] for d in reg["spec"]["drift"]) == ["data.cache", "data.checkout"]
    assert reg["spec"]["severity"] == "Medium"
    assert reg["spec"]["changedBy"][0]["manager"] == "script"


def test_alert_only_leaves_the_drift_and_resolves_when_fixed_by_hand(
    cluster: Any, namespace: str, operator: Operator
) -> None:
    """action Alert records an Alerted Regression, leaves the object, resolves when fixed."""
    apply(cluster, configmap("limits", namespace, {"max": "10"}))
    apply(
        cluster,
        mitigation(
            "limits-fix",
            namespace,
            {"apiVersion": "v1", "kind": "ConfigMap", "name": "limits"},
            [{"path": "data.max", "value": "10", "knownBad": ["1"]}],
            action="Alert",
        ),
    )
    eventually(lambda: watching(cluster, namespace, "limits-fix"), "Mitigation Watching")

    patch(cluster, "configmap", "limits", namespace, {"data": {"max": "1"}}, "kubectl-edit")

    reg = eventually(lambda: next(iter(regressions(cluster, namespace)), None), "a Regression")
    reg = until(
        lambda: regressions(cluster, namespace)[0],
        lambda r: r.get("status", {}).get("state"),
        "Regression status",
    )
    assert reg["status"]["state"] == "Open"
    assert reg["status"]["action"] == "Alerted"
    assert get(cluster, "configmap", "limits", namespace)["data"]["max"] == "1"
    eventually(
        lambda: get(cluster, "mitigation", "limits-fix", namespace)["status"]["phase"] == "Drifted",
        "phase Drifted",
    )

    patch(cluster, "configmap", "limits", namespace, {"data": {"note": "x"}}, "other-tool")

    patch(cluster, "configmap", "limits", namespace, {"data": {"max": "10"}}, "kubectl-edit")

    reg = until(
        lambda: regressions(cluster, namespace)[0],
        lambda r: r["status"].get("state") == "Resolved",
        "Regression Resolved",
    )
    assert reg["status"]["resolutionSeconds"] > 0
    assert reg["spec"]["occurrences"] == 1, (
        "an unrelated change of a drifted object is no new drift"
    )
    assert get(cluster, "mitigation", "limits-fix", namespace)["status"]["drifts"] == 1
    assert reg["status"]["resolvedAt"]
    eventually(
        lambda: (
            get(cluster, "mitigation", "limits-fix", namespace)["status"]["phase"] == "Watching"
        ),
        "phase Watching again",
    )
    assert operator.metric("keepfix_regression_resolution_seconds_count") >= 1

    patch(cluster, "configmap", "limits", namespace, {"data": {"max": "1"}}, "kubectl-edit")

    reg = until(
        lambda: regressions(cluster, namespace)[0],
        lambda r: r["spec"]["occurrences"] == 2 and r["status"]["state"] == "Open",
        "the same Regression reopened",
    )
    assert len(regressions(cluster, namespace)) == 1
    assert len(reg["status"]["history"]) == 2


@pytest.mark.parametrize(
    ("drift", "expected"),
    [
        ({"a": "bad-a", "b": "bad-b"}, "Critical"),
        ({"a": "bad-a", "b": "other"}, "High"),
        ({"a": "other", "b": "other"}, "Medium"),
    ],
)
def test_severity_inside_the_window(
    cluster: Any, namespace: str, operator: Operator, drift: dict[str, str], expected: str
) -> None:
    """All drifted fields known-bad: Critical; some: High; none: Medium."""
    apply(cluster, configmap("cfg", namespace, {"a": "good-a", "b": "good-b"}))
    apply(
        cluster,
        mitigation(
            "cfg-fix",
            namespace,
            {"apiVersion": "v1", "kind": "ConfigMap", "name": "cfg"},
            [
                {"path": "data.a", "value": "good-a", "knownBad": ["bad-a"]},
                {"path": "data.b", "value": "good-b", "knownBad": ["bad-b"]},
            ],
        ),
    )
    eventually(lambda: watching(cluster, namespace, "cfg-fix"), "Mitigation Watching")

    patch(cluster, "configmap", "cfg", namespace, {"data": drift}, "kubectl-edit")

    [reg] = eventually(lambda: regressions(cluster, namespace), "a Regression")
    assert reg["spec"]["severity"] == expected


def test_drift_after_the_window_is_low_and_still_rolled_back(
    cluster: Any, namespace: str, operator: Operator
) -> None:
    """watchWindow 0m: the Mitigation is Expired at once, drift is Low and still undone."""
    apply(cluster, configmap("old", namespace, {"a": "good"}))
    apply(
        cluster,
        mitigation(
            "old-fix",
            namespace,
            {"apiVersion": "v1", "kind": "ConfigMap", "name": "old"},
            [{"path": "data.a", "value": "good", "knownBad": ["bad"]}],
            watchWindow="0m",
        ),
    )
    eventually(
        lambda: (
            get(cluster, "mitigation", "old-fix", namespace).get("status", {}).get("phase")
            == "Expired"
        ),
        "phase Expired",
    )
    eventually(lambda: events(cluster, namespace, "MitigationExpired"), "MitigationExpired Event")

    patch(cluster, "configmap", "old", namespace, {"data": {"a": "bad"}}, "kubectl-edit")

    [reg] = eventually(lambda: regressions(cluster, namespace), "a Regression")
    assert reg["spec"]["severity"] == "Low"
    eventually(
        lambda: get(cluster, "configmap", "old", namespace)["data"]["a"] == "good", "rollback"
    )


def test_a_mitigation_that_regressed_before_scores_one_level_higher(
    cluster: Any, namespace: str, operator: Operator
) -> None:
    """A second, different drift of the same Mitigation is a repeat: Medium becomes High."""
    apply(cluster, configmap("rep", namespace, {"a": "good"}))
    apply(
        cluster,
        mitigation(
            "rep-fix",
            namespace,
            {"apiVersion": "v1", "kind": "ConfigMap", "name": "rep"},
            [{"path": "data.a", "value": "good"}],
        ),
    )
    eventually(lambda: watching(cluster, namespace, "rep-fix"), "Mitigation Watching")
    patch(cluster, "configmap", "rep", namespace, {"data": {"a": "x"}}, "kubectl-edit")
    eventually(lambda: len(regressions(cluster, namespace)) == 1, "first Regression")
    eventually(
        lambda: get(cluster, "configmap", "rep", namespace)["data"]["a"] == "good", "rollback"
    )

    patch(cluster, "configmap", "rep", namespace, {"data": {"a": "y"}}, "kubectl-edit")

    regs = until(lambda: regressions(cluster, namespace), lambda r: len(r) == 2, "second")
    assert sorted(r["spec"]["severity"] for r in regs) == ["High", "Medium"]


def test_selector_target_covers_objects_added_later(
    cluster: Any, namespace: str, operator: Operator
) -> None:
    """Three objects match a selector, a fourth appears later: all are protected."""
    for i in range(3):
        apply(cluster, configmap(f"shard-{i}", namespace, {"mode": "safe"}, tier="shards"))
    apply(cluster, configmap("other", namespace, {"mode": "safe"}, tier="other"))
    apply(
        cluster,
        mitigation(
            "shards-fix",
            namespace,
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "selector": {"matchLabels": {"tier": "shards"}},
            },
            [{"path": "data.mode", "value": "safe"}],
        ),
    )
    eventually(
        lambda: (
            get(cluster, "mitigation", "shards-fix", namespace).get("status", {}).get("targets")
            == 3
        ),
        "three targets",
    )
    apply(cluster, configmap("shard-3", namespace, {"mode": "safe"}, tier="shards"))
    eventually(
        lambda: get(cluster, "mitigation", "shards-fix", namespace)["status"]["targets"] == 4,
        "four targets",
    )

    for name in ("shard-1", "shard-3", "other"):
        patch(cluster, "configmap", name, namespace, {"data": {"mode": "fast"}}, "kubectl-edit")

    for name in ("shard-1", "shard-3"):
        eventually(
            lambda n=name: get(cluster, "configmap", n, namespace)["data"]["mode"] == "safe",
            f"{name} rolled back",
        )
    regs = until(lambda: regressions(cluster, namespace), lambda r: len(r) == 2, "two")
    assert sorted(r["spec"]["target"]["name"] for r in regs) == ["shard-1", "shard-3"]
    assert get(cluster, "configmap", "other", namespace)["data"]["mode"] == "fast"

    patch(cluster, "configmap", "shard-0", namespace, {"metadata": {"labels": {"tier": "x"}}}, "me")
    cluster.kubectl("delete", "configmap", "shard-2", "-n", namespace)
    eventually(
        lambda: get(cluster, "mitigation", "shards-fix", namespace)["status"]["targets"] == 2,
        "objects that left the selector or were deleted no longer counted",
    )
    patch(cluster, "configmap", "shard-0", namespace, {"data": {"mode": "fast"}}, "kubectl-edit")
    patch(cluster, "configmap", "shard-3", namespace, {"data": {"mode": "fast"}}, "kubectl-edit")
    eventually(
        lambda: get(cluster, "configmap", "shard-3", namespace)["data"]["mode"] == "safe",
        "a remaining target still protected",
    )
    assert get(cluster, "configmap", "shard-0", namespace)["data"]["mode"] == "fast"


def test_an_invalid_mitigation_says_which_field(
    cluster: Any, namespace: str, operator: Operator
) -> None:
    """A path that does not parse: phase Invalid, Valid=False naming spec.fields[0].path."""
    apply(
        cluster,
        mitigation(
            "broken",
            namespace,
            {"apiVersion": "v1", "kind": "ConfigMap", "name": "x"},
            [{"path": "data.[oops", "value": "1"}],
        ),
    )
    status = until(
        lambda: get(cluster, "mitigation", "broken", namespace).get("status") or {},
        lambda s: s.get("phase") == "Invalid",
        "phase Invalid",
    )
    [valid] = [c for c in status["conditions"] if c["type"] == "Valid"]
    assert valid["status"] == "False"
    assert "spec.fields[0].path" in valid["message"]
    assert operator.healthy()


def test_deleting_a_mitigation_stops_its_watch(
    cluster: Any, namespace: str, operator: Operator
) -> None:
    """The watch of a kind exists while a Mitigation targets it and goes with the last one."""
    kind = "PodTemplate"
    assert operator.metric("keepfix_open_watches", kind=kind) == 0
    apply(
        cluster,
        mitigation(
            "tpl-fix",
            namespace,
            {"apiVersion": "v1", "kind": kind, "name": "tpl"},
            [{"path": "template.metadata.labels.app", "value": "x"}],
        ),
    )
    eventually(lambda: operator.metric("keepfix_open_watches", kind=kind) == 1, "watch started")

    cluster.kubectl("delete", "mitigation", "tpl-fix", "-n", namespace)

    eventually(lambda: operator.metric("keepfix_open_watches", kind=kind) == 0, "watch stopped")
    assert "kind=PodTemplate" in operator.log_text()


def test_only_targeted_kinds_are_watched(cluster: Any, operator: Operator) -> None:
    """Every open watch is of a kind some Mitigation or Guardrail targets, and no other."""

    def untargeted() -> set[str]:
        watched = {
            line.split('kind="', 1)[1].split('"', 1)[0]
            for line in operator.metrics().splitlines()
            if line.startswith("keepfix_open_watches{") and not line.endswith(" 0.0")
        }
        targeted = {m["spec"]["target"]["kind"] for m in items(cluster, "mitigations.keepfix.dev")}
        for guardrail in items(cluster, "guardrails.keepfix.dev"):
            for resource in guardrail["spec"]["match"]["resources"]:
                targeted.update(resource["kinds"])
        assert watched, "the module's Mitigations keep some watches open"
        return watched - targeted

    # Namespaces of earlier tests may still be going away: wait for the state to settle.
    until(untargeted, lambda extra: not extra, "no watch of an untargeted kind")


def test_a_fix_the_api_refuses_is_reported_with_its_reason(
    cluster: Any, namespace: str, operator: Operator
) -> None:
    """An immutable field cannot be set: RollbackFailed with the API's reason, once."""
    apply(cluster, deployment("web", namespace))
    apply(
        cluster,
        mitigation(
            "selector-fix", namespace,
            {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
            [{"path": "spec.selector.matchLabels.app", "value": "old-web"}],
        ),
    )  # fmt: skip
    [failed] = eventually(lambda: events(cluster, namespace, "RollbackFailed"), "RollbackFailed")
    assert "immutable" in failed["note"]
    until(
        lambda: get(cluster, "mitigation", "selector-fix", namespace).get("status") or {},
        lambda s: s.get("phase") == "Drifted",
        "phase Drifted",
    )
    patch(cluster, "deployment", "web", namespace, {"metadata": {"labels": {"x": "1"}}}, "other")
    eventually(
        lambda: "x" in get(cluster, "deployment", "web", namespace)["metadata"]["labels"], "label"
    )
    assert len(events(cluster, namespace, "RollbackFailed")) == 1
    assert operator.metric("keepfix_rollbacks_total", result="Failed") >= 1


def test_adopting_an_object_without_the_fix_applies_it_without_a_regression(
    cluster: Any, namespace: str, operator: Operator
) -> None:
    """A new Mitigation for an object that never had the fix: FixApplied, no Regression."""
    apply(cluster, configmap("cfg", namespace, {"mem": "128Mi"}))
    apply(
        cluster,
        mitigation(
            "fix", namespace, {"apiVersion": "v1", "kind": "ConfigMap", "name": "cfg"},
            [{"path": "data.mem", "value": "512Mi"}],
        ),
    )  # fmt: skip
    eventually(lambda: events(cluster, namespace, "FixApplied"), "FixApplied Event")
    assert get(cluster, "configmap", "cfg", namespace)["data"]["mem"] == "512Mi"
    status = until(
        lambda: get(cluster, "mitigation", "fix", namespace).get("status") or {},
        lambda s: s.get("phase") == "Watching",
        "phase Watching",
    )
    assert (status["drifts"], status["regressions"]) == (0, 0)

    cluster.kubectl(
        "patch", "mitigation", "fix", "-n", namespace, "--type=json", "-p",
        '[{"op":"replace","path":"/spec/fields/0/value","value":"1Gi"}]',
    )  # fmt: skip

    eventually(
        lambda: get(cluster, "configmap", "cfg", namespace)["data"]["mem"] == "1Gi",
        "an edited fix rolled forward",
    )
    assert not regressions(cluster, namespace)
    patch(cluster, "configmap", "cfg", namespace, {"data": {"mem": "128Mi"}}, "kubectl-edit")
    [reg] = eventually(lambda: regressions(cluster, namespace), "a real drift is a Regression")
    assert reg["spec"]["drift"][0]["expected"] == "1Gi"


def test_a_status_field_cannot_be_protected(
    cluster: Any, namespace: str, operator: Operator
) -> None:
    """A path under status is Invalid: the API server would drop the rollback."""
    apply(
        cluster,
        mitigation(
            "st", namespace, {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
            [{"path": "status.replicas", "value": 2}],
        ),
    )  # fmt: skip
    status = until(
        lambda: get(cluster, "mitigation", "st", namespace).get("status") or {},
        lambda s: s.get("phase") == "Invalid",
        "phase Invalid",
    )
    [valid] = [c for c in status["conditions"] if c["type"] == "Valid"]
    assert "spec.fields[0].path: status.replicas" in valid["message"]
