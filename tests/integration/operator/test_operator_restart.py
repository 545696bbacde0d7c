"""An operator restarted in the middle of drifts: nothing duplicated, nothing missed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from operator_helpers import (
    apply,
    configmap,
    eventually,
    get,
    mitigation,
    patch,
    regressions,
    start_operator,
    until,
)

pytestmark = pytest.mark.integration


def test_restart_finds_drift_made_while_down_and_duplicates_nothing(
    cluster: Any, crds: list[str], namespace: str, tmp_path: Path
) -> None:
    """Drift while the operator is down is rolled back at start; the Regression is reused."""
    log = tmp_path / "operator.log"
    apply(cluster, configmap("app", namespace, {"pool": "50"}))
    apply(
        cluster,
        mitigation(
            "pool-fix",
            namespace,
            {"apiVersion": "v1", "kind": "ConfigMap", "name": "app"},
            [{"path": "data.pool", "value": "50", "knownBad": ["5"]}],
        ),
    )
    op = start_operator(cluster.kubeconfig, log)
    try:
        until(
            lambda: get(cluster, "mitigation", "pool-fix", namespace).get("status") or {},
            lambda s: s.get("phase") == "Watching",
            "Mitigation Watching",
        )
        patch(cluster, "configmap", "app", namespace, {"data": {"pool": "5"}}, "kubectl-edit")
        eventually(
            lambda: get(cluster, "configmap", "app", namespace)["data"]["pool"] == "50", "rollback"
        )
        patch(cluster, "configmap", "app", namespace, {"data": {"pool": "5"}}, "kubectl-edit")
    finally:
        op.stop()
    # Whatever the first operator managed before it stopped, drift again while it is down.
    patch(cluster, "configmap", "app", namespace, {"data": {"pool": "5"}}, "kubectl-edit")

    op = start_operator(cluster.kubeconfig, log)
    try:
        eventually(
            lambda: get(cluster, "configmap", "app", namespace)["data"]["pool"] == "50",
            "drift made while down rolled back at start-up",
        )
        reg = until(
            lambda: regressions(cluster, namespace),
            lambda r: len(r) == 1 and r[0].get("status", {}).get("state") == "Resolved",
            "the one Regression resolved",
        )[0]
        assert reg["spec"]["occurrences"] >= 2
        status = get(cluster, "mitigation", "pool-fix", namespace)["status"]
        assert status["rollbacks"] >= 2
        assert status["drifts"] >= 2
    finally:
        op.stop()
    assert len(regressions(cluster, namespace)) == 1
