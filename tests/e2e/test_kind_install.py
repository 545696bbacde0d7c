"""End to end on kind: build the image, load it, helm install, then drift, rollback and a denial.

Runs only where Docker and kind work (tests/e2e/conftest.py skips otherwise), as the
`e2e-kind` CI job does with KEEPFIX_TEST_CLUSTER=kind.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
IMAGE = "keepfix/keepfix:e2e"
NS = "shop"

MITIGATION = """
apiVersion: keepfix.dev/v1alpha1
kind: Mitigation
metadata: {name: web-memory-fix, namespace: shop}
spec:
  target: {apiVersion: apps/v1, kind: Deployment, name: web}
  fields:
    - path: spec.template.spec.containers[name=web].resources.limits.memory
      value: 512Mi
      knownBad: [128Mi]
  action: Rollback
  admission: Warn
  owner: {team: shop-sre}
  incident: {id: INC-1234}
"""

GUARDRAIL = """
apiVersion: keepfix.dev/v1alpha1
kind: Guardrail
metadata: {name: no-privileged}
spec:
  match:
    resources: [{apiGroups: [apps], kinds: [Deployment]}]
  rules:
    - name: not-privileged
      path: podSpec.containers[*].securityContext.privileged
      notIn: [true]
  enforcement: Deny
  owner: {team: platform-sre}
  incident: {id: INC-99}
"""


def deployment(name: str, memory: str, privileged: bool = False) -> str:
    return json.dumps(
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": name, "namespace": NS, "labels": {"app": name}},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": {"app": name}},
                "template": {
                    "metadata": {"labels": {"app": name}},
                    "spec": {
                        "containers": [
                            {
                                "name": "web",
                                "image": "registry.k8s.io/pause:3.10",
                                "resources": {"limits": {"memory": memory}},
                                "securityContext": {"privileged": privileged},
                            }
                        ]
                    },
                },
            },
        }
    )


def eventually(check: Callable[[], bool], what: str, attempts: int = 120) -> None:
    for _ in range(attempts):
        if check():
            return
        time.sleep(1)
    raise AssertionError(f"never happened: {what}")


@pytest.fixture(scope="module")
def kind(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from pytest_kind import KindCluster

    kind_bin = shutil.which("kind")
    assert kind_bin, "tests/e2e/conftest.py should have skipped: kind is not installed"
    subprocess.run(["docker", "build", "-t", IMAGE, str(REPO)], check=True)
    cluster = KindCluster("keepfix-e2e", kind_path=Path(kind_bin))
    cluster.create()
    cluster.load_docker_image(IMAGE)
    yield cluster
    cluster.delete()


@pytest.fixture(scope="module")
def installed(kind: Any) -> Any:
    built = subprocess.run(
        [str(REPO / "tools" / "k8s" / "build.sh"), "--print-dir"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    helm = shutil.which("helm") or str(Path(built) / "helm")
    assert Path(helm).exists(), "helm is needed for the e2e test (`make k8s-bin` builds one)"
    subprocess.run(
        [
            helm,
            "--kubeconfig",
            str(kind.kubeconfig_path),
            "install",
            "keepfix",
            str(REPO / "charts" / "keepfix"),
            "-n",
            "keepfix",
            "--create-namespace",
            "--set",
            "image.repository=keepfix/keepfix",
            "--set",
            "image.tag=e2e",
            "--set",
            "image.pullPolicy=Never",
            "--wait",
            "--timeout",
            "5m",
        ],
        check=True,
    )
    kind.kubectl("create", "namespace", NS)
    return kind


def test_rollback_regression_and_denial(installed: Any) -> None:
    """A drift is rolled back and recorded; a privileged Deployment is denied at admission."""
    k = installed
    k.kubectl("apply", "-f", "-", input=deployment("web", "512Mi"))
    k.kubectl("apply", "-f", "-", input=MITIGATION)
    k.kubectl("apply", "-f", "-", input=GUARDRAIL)
    eventually(
        lambda: (
            "Watching"
            in k.kubectl("get", "mit", "web-memory-fix", "-n", NS, "-o", "jsonpath={.status.phase}")
        ),
        "the Mitigation is Watching",
    )
    k.kubectl(
        "patch",
        "deployment",
        "web",
        "-n",
        NS,
        "--type=json",
        "--field-manager=kubectl-edit",
        "-p",
        '[{"op":"replace","path":"/spec/template/spec/containers/0/resources/limits/memory","value":"128Mi"}]',
    )
    eventually(
        lambda: (
            k.kubectl(
                "get",
                "deployment",
                "web",
                "-n",
                NS,
                "-o",
                "jsonpath={.spec.template.spec.containers[0].resources.limits.memory}",
            )
            == "512Mi"
        ),
        "the memory limit is rolled back to 512Mi",
    )
    regs = json.loads(k.kubectl("get", "reg", "-n", NS, "-o", "json"))["items"]
    assert [r["spec"]["severity"] for r in regs] == ["Critical"]
    assert regs[0]["spec"]["incident"]["id"] == "INC-1234"
    with pytest.raises(subprocess.CalledProcessError) as denied:
        k.kubectl(
            "apply",
            "-f",
            "-",
            input=deployment("bad", "512Mi", privileged=True),
            stderr=subprocess.STDOUT,
        )
    assert "Guardrail no-privileged" in str(denied.value.output)
