"""Polling, ports and process stops shared by the integration test packages.

Importable from every package under tests/integration (pytest puts this
folder on sys.path for its conftest.py); the packages' own helper modules
re-export what their tests import.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")

#: Seconds to wait for the operator to act; generous, since the machine is shared.
PATIENCE = float(os.environ.get("KEEPFIX_TEST_PATIENCE", "60"))


def free_port() -> int:
    """A TCP port free on loopback right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def eventually(check: Callable[[], T | None], what: str, *, patience: float = PATIENCE) -> T:
    """Poll `check` until it returns something truthy; fail naming `what` and the last value.

    An exception from `check` counts as not yet (the API server may still be
    catching up), except an AssertionError, which fails at once.
    """
    deadline = time.monotonic() + patience
    last: Any = None
    while True:
        try:
            last = check()
        except AssertionError:
            raise
        except Exception as error:
            last = error
        if last and not isinstance(last, Exception):
            found: T = last
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"Timed out waiting for {what}; last: {last!r}")
        time.sleep(0.1)


def stop_process(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL after 30 s; nothing when it has already exited."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
