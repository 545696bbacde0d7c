"""LocalCluster start-up failures, with stand-in binaries: log tails, retries, no leftovers."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from keepfix import localcluster
from keepfix.localcluster import processes

SLEEPER = f"""#!/bin/sh
echo "$0 is waiting"
exec {sys.executable} -c 'import time; time.sleep(300)' "$@"
"""


def fake_bin(folder: Path, **scripts: str) -> Path:
    """A folder of stand-in binaries: those named in `scripts`, the rest sleep forever."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("etcd", "kube-apiserver", "kube-controller-manager", "kubectl", "helm"):
        path = folder / name
        path.write_text(scripts.get(name.replace("-", "_"), SLEEPER))
        path.chmod(0o755)
    return folder


@pytest.fixture
def isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for var in ("KEEPFIX_K8S_BIN", "KUBEBUILDER_ASSETS"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("KEEPFIX_CACHE", str(tmp_path / "no-cache"))
    monkeypatch.setenv("PATH", str(tmp_path / "no-path"))


def test_a_dying_process_raises_with_its_log_tail(tmp_path: Path, isolated: None) -> None:
    """etcd exiting early fails start() naming etcd, its status and its last 30 lines."""
    crash = "#!/bin/sh\ni=1\nwhile [ $i -le 45 ]; do echo etcd line $i; i=$((i+1)); done\nexit 2\n"
    cluster = localcluster.LocalCluster(
        tmp_path / "c", fake_bin(tmp_path / "bin", etcd=crash), poll_interval=0.01
    )
    with pytest.raises(localcluster.ProcessFailedError) as caught:
        cluster.start(timeout=60)
    lines = caught.value.tail.splitlines()
    assert (caught.value.name, len(lines), lines[0], lines[-1]) == (
        "etcd",
        30,
        "etcd line 16",
        "etcd line 45",
    )
    assert "exited with 2" in str(caught.value)
    assert processes.processes_mentioning(str(cluster.dir)) == []


def test_a_process_that_never_gets_ready_times_out_and_is_stopped(
    tmp_path: Path, isolated: None
) -> None:
    """Past the timeout, start() raises with the waiting process's log and stops everything."""
    cluster = localcluster.LocalCluster(
        tmp_path / "c", fake_bin(tmp_path / "bin"), poll_interval=0.01, stop_grace=5
    )
    with pytest.raises(localcluster.ProcessFailedError, match="etcd was not ready") as caught:
        cluster.start(timeout=0.5)
    assert "etcd is waiting" in caught.value.tail
    assert processes.processes_mentioning(str(cluster.dir)) == []
    assert processes.read_pids(cluster.dir) == []


def test_a_port_taken_in_between_is_retried(tmp_path: Path, isolated: None) -> None:
    """`address already in use` gets new ports, three attempts in all."""
    attempts = tmp_path / "attempts"
    taken = f"#!/bin/sh\necho x >> {attempts}\necho 'bind: address already in use'\nexit 1\n"
    cluster = localcluster.LocalCluster(
        tmp_path / "c", fake_bin(tmp_path / "bin", etcd=taken), poll_interval=0.01
    )
    with pytest.raises(localcluster.ProcessFailedError, match="address already in use"):
        cluster.start(timeout=60)
    assert attempts.read_text().count("x") == 3


def test_start_stops_leftovers_recorded_in_the_folder(tmp_path: Path, isolated: None) -> None:
    """A process recorded by an earlier run in DIR is stopped before anything starts."""
    folder = tmp_path / "c"
    folder.mkdir()
    leftover = processes.spawn(
        "kube-apiserver", ["/bin/sleep", "300"], workdir=folder, die_with_parent=False
    )
    crash = "#!/bin/sh\nexit 1\n"
    cluster = localcluster.LocalCluster(
        folder, fake_bin(tmp_path / "bin", etcd=crash), poll_interval=0.01
    )
    with pytest.raises(localcluster.ProcessFailedError):
        cluster.start(timeout=60)
    assert leftover.exit_code() is not None


def test_stop_works_from_another_instance_and_is_idempotent(tmp_path: Path) -> None:
    """Any LocalCluster on DIR stops what DIR records; a second stop finds nothing."""
    folder = tmp_path / "c"
    folder.mkdir()
    procs = [
        processes.spawn(name, ["/bin/sleep", "300"], workdir=folder, die_with_parent=False)
        for name in ("etcd", "kube-apiserver")
    ]
    assert sorted(localcluster.LocalCluster(folder).stop(grace=5)) == ["etcd", "kube-apiserver"]
    assert [p.exit_code() is not None for p in procs] == [True, True]
    assert localcluster.LocalCluster(folder).stop() == []
    assert localcluster.LocalCluster(tmp_path / "never-made").stop() == []


def test_no_server_and_no_minting_before_a_start(tmp_path: Path) -> None:
    """Asking a folder that never ran a cluster for its server or a kubeconfig says so."""
    cluster = localcluster.LocalCluster(tmp_path)
    with pytest.raises(localcluster.LocalClusterError, match="No cluster has been started"):
        _ = cluster.server
    with pytest.raises(localcluster.LocalClusterError, match="No cluster has been started"):
        cluster.mint_kubeconfig("jane")


def test_missing_binaries_fail_before_anything_starts(tmp_path: Path, isolated: None) -> None:
    """Without binaries, start() says how to get them and leaves no process."""
    cluster = localcluster.LocalCluster(tmp_path / "c", tmp_path / "empty")
    with pytest.raises(localcluster.MissingBinariesError, match="make k8s-bin"):
        cluster.start()
    assert processes.read_pids(cluster.dir) == []
