"""The chart's RBAC is enough: the operator, acting as the chart's ServiceAccount, rolls
drift back and denies at admission on a real API server.

The operator runs out of cluster (no kubelet here) with a kubeconfig for
`system:serviceaccount:NS:SA`, minted by keepfix.localcluster, so every call it
makes is authorised by the chart's ClusterRole and nothing else.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from shared_helpers import eventually, free_port, stop_process

REPO = Path(__file__).resolve().parents[3]
CHART = REPO / "charts" / "keepfix"
NS = "keepfix-rbac"
APP_NS = "rbac-shop"


@pytest.fixture(scope="module")
def sa_operator(cluster: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A fresh control plane with the chart installed and the operator running as its SA."""
    if cluster.local is None:
        pytest.skip("needs the local backend to mint a ServiceAccount client certificate")
    from keepfix import localcluster

    tmp = tmp_path_factory.mktemp("rbac")
    local = localcluster.LocalCluster(tmp / "cluster", stop_grace=5.0)
    with local:
        local.start(timeout=float(os.environ.get("KEEPFIX_TEST_CLUSTER_TIMEOUT", "180")))
        c = type(cluster)("local", local.kubeconfig, local.bin_dir, local)
        helm = [str(local.bin_dir / "helm"), "--kubeconfig", str(local.kubeconfig)]
        subprocess.run(
            [*helm, "install", "kf", str(CHART), "-n", NS, "--create-namespace"],
            check=True,
            capture_output=True,
        )
        c.kubectl("create", "namespace", APP_NS)
        sa = local.mint_kubeconfig(
            f"system:serviceaccount:{NS}:kf-keepfix",
            ["system:serviceaccounts", f"system:serviceaccounts:{NS}", "system:authenticated"],
        )
        port = free_port()
        log = tmp / "operator.log"
        env = {
            **os.environ,
            "KUBECONFIG": str(sa),
            "KEEPFIX_METRICS_PORT": str(port),
            "KEEPFIX_METRICS_HOST": "127.0.0.1",
            "KEEPFIX_WEBHOOK": "dev",
            "KEEPFIX_WEBHOOK_HOST": "127.0.0.1",
            "KEEPFIX_WEBHOOK_PORT": str(free_port()),
            "KEEPFIX_OPERATOR_NAMESPACE": NS,
        }
        with log.open("ab") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "keepfix.handlers"], env=env, stdout=out, stderr=out
            )
        c.operator_log = log
        try:
            yield c
        finally:
            stop_process(proc)


def deployment(name: str, memory: str, privileged: bool = False) -> str:
    return json.dumps(
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": name, "namespace": APP_NS, "labels": {"app": name}},
            "spec": {
                "selector": {"matchLabels": {"app": name}},
                "template": {
                    "metadata": {"labels": {"app": name}},
                    "spec": {
                        "containers": [
                            {
                                "name": "web",
                                "image": "nginx:1.25.3",
                                "resources": {"limits": {"memory": memory}},
                                "securityContext": {"privileged": privileged},
                            }
                        ]
                    },
                },
            },
        }
    )


MITIGATION = {
    "apiVersion": "keepfix.dev/v1alpha1",
    "kind": "Mitigation",
    "metadata": {"name": "web-memory-fix", "namespace": APP_NS},
    "spec": {
        "target": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
        "fields": [
            {
                "path": "spec.template.spec.containers[name=web].resources.limits.memory",
                "value": "512Mi",
                "knownBad": ["128Mi"],
            }
        ],
        "action": "Rollback",
        "admission": "Off",
        "owner": {"team": "shop-sre"},
        "incident": {"id": "INC-1234"},
    },
}

GUARDRAIL = {
    "apiVersion": "keepfix.dev/v1alpha1",
    "kind": "Guardrail",
    "metadata": {"name": "rbac-no-privileged"},
    "spec": {
        "match": {"resources": [{"apiGroups": ["apps"], "kinds": ["Deployment"]}]},
        "rules": [
            {
                "name": "not-privileged",
                "path": "podSpec.containers[*].securityContext.privileged",
                "notIn": [True],
            }
        ],
        "enforcement": "Deny",
        "owner": {"team": "platform-sre"},
        "incident": {"id": "INC-99"},
    },
}


def memory(c: Any) -> str:
    return str(
        c.kubectl(
            "get",
            "deployment",
            "web",
            "-n",
            APP_NS,
            "-o",
            "jsonpath={.spec.template.spec.containers[0].resources.limits.memory}",
        ).stdout
    )


def test_rollback_as_the_chart_service_account(sa_operator: Any) -> None:
    """With only the chart's RBAC, a drift is rolled back and a Regression recorded."""
    c = sa_operator
    c.kubectl("apply", "-f", "-", input=deployment("web", "512Mi"))
    c.kubectl("apply", "-f", "-", input=json.dumps(MITIGATION))
    eventually(
        lambda: (
            c.kubectl(
                "get", "mit", "web-memory-fix", "-n", APP_NS, "-o", "jsonpath={.status.phase}"
            ).stdout
            == "Watching"
        ),
        "the Mitigation to be Watching",
    )
    c.kubectl(
        "patch",
        "deployment",
        "web",
        "-n",
        APP_NS,
        "--type=json",
        "--field-manager=kubectl-edit",
        "-p",
        '[{"op":"replace","path":"/spec/template/spec/containers/0/resources/limits/memory",'
        '"value":"128Mi"}]',
    )
    eventually(lambda: memory(c) == "512Mi", "the limit to be rolled back to 512Mi")
    eventually(
        lambda: bool(
            json.loads(c.kubectl("get", "reg", "-n", APP_NS, "-o", "json").stdout)["items"]
        ),
        "a Regression",
    )
    assert "Forbidden" not in c.operator_log.read_text(errors="replace")


def test_denial_as_the_chart_service_account(sa_operator: Any) -> None:
    """With only the chart's RBAC, the operator registers its webhook and denies at admission."""
    c = sa_operator
    c.kubectl("apply", "-f", "-", input=json.dumps(GUARDRAIL))

    def denied() -> bool:
        proc = c.kubectl(
            "apply",
            "--dry-run=server",
            "-f",
            "-",
            input=deployment("bad", "512Mi", True),
            check=False,
        )
        return proc.returncode != 0 and "rbac-no-privileged" in proc.stderr

    eventually(denied, "a privileged Deployment to be denied by the webhook")
    assert "Forbidden" not in c.operator_log.read_text(errors="replace")
