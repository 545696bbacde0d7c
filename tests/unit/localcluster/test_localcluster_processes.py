"""Process records: pid files, start times, group stop with SIGKILL fallback."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from keepfix.localcluster import processes


def wait_for_text(path: Path) -> str:
    while not (path.exists() and path.read_text().endswith("\n")):
        time.sleep(0.01)
    return path.read_text()


@pytest.fixture
def spawned(tmp_path: Path) -> Iterator[list[processes.Process]]:
    """Processes a test started; whatever is left of them is stopped afterwards."""
    made: list[processes.Process] = []
    yield made
    for proc in made:
        record = processes.PidRecord(proc.name, proc.pid, None)
        processes.stop([record], workdir=tmp_path / "cleanup")
        if proc.popen is not None:
            proc.popen.wait()


@pytest.mark.parametrize("attached", [True, False])
def test_spawn_records_pid_and_stop_ends_it(
    tmp_path: Path, spawned: list[processes.Process], attached: bool
) -> None:
    """The pid file names the live process; stop() ends it and removes the file."""
    proc = processes.spawn(
        "sleeper", ["/bin/sleep", "300"], workdir=tmp_path, die_with_parent=attached
    )
    spawned.append(proc)
    [record] = processes.read_pids(tmp_path)
    assert (record.name, record.pid) == ("sleeper", proc.pid)
    assert processes.is_alive(record.pid, record.start_time)

    assert processes.stop([record], workdir=tmp_path, grace=5.0) == [record]
    assert not processes.is_alive(record.pid, None)
    assert processes.read_pids(tmp_path) == []


def test_stop_escalates_to_sigkill_after_the_grace_period(
    tmp_path: Path, spawned: list[processes.Process]
) -> None:
    """A process group that ignores SIGTERM is killed, children too, after the grace period."""
    script = "trap '' TERM; /bin/sleep 300 & echo $! > child; wait"
    proc = processes.spawn(
        "stubborn", ["/bin/sh", "-c", script], workdir=tmp_path, die_with_parent=True
    )
    spawned.append(proc)
    child = int(wait_for_text(tmp_path / "child"))
    [record] = processes.read_pids(tmp_path)
    processes.stop([record], workdir=tmp_path, grace=0.2)
    assert (processes.is_alive(record.pid, None), processes.is_alive(child, None)) == (False, False)


def test_recycled_pid_is_left_alone(tmp_path: Path) -> None:
    """A pid file whose start time differs from the live process never signals that process."""
    bystander = subprocess.Popen(["/bin/sleep", "300"])
    try:
        stale = processes.PidRecord("etcd", bystander.pid, "1")
        processes.write_pid(tmp_path, stale)
        assert processes.stop(processes.read_pids(tmp_path), workdir=tmp_path, grace=0.1) == []
        assert bystander.poll() is None
        assert processes.read_pids(tmp_path) == []
    finally:
        bystander.kill()
        bystander.wait()


def test_exit_code_and_log_tail_explain_a_failed_process(tmp_path: Path) -> None:
    """A process that died reports its status and the end of its output."""
    script = "for i in $(seq 1 50); do echo line $i; done; exit 3"
    proc = processes.spawn(
        "failing", ["/bin/sh", "-c", script], workdir=tmp_path, die_with_parent=False
    )
    while (code := proc.exit_code()) is None:
        time.sleep(0.01)
    assert code == 3
    assert proc.log_tail(3).splitlines() == ["line 48", "line 49", "line 50"]


def test_malformed_pid_files_are_skipped(tmp_path: Path) -> None:
    """Garbage in a pid file is ignored rather than fatal."""
    (tmp_path / "junk.pid").write_text("not a pid\n")
    (tmp_path / "ok.pid").write_text("123 -\n")
    assert processes.read_pids(tmp_path) == [processes.PidRecord("ok", 123, None)]
