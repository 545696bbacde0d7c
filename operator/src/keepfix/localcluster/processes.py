"""Control-plane processes: start, record, find and stop them.

Every process runs in its own session (so its process group id is its pid and
a signal to the group reaches anything it forks), writes stdout and stderr to
`<name>.log`, and is recorded in `<name>.pid` as "pid start-time". The start
time (field 22 of /proc/PID/stat) guards against signalling an unrelated
process that got a recycled pid; so a `down` from any later process, even
after the one that started the cluster was killed, stops exactly what was
started.

Two ways to start:
- attached (`die_with_parent=True`, tests and other foreground owners): the
  kernel sends SIGKILL to the process when its parent dies
  (`prctl(PR_SET_PDEATHSIG)`), so a killed test run leaves no orphans;
- detached (`keepfix cluster up`): `posix_spawn` with a new session, and
  nothing ties the process to the short-lived command that started it.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path

_PR_SET_PDEATHSIG = 1
_LOG_TAIL_LINES = 30


@dataclasses.dataclass(frozen=True)
class PidRecord:
    """One started process as its pid file records it."""

    name: str
    pid: int
    start_time: str | None


@dataclasses.dataclass
class Process:
    """A started process and the files that describe it."""

    name: str
    pid: int
    log: Path
    popen: subprocess.Popen[bytes] | None = None

    def exit_code(self) -> int | None:
        """The exit status if the process has ended, else None (reaps our own children)."""
        if self.popen is not None:
            return self.popen.poll()
        try:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
        except ChildProcessError:
            return None if is_alive(self.pid, None) else -1
        return os.waitstatus_to_exitcode(status) if pid else None

    def log_tail(self, lines: int = _LOG_TAIL_LINES) -> str:
        return log_tail(self.log, lines)


def spawn(
    name: str,
    argv: Sequence[str],
    *,
    workdir: Path,
    die_with_parent: bool,
    env: Mapping[str, str] | None = None,
) -> Process:
    """Start `argv` in its own session with its output in WORKDIR/NAME.log and a pid file."""
    log = workdir / f"{name}.log"
    environ = dict(os.environ if env is None else env)
    if die_with_parent:
        with log.open("ab") as out:
            popen = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=workdir,
                env=environ,
                start_new_session=True,
                # PR_SET_PDEATHSIG can only be set from inside the child.
                preexec_fn=_pdeathsig(os.getpid()),  # noqa: PLW1509
            )
        proc = Process(name, popen.pid, log, popen)
    else:
        proc = Process(name, _spawn_detached(argv, log, environ), log)
    write_pid(workdir, PidRecord(name, proc.pid, start_time(proc.pid)))
    return proc


def _spawn_detached(argv: Sequence[str], log: Path, env: Mapping[str, str]) -> int:
    actions = [
        (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
        (os.POSIX_SPAWN_OPEN, 1, str(log), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644),
        (os.POSIX_SPAWN_DUP2, 1, 2),
    ]
    return os.posix_spawn(argv[0], list(argv), env, file_actions=actions, setsid=True)


def _pdeathsig(parent: int) -> Callable[[], None]:
    if not sys.platform.startswith("linux"):
        return lambda: None
    prctl = ctypes.CDLL(None, use_errno=True).prctl

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        # The parent may have died between fork and prctl: then no signal would come.
        if os.getppid() != parent:
            os._exit(1)

    return preexec


def write_pid(workdir: Path, record: PidRecord) -> None:
    text = f"{record.pid} {record.start_time or '-'}\n"
    (workdir / f"{record.name}.pid").write_text(text)


def read_pids(workdir: Path) -> list[PidRecord]:
    """Every pid file in `workdir`; malformed ones are skipped."""
    records = []
    for path in sorted(workdir.glob("*.pid")):
        parts = path.read_text().split()
        if parts and parts[0].isdigit():
            stamp = parts[1] if len(parts) > 1 and parts[1] != "-" else None
            records.append(PidRecord(path.stem, int(parts[0]), stamp))
    return records


def start_time(pid: int) -> str | None:
    """Field 22 of /proc/PID/stat (clock ticks since boot), None where there is no /proc."""
    stat = _stat(pid)
    return stat[19] if stat else None


def is_alive(pid: int, expected_start: str | None) -> bool:
    """The process exists, is not a zombie, and (if known) started when it was recorded."""
    stat = _stat(pid)
    if stat is None:
        if Path("/proc/self/stat").exists():
            return False
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    return stat[0] not in ("Z", "X") and (expected_start is None or stat[19] == expected_start)


def _stat(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may hold spaces.
    return raw[raw.rfind(")") + 2 :].split()


def stop(
    records: Iterable[PidRecord],
    *,
    workdir: Path,
    grace: float = 10.0,
    poll: float = 0.05,
) -> list[PidRecord]:
    """SIGTERM each live process group, SIGKILL what is left after `grace` seconds.

    Removes the pid files. Returns the records that were alive when called.
    """
    live = [r for r in records if is_alive(r.pid, r.start_time)]
    for record in live:
        _signal_group(record.pid, signal.SIGTERM)
    if not _wait_gone(live, grace, poll):
        for record in live:
            if is_alive(record.pid, record.start_time):
                _signal_group(record.pid, signal.SIGKILL)
        _wait_gone(live, max(grace, 5.0), poll)
    for record in records:
        with contextlib.suppress(FileNotFoundError):
            (workdir / f"{record.name}.pid").unlink()
    return live


def _signal_group(pid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


def _wait_gone(records: Sequence[PidRecord], timeout: float, poll: float) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        for record in records:
            _reap(record.pid)
        if not any(is_alive(r.pid, r.start_time) for r in records):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(poll)


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def processes_mentioning(text: str) -> list[int]:
    """Pids of live processes whose command line contains `text` (Linux /proc scan)."""
    pids = []
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmdline and is_alive(int(entry.name), None):
            pids.append(int(entry.name))
    return pids


def log_tail(path: Path, lines: int = _LOG_TAIL_LINES) -> str:
    """The last `lines` lines of a log file ("" if there is none)."""
    try:
        with path.open("rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 64 * 1024))
            data = f.read().decode(errors="replace")
    except OSError:
        return ""
    return "\n".join(data.splitlines()[-lines:])
