"""Acceptance (black-box QA) fixtures: the operator as a user runs it, one per module.

The operator runs as `python -m keepfix.handlers` with short timing knobs; a
module sets `WEBHOOK = "dev"` to get its admission webhook served on loopback
and registered with the real API server (and removed again afterwards, so a
stale configuration never blocks later tests). Everything else here is a thin
wrapper over kubectl: these tests look at the cluster the way a user does.
"""

from __future__ import annotations

import dataclasses
import json
import os
import ssl
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from shared_helpers import eventually, free_port, stop_process

FAST = {
    "KEEPFIX_FIGHT_LIMIT": "50",
    "KEEPFIX_FIGHT_SPAN": "5",
    "KEEPFIX_BACKOFF_BASE": "0.5",
    "KEEPFIX_BACKOFF_FACTOR": "2",
    "KEEPFIX_BACKOFF_CAP": "2",
    "KEEPFIX_EXPIRY_CHECK_INTERVAL": "0.5",
    "KEEPFIX_RESYNC_INTERVAL": "300",
    "KEEPFIX_EVENT_SERIES_WINDOW": "60",
    "KEEPFIX_OPERATOR_NAMESPACE": "keepfix-acceptance",
}


def never(check: Callable[[], Any], what: str, *, settle: float = 3.0) -> None:
    """Assert `check` stays falsy for `settle` seconds (used after a positive sync point)."""
    deadline = time.monotonic() + settle
    while time.monotonic() < deadline:
        value = check()
        assert not value, f"{what}: {value!r}"
        time.sleep(0.2)


@dataclasses.dataclass
class Operator:
    proc: subprocess.Popen[bytes]
    log: Path
    port: int
    webhook_port: int | None

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def metrics(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=5) as r:
            return str(r.read().decode())

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=2) as r:
                ok = bool(r.status == 200)
        except OSError:
            return False
        if ok and self.webhook_port:
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            try:
                url = f"https://127.0.0.1:{self.webhook_port}/healthz"
                with urllib.request.urlopen(url, context=ctx, timeout=2) as r:
                    ok = bool(r.status == 200)
            except OSError:
                return False
        return ok

    def stop(self) -> None:
        stop_process(self.proc)


class Kube:
    """kubectl as a user types it, with JSON helpers."""

    def __init__(self, cluster: Any) -> None:
        self.cluster = cluster

    def run(self, *args: str, input: str | None = None, check: bool = True) -> Any:
        return self.cluster.kubectl(*args, input=input, check=check)

    def get(self, kind: str, name: str, namespace: str | None = None) -> dict[str, Any]:
        args = ["get", kind, name, "-o", "json"]
        if namespace:
            args += ["-n", namespace]
        return dict(json.loads(self.run(*args).stdout))

    def items(self, kind: str, namespace: str) -> list[dict[str, Any]]:
        out = self.run("get", kind, "-n", namespace, "-o", "json").stdout
        return list(json.loads(out)["items"])

    def apply(self, manifest: dict[str, Any], *extra: str, check: bool = True) -> Any:
        return self.run("apply", *extra, "-f", "-", input=json.dumps(manifest), check=check)

    def patch(
        self,
        kind: str,
        name: str,
        namespace: str,
        body: Any,
        manager: str,
        *,
        kind_: str = "strategic",
    ) -> Any:
        return self.run(
            "patch",
            kind,
            name,
            "-n",
            namespace,
            f"--type={kind_}",
            f"--field-manager={manager}",
            "-p",
            json.dumps(body),
        )

    def events(self, namespace: str, reason: str | None = None) -> list[dict[str, Any]]:
        found = self.items("events.events.k8s.io", namespace)
        return [e for e in found if reason is None or e.get("reason") == reason]

    def regressions(self, namespace: str) -> list[dict[str, Any]]:
        return self.items("regressions.keepfix.dev", namespace)


@pytest.fixture(scope="module")
def kube(cluster: Any) -> Kube:
    return Kube(cluster)


@pytest.fixture(scope="module")
def operator(
    cluster: Any,
    crds: list[str],
    tmp_path_factory: pytest.TempPathFactory,
    request: pytest.FixtureRequest,
) -> Iterator[Operator]:
    """One operator for the module; `WEBHOOK = "dev"` in the module serves its webhook."""
    mode = getattr(request.module, "WEBHOOK", "off")
    log = tmp_path_factory.mktemp("acceptance-operator") / "operator.log"
    port = free_port()
    webhook_port = free_port() if mode == "dev" else None
    env = {
        **os.environ,
        **FAST,
        "KUBECONFIG": str(cluster.kubeconfig),
        "KEEPFIX_METRICS_PORT": str(port),
        "KEEPFIX_METRICS_HOST": "127.0.0.1",
        "KEEPFIX_WEBHOOK": mode,
    }
    if webhook_port:
        env |= {
            "KEEPFIX_WEBHOOK_HOST": "127.0.0.1",
            "KEEPFIX_WEBHOOK_PORT": str(webhook_port),
            "KEEPFIX_WEBHOOK_FAILURE_POLICY": "Ignore",
        }
    with log.open("ab") as handle:
        proc = subprocess.Popen(
            [sys.executable, "-m", "keepfix.handlers"], env=env, stdout=handle, stderr=handle
        )
    op = Operator(proc, log, port, webhook_port)

    def ready() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"operator exited {proc.returncode}:\n{op.log_text()[-3000:]}")
        return op.healthy()

    try:
        eventually(ready, "the operator to answer /healthz")
        yield op
    finally:
        op.stop()
        if webhook_port:
            cluster.kubectl(
                "delete", "validatingwebhookconfiguration", "keepfix", "--ignore-not-found"
            )
