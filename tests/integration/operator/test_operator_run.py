"""`keepfix run` flags on a real cluster: namespace scope and JSON logs."""

from __future__ import annotations

import json
import secrets
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


def test_run_with_one_namespace_and_json_logs(
    cluster: Any, crds: list[str], namespace: str, tmp_path: Path
) -> None:
    """`keepfix run --namespace A --log-format json` acts in A only and logs JSON lines."""
    other = f"other-{secrets.token_hex(3)}"
    cluster.kubectl("create", "namespace", other)
    try:
        for ns in (namespace, other):
            apply(cluster, configmap("cfg", ns, {"a": "good"}))
            apply(
                cluster,
                mitigation(
                    "cfg-fix",
                    ns,
                    {"apiVersion": "v1", "kind": "ConfigMap", "name": "cfg"},
                    [{"path": "data.a", "value": "good"}],
                ),
            )
        # The metrics port comes from the environment (start_operator): flags win over it,
        # which tests/unit/operator/test_operator_settings.py checks.
        argv = (
            "-m", "keepfix", "run", "--namespace", namespace, "--log-format", "json",
            "--webhook", "off",
        )  # fmt: skip
        op = start_operator(cluster.kubeconfig, tmp_path / "operator.log", argv=argv)
        try:
            until(
                lambda: get(cluster, "mitigation", "cfg-fix", namespace).get("status") or {},
                lambda s: s.get("phase") == "Watching",
                "Mitigation in the watched namespace Watching",
            )
            for ns in (namespace, other):
                patch(cluster, "configmap", "cfg", ns, {"data": {"a": "bad"}}, "kubectl-edit")
            eventually(
                lambda: get(cluster, "configmap", "cfg", namespace)["data"]["a"] == "good",
                "rollback in the watched namespace",
            )
            eventually(lambda: regressions(cluster, namespace), "a Regression there")
        finally:
            op.stop()
        assert get(cluster, "configmap", "cfg", other)["data"]["a"] == "bad"
        assert not get(cluster, "mitigation", "cfg-fix", other).get("status")
        assert not regressions(cluster, other)
        lines = [line for line in op.log_text().splitlines() if line.strip()]
        records = [json.loads(line) for line in lines]
        assert any(r["message"].startswith("Drift handled") for r in records)
        assert {"time", "level", "logger", "message"} <= set(records[0])
    finally:
        cluster.kubectl("delete", "namespace", other, "--wait=false", check=False)
