"""The operator process with its webhook, for tests where the real API server calls it.

`operator` starts `python -m keepfix.handlers --webhook=dev` (through the
environment, as `keepfix run` does) on free ports, waits until it serves and
has registered the ValidatingWebhookConfiguration, and stops it afterwards.
Because the configuration and Guardrails are cluster-wide, each test deletes
what it made: the Guardrails it created (`guardrails` fixture) and the
webhook configuration (a stale one with `failurePolicy: Fail` would block
every later test).
"""

from __future__ import annotations

import dataclasses
import os
import ssl
import subprocess
import sys
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from shared_helpers import eventually, free_port, stop_process
from webhook_helpers import webhook_configuration

from keepfix.api import conventions


@dataclasses.dataclass
class Operator:
    """A running operator process."""

    proc: subprocess.Popen[bytes]
    webhook_port: int
    metrics_port: int
    log: Path

    def metrics(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics") as resp:
            return str(resp.read().decode())

    def sample(self, name: str, **labels: str) -> float:
        """The value of one sample from /metrics (0 when absent)."""
        wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
        for line in self.metrics().splitlines():
            if line.startswith(f"{name}{{") or line.startswith(f"{name} "):
                head, _, value = line.rpartition(" ")
                got = head[len(name) :].strip("{}")
                if ",".join(sorted(got.split(","))) == wanted or (not wanted and not got):
                    return float(value)
        return 0.0

    def healthy(self) -> bool:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        try:
            url = f"https://127.0.0.1:{self.webhook_port}/healthz"
            with urllib.request.urlopen(url, context=context, timeout=2) as resp:
                return bool(resp.status == 200)
        except OSError:
            return False

    def stop(self) -> None:
        stop_process(self.proc)


StartOperator = Callable[..., Operator]


@pytest.fixture
def operator(cluster: Any, crds: list[str], tmp_path: Path) -> Iterator[StartOperator]:
    """A factory: `operator(failure_policy="Ignore", cert_dir=None)` starts an operator process."""
    started: list[Operator] = []

    def start(*, failure_policy: str = "Ignore", cert_dir: Path | None = None) -> Operator:
        webhook_port, metrics_port = free_port(), free_port()
        env = {
            **os.environ,
            "KUBECONFIG": str(cluster.kubeconfig),
            "KEEPFIX_WEBHOOK": "dev",
            "KEEPFIX_WEBHOOK_HOST": "127.0.0.1",
            "KEEPFIX_WEBHOOK_PORT": str(webhook_port),
            "KEEPFIX_WEBHOOK_FAILURE_POLICY": failure_policy,
            "KEEPFIX_METRICS_HOST": "127.0.0.1",
            "KEEPFIX_METRICS_PORT": str(metrics_port),
            "KEEPFIX_OPERATOR_NAMESPACE": "keepfix",
        }
        if cert_dir is not None:
            env["KEEPFIX_WEBHOOK_CERT_DIR"] = str(cert_dir)
        log = tmp_path / f"operator-{len(started)}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "keepfix.handlers"],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        op = Operator(proc, webhook_port, metrics_port, log)
        started.append(op)

        def ready() -> bool:
            if proc.poll() is not None:
                pytest.fail(f"The operator exited with {proc.returncode}:\n{log.read_text()}")
            return op.healthy() and _registered_port(cluster) in (webhook_port, -1)

        eventually(ready, what="the operator to serve its webhook and register it")
        return op

    yield start
    for op in started:
        op.stop()
    cluster.kubectl(
        "delete",
        "validatingwebhookconfiguration",
        conventions.WEBHOOK_CONFIGURATION_NAME,
        "--ignore-not-found",
    )
    for op in started:
        # Captured by pytest: shown only when the test fails.
        sys.stderr.write(op.log.read_text())


def _registered_port(cluster: Any) -> int | None:
    """The port the webhook configuration points at; an empty one counts as registered."""
    body = webhook_configuration(cluster)
    if body is None:
        return None
    urls = [w["clientConfig"].get("url", "") for w in body.get("webhooks") or []]
    if not urls:
        return -1
    return int(urls[0].rsplit(":", 1)[1].split("/", 1)[0])


@pytest.fixture
def guardrails(cluster: Any) -> Iterator[Callable[[dict[str, Any]], None]]:
    """Create Guardrails (cluster-scoped) that are deleted after the test."""
    names: list[str] = []

    def create(body: dict[str, Any]) -> None:
        names.append(body["metadata"]["name"])
        cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump(body))

    yield create
    if names:
        cluster.kubectl("delete", "guardrail", *names, "--ignore-not-found", "--wait=false")
