"""Fights, Secrets and late custom kinds, with the module's operator (short timing knobs)."""

from __future__ import annotations

import base64
import json
import threading
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


def watching(cluster: Any, namespace: str, name: str) -> bool:
    status = get(cluster, "mitigation", name, namespace).get("status") or {}
    return status.get("phase") == "Watching" and status.get("targets") == 1


def test_a_competing_writer_is_a_fight_and_keepfix_backs_off(
    cluster: Any, namespace: str, operator: Operator
) -> None:
    """Another manager reverting the fix in a loop: FightDetected naming it, then resume."""
    apply(cluster, configmap("gitops", namespace, {"replicas": "3"}))
    apply(
        cluster,
        mitigation(
            "gitops-fix",
            namespace,
            {"apiVersion": "v1", "kind": "ConfigMap", "name": "gitops"},
            [{"path": "data.replicas", "value": "3", "knownBad": ["1"]}],
        ),
    )
    eventually(lambda: watching(cluster, namespace, "gitops-fix"), "Mitigation Watching")
    fights_before = operator.metric("keepfix_fights_total")
    stop = threading.Event()

    def writer() -> None:
        while not stop.is_set():
            patch(cluster, "configmap", "gitops", namespace, {"data": {"replicas": "1"}}, "argocd")

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        [fight] = eventually(lambda: events(cluster, namespace, "FightDetected"), "FightDetected")
        assert "argocd" in fight["note"]
        assert fight["regarding"]["name"] == "gitops"
        reg = until(
            lambda: regressions(cluster, namespace)[0],
            lambda r: r.get("status", {}).get("action") == "Fighting",
            "Regression action Fighting",
        )
        assert reg["spec"]["changedBy"][0]["manager"] == "argocd"
        assert operator.metric("keepfix_fights_total") == fights_before + 1
    finally:
        stop.set()
        thread.join()

    eventually(
        lambda: get(cluster, "configmap", "gitops", namespace)["data"]["replicas"] == "3",
        "the fix back once the other writer stopped",
    )
    eventually(lambda: "Fight over" in operator.log_text(), "rollbacks resumed")
    rollbacks = until(
        lambda: get(cluster, "mitigation", "gitops-fix", namespace)["status"],
        lambda s: s.get("phase") == "Watching",
        "phase Watching",
    )["rollbacks"]

    patch(cluster, "configmap", "gitops", namespace, {"data": {"replicas": "1"}}, "kubectl-edit")

    eventually(
        lambda: (
            get(cluster, "mitigation", "gitops-fix", namespace)["status"]["rollbacks"]
            == rollbacks + 1
        ),
        "a normal rollback after the fight",
    )
    assert get(cluster, "configmap", "gitops", namespace)["data"]["replicas"] == "3"
    assert len(events(cluster, namespace, "FightDetected")) == 1


def test_a_secret_value_never_leaks(cluster: Any, namespace: str, operator: Operator) -> None:
    """Secret data shows up only as sha256: hashes in Regressions, Events and the log."""
    good, bad = "correct-horse-battery", "hunter2-leaked-value"
    good64 = base64.b64encode(good.encode()).decode()
    bad64 = base64.b64encode(bad.encode()).decode()
    apply(
        cluster,
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "db", "namespace": namespace},
            "data": {"password": good64},
        },
    )
    apply(
        cluster,
        mitigation(
            "db-secret-fix",
            namespace,
            {"apiVersion": "v1", "kind": "Secret", "name": "db"},
            [{"path": "data.password", "value": good64}],
        ),
    )
    eventually(lambda: watching(cluster, namespace, "db-secret-fix"), "Mitigation Watching")

    patch(cluster, "secret", "db", namespace, {"data": {"password": bad64}}, "kubectl-edit")

    [reg] = eventually(lambda: regressions(cluster, namespace), "a Regression")
    eventually(
        lambda: get(cluster, "secret", "db", namespace)["data"]["password"] == good64, "rollback"
    )
    eventually(lambda: events(cluster, namespace, "DriftRolledBack"), "DriftRolledBack")
    [drift] = reg["spec"]["drift"]
    assert drift["actual"].startswith("sha256:")
    assert drift["expected"].startswith("sha256:")
    status = get(cluster, "mitigation", "db-secret-fix", namespace)["status"]
    written = json.dumps(
        [
            regressions(cluster, namespace),
            events(cluster, namespace),
            status["conditions"],
            list(status["stable"]),
        ]
    )
    log = operator.log_text()
    for text in (bad, bad64):
        assert text not in written
        assert text not in log
    assert good not in written + log
    assert bad64 not in operator.metrics()


CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "widgets.late.example.com"},
    "spec": {
        "group": "late.example.com",
        "scope": "Namespaced",
        "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "x-kubernetes-preserve-unknown-fields": True,
                    }
                },
            }
        ],
    },
}


def test_a_custom_kind_whose_crd_comes_after_the_operator(
    cluster: Any, namespace: str, operator: Operator, request: pytest.FixtureRequest
) -> None:
    """A Mitigation of a kind the API does not serve yet starts working once its CRD exists."""
    cluster.kubectl("delete", "crd", CRD["metadata"]["name"], "--ignore-not-found")
    request.addfinalizer(
        lambda: cluster.kubectl(
            "delete", "crd", CRD["metadata"]["name"], "--wait=false", check=False
        )
    )
    apply(
        cluster,
        mitigation(
            "widget-fix",
            namespace,
            {"apiVersion": "late.example.com/v1", "kind": "Widget", "name": "w1"},
            [{"path": "spec.size", "value": 5}],
        ),
    )
    status = until(
        lambda: get(cluster, "mitigation", "widget-fix", namespace).get("status") or {},
        lambda s: s.get("phase") == "Pending",
        "phase Pending without a target",
    )
    [ready] = [c for c in status["conditions"] if c["type"] == "Ready"]
    assert "does not serve kind Widget" in ready["message"]
    apply(cluster, CRD)
    cluster.kubectl("wait", "--for=condition=Established", "crd/widgets.late.example.com")
    widget = {
        "apiVersion": "late.example.com/v1",
        "kind": "Widget",
        "metadata": {"name": "w1", "namespace": namespace},
        "spec": {"size": 5},
    }
    eventually(lambda: apply(cluster, widget) is None, "Widget created")
    eventually(lambda: watching(cluster, namespace, "widget-fix"), "Mitigation Watching")

    patch(cluster, "widget", "w1", namespace, {"spec": {"size": 1}}, "kubectl-edit")

    eventually(lambda: get(cluster, "widget", "w1", namespace)["spec"]["size"] == 5, "rollback")
    [reg] = regressions(cluster, namespace)
    assert reg["spec"]["target"]["kind"] == "Widget"
    assert items(cluster, "widgets.late.example.com", namespace)


def test_capture_takes_the_stable_value_once(
    cluster: Any, namespace: str, operator: Operator
) -> None:
    """capture: true stores the live value in status.stable and never captures it again."""
    apply(cluster, configmap("cap", namespace, {"pool": "40"}))
    apply(
        cluster,
        mitigation(
            "cap-fix",
            namespace,
            {"apiVersion": "v1", "kind": "ConfigMap", "name": "cap"},
            [{"path": "data.pool"}],
            capture=True,
            action="Alert",
        ),
    )
    status = until(
        lambda: get(cluster, "mitigation", "cap-fix", namespace).get("status") or {},
        lambda s: s.get("phase") == "Watching",
        "Mitigation Watching",
    )
    assert status["stable"] == [{"path": "data.pool", "value": "40"}]

    patch(cluster, "configmap", "cap", namespace, {"data": {"pool": "4"}}, "kubectl-edit")
    eventually(
        lambda: get(cluster, "mitigation", "cap-fix", namespace)["status"]["phase"] == "Drifted",
        "phase Drifted",
    )
    patch(cluster, "mitigation", "cap-fix", namespace, {"spec": {"category": "HumanError"}}, "me")

    status = until(
        lambda: get(cluster, "mitigation", "cap-fix", namespace)["status"],
        lambda s: s.get("observedGeneration") == 2,
        "the edited Mitigation handled",
    )
    assert status["stable"] == [{"path": "data.pool", "value": "40"}]
    assert status["phase"] == "Drifted"
    [reg] = regressions(cluster, namespace)
    assert reg["spec"]["drift"][0]["expected"] == "40"
    assert reg["spec"]["occurrences"] == 1
