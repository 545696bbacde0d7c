"""keepfix.localcluster and `keepfix cluster up|down`: a real control plane, started and stopped."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from keepfix.localcluster import binaries, processes

#: How many times (every POLL seconds) a test re-checks something that settles
#: asynchronously (RBAC caches, a process exiting). A bound on tries, not a timing claim.
TRIES = int(os.environ.get("KEEPFIX_TEST_TRIES", "600"))
POLL = 0.1


@pytest.fixture
def local_only(cluster: Any) -> None:
    if cluster.local is None:
        pytest.skip(f"about keepfix.localcluster; the session cluster is {cluster.backend}")


def keepfix(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "keepfix", *args],
        capture_output=True,
        text=True,
        check=False,
        env=env,
    )


def cli_env(cluster: Any) -> dict[str, str]:
    """The environment `keepfix cluster` sees: the binaries the session cluster uses."""
    env = dict(os.environ)
    env["KEEPFIX_K8S_BIN"] = str(cluster.local.binaries["kube-apiserver"].parent)
    env.pop("KEEPFIX_CLUSTER_DIR", None)
    return env


def kubectl_as(cluster: Any, kubeconfig: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(cluster.bin_dir / "kubectl"), f"--kubeconfig={kubeconfig}", *args],
        capture_output=True,
        text=True,
        check=False,
    )


def eventually(check: Callable[[], bool]) -> bool:
    for _ in range(TRIES):
        if check():
            return True
        time.sleep(POLL)
    return check()


def live_pids(folder: Path) -> list[int]:
    return [r.pid for r in processes.read_pids(folder) if processes.is_alive(r.pid, r.start_time)]


@pytest.fixture
def cluster_dirs(tmp_path: Path, cluster: Any) -> Iterator[list[Path]]:
    """Folders for extra clusters; whatever a test leaves running there is brought down."""
    made: list[Path] = []
    yield made
    for folder in made:
        keepfix("cluster", "down", "--dir", str(folder), env=cli_env(cluster))


def test_version_reports_the_pinned_release(cluster: Any, local_only: None) -> None:
    """/version of the API server and kubectl's client version are the release in versions.env."""
    pinned = binaries.read_versions()["KUBERNETES_VERSION"]
    server = json.loads(cluster.kubectl("get", "--raw", "/version").stdout)
    client = json.loads(cluster.kubectl("version", "--client", "-o", "json").stdout)
    assert (server["gitVersion"], client["clientVersion"]["gitVersion"]) == (pinned, pinned)


def test_admin_is_in_system_masters(cluster: Any) -> None:
    """The admin kubeconfig authenticates as a cluster administrator."""
    whoami = json.loads(cluster.kubectl("auth", "whoami", "-o", "json").stdout)
    assert "system:masters" in whoami["status"]["userInfo"]["groups"]


def test_up_runs_in_the_background_and_down_leaves_no_process(
    cluster: Any, local_only: None, tmp_path: Path, cluster_dirs: list[Path]
) -> None:
    """`up` leaves one serving cluster; `up` again reuses or replaces it; `down` kills it all."""
    folder = tmp_path / "a"
    cluster_dirs.append(folder)
    env = cli_env(cluster)

    # Two `up`s racing on one folder end with one cluster, and both print its line.
    racing = [
        subprocess.Popen(
            [sys.executable, "-m", "keepfix", "cluster", "up", "--dir", str(folder)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for _ in range(2)
    ]
    outputs = [p.communicate() for p in racing]
    line = f"export KUBECONFIG={folder / 'kubeconfig'}\n"
    assert [(p.returncode, out) for p, (out, _) in zip(racing, outputs, strict=True)] == [
        (0, line),
        (0, line),
    ], [err for _, err in outputs]
    assert sum(err.count("Started ") for _, err in outputs) == 3
    pids = live_pids(folder)
    assert len(pids) == 3
    assert kubectl_as(cluster, folder / "kubeconfig", "get", "ns", "default").returncode == 0

    again = keepfix("cluster", "up", "--dir", str(folder), env=env)
    assert (again.returncode, again.stdout) == (0, line)
    assert "already running" in again.stderr
    assert live_pids(folder) == pids

    # A half-dead cluster (its API server killed) is replaced: `up` stops what is left.
    [apiserver] = [r.pid for r in processes.read_pids(folder) if r.name == "kube-apiserver"]
    os.kill(apiserver, signal.SIGKILL)
    replaced = keepfix("cluster", "up", "--dir", str(folder), env=env)
    assert replaced.returncode == 0, replaced.stderr
    assert not any(processes.is_alive(pid, None) for pid in pids)
    new_pids = live_pids(folder)
    assert len(new_pids) == 3

    down = keepfix("cluster", "down", "--dir", str(folder), env=env)
    assert down.returncode == 0, down.stderr
    assert not any(processes.is_alive(pid, None) for pid in new_pids)
    assert not (folder / "etcd").exists()
    assert processes.processes_mentioning(str(folder)) == []
    assert keepfix("cluster", "down", "--dir", str(folder), env=env).returncode == 0


def test_env_prints_kubeconfig_and_client_path(
    cluster: Any, local_only: None, tmp_path: Path
) -> None:
    """`env` puts the folder with the pinned kubectl and helm first on PATH."""
    result = keepfix("cluster", "env", "--dir", str(tmp_path), env=cli_env(cluster))
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        f"export KUBECONFIG={tmp_path / 'kubeconfig'}",
        f"export PATH={cluster.bin_dir}:$PATH",
    ]


def test_two_clusters_in_two_dirs_run_side_by_side(
    cluster: Any, local_only: None, tmp_path: Path, cluster_dirs: list[Path]
) -> None:
    """A second cluster in its own folder serves beside the session's, and stops alone."""
    folder = tmp_path / "b"
    cluster_dirs.append(folder)
    env = cli_env(cluster)
    assert keepfix("cluster", "up", "--dir", str(folder), env=env).returncode == 0

    cluster.kubectl("create", "configmap", "only-in-session-cluster", "-n", "default")
    other = kubectl_as(
        cluster, folder / "kubeconfig", "get", "configmap", "-n", "default", "-o", "name"
    )
    assert other.returncode == 0, other.stderr
    assert "only-in-session-cluster" not in other.stdout

    assert keepfix("cluster", "down", "--dir", str(folder), env=env).returncode == 0
    assert processes.processes_mentioning(str(folder)) == []
    cluster.kubectl("get", "ns", "default")
    cluster.kubectl("delete", "configmap", "only-in-session-cluster", "-n", "default")


def test_minted_service_account_is_authenticated_and_bound_by_rbac(
    cluster: Any, namespace: str
) -> None:
    """A minted ServiceAccount identity may not list secrets until a RoleBinding lets it."""
    user = f"system:serviceaccount:{namespace}:robot"
    kubeconfig = cluster.mint_kubeconfig(
        user, ["system:serviceaccounts", f"system:serviceaccounts:{namespace}"]
    )
    whoami = json.loads(kubectl_as(cluster, kubeconfig, "auth", "whoami", "-o", "json").stdout)
    assert whoami["status"]["userInfo"]["username"] == user

    denied = kubectl_as(cluster, kubeconfig, "get", "secrets", "-n", namespace)
    assert denied.returncode != 0
    assert "forbidden" in denied.stderr.lower()

    cluster.kubectl("create", "serviceaccount", "robot", "-n", namespace)
    cluster.kubectl(
        "create", "role", "read-secrets", "--verb=get,list", "--resource=secrets", "-n", namespace
    )
    cluster.kubectl(
        "create",
        "rolebinding",
        "robot-reads-secrets",
        "--role=read-secrets",
        f"--serviceaccount={namespace}:robot",
        "-n",
        namespace,
    )
    assert eventually(
        lambda: kubectl_as(cluster, kubeconfig, "get", "secrets", "-n", namespace).returncode == 0
    )
    elsewhere = kubectl_as(cluster, kubeconfig, "get", "secrets", "-n", "kube-system")
    assert "forbidden" in elsewhere.stderr.lower()


CHILD = """
import sys, time
from pathlib import Path
from keepfix.localcluster import LocalCluster
cluster = LocalCluster(Path(sys.argv[1]), Path(sys.argv[2]))
cluster.start(timeout=float(sys.argv[3]))
print("ready", flush=True)
time.sleep(3600)
"""


def test_killed_owner_leaves_no_orphans(cluster: Any, local_only: None, tmp_path: Path) -> None:
    """SIGKILL of the Python process that started a cluster takes the whole cluster with it."""
    folder = tmp_path / "orphans"
    bin_dir = cluster.local.binaries["kube-apiserver"].parent
    timeout = os.environ.get("KEEPFIX_TEST_CLUSTER_TIMEOUT", "180")
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(folder), str(bin_dir), timeout],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        line = child.stdout.readline()
        assert line == "ready\n", child.stderr.read() if child.stderr else ""
        pids = live_pids(folder)
        assert len(pids) == 3
    finally:
        child.send_signal(signal.SIGKILL)
        child.communicate()
    assert eventually(lambda: processes.processes_mentioning(str(folder)) == [])


def test_namespace_fixture_gives_a_fresh_namespace_named_after_the_test(
    cluster: Any, namespace: str
) -> None:
    """The namespace exists, is empty of ConfigMaps but the root CA, and names the test."""
    assert namespace.startswith("test-namespace-fixture-gives-a-fresh")
    cluster.kubectl("get", "namespace", namespace)
    assert eventually(
        lambda: (
            cluster.kubectl("get", "configmap", "-n", namespace, "-o", "name").stdout
            == "configmap/kube-root-ca.crt\n"
        )
    )


def test_crds_fixture_establishes_every_crd_in_the_repository(
    cluster: Any, crds: list[str]
) -> None:
    """Every CustomResourceDefinition in crds/ is served by the API server."""
    established = cluster.kubectl(
        "get",
        "crd",
        *crds,
        "-o",
        "jsonpath={range .items[*]}"
        "{.status.conditions[?(@.type=='Established')].status}{'\\n'}{end}",
    )
    assert established.stdout.split() == ["True"] * len(crds)
    assert len(crds) >= 4


def test_start_on_a_running_cluster_keeps_it(cluster: Any, local_only: None) -> None:
    """start() again on the object that runs the cluster neither restarts nor moves it."""
    before = (live_pids(cluster.local.dir), cluster.local.server)
    cluster.local.start()
    assert (live_pids(cluster.local.dir), cluster.local.server) == before


def test_serving_certificate_answers_to_localhost(cluster: Any, local_only: None) -> None:
    """kubectl verifies the API server as https://localhost:PORT as well as by IP."""
    port = cluster.local.server.rsplit(":", 1)[1]
    result = cluster.kubectl(f"--server=https://localhost:{port}", "get", "ns", "default")
    assert result.returncode == 0


def test_controllers_run(cluster: Any) -> None:
    """A new namespace gets its default ServiceAccount; a deleted one is finalized away."""
    name = f"controllers-{os.getpid()}"
    cluster.kubectl("create", "namespace", name)
    assert eventually(
        lambda: cluster.kubectl("get", "sa", "default", "-n", name, check=False).returncode == 0
    )
    cluster.kubectl("delete", "namespace", name, "--wait=false")
    assert eventually(
        lambda: cluster.kubectl("get", "namespace", name, check=False).returncode != 0
    )
