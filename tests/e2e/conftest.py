"""The kind end-to-end tests need a working Docker daemon and the `kind` binary."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest


def _why_not() -> str | None:
    if shutil.which("docker") is None:
        return "docker is not installed"
    try:
        info = subprocess.run(
            ["docker", "info"], capture_output=True, text=True, check=False, timeout=30
        )
    except subprocess.TimeoutExpired:
        return "`docker info` did not answer within 30 s"
    if info.returncode != 0:
        reason = (info.stderr.strip().splitlines() or ["no output"])[-1]
        return f"`docker info` failed: {reason}"
    if shutil.which("kind") is None:
        return "kind is not installed (https://kind.sigs.k8s.io/docs/user/quick-start/)"
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    here = Path(__file__).resolve().parent
    # Items tests/conftest.py already skips (e2e not asked for) need no Docker probe.
    mine = [
        i
        for i in items
        if here in i.path.resolve().parents and i.get_closest_marker("skip") is None
    ]
    if not mine:
        return
    reason = _why_not()
    if reason is not None:
        skip = pytest.mark.skip(reason=f"e2e needs Docker and kind: {reason}")
        for item in mine:
            item.add_marker(skip)
