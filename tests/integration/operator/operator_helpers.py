"""Helpers for the operator tests: the operator as a subprocess, with short timing knobs.

One operator runs per test module (`operator` fixture); tests that restart it
make their own with `start_operator`. Its log goes to a file the tests can
search (a Secret value must never appear there).
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from shared_helpers import T, eventually, free_port, stop_process

#: Short timing knobs so no test sleeps through the production defaults.
FAST = {
    "KEEPFIX_FIGHT_LIMIT": "3",
    "KEEPFIX_FIGHT_SPAN": "5",
    "KEEPFIX_BACKOFF_BASE": "0.5",
    "KEEPFIX_BACKOFF_FACTOR": "2",
    "KEEPFIX_BACKOFF_CAP": "2",
    "KEEPFIX_EXPIRY_CHECK_INTERVAL": "0.5",
    "KEEPFIX_RESYNC_INTERVAL": "300",
    "KEEPFIX_EVENT_SERIES_WINDOW": "60",
    "KEEPFIX_WEBHOOK": "off",
    "KEEPFIX_WATCH_BACKOFF_CAP": "1",
}


@dataclasses.dataclass
class Operator:
    """A running operator process."""

    proc: subprocess.Popen[bytes]
    log: Path
    port: int

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def metrics(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=5) as r:
            return str(r.read().decode())

    def metric(self, name: str, **labels: str) -> float:
        """The value of one sample (0 when absent)."""
        for line in self.metrics().splitlines():
            if not line.startswith(name):
                continue
            head, _, value = line.rpartition(" ")
            sample = head.split("{", 1)
            if sample[0] != name:
                continue
            found = dict(
                part.split("=", 1)
                for part in (sample[1].rstrip("}").split(",") if len(sample) > 1 else [])
            )
            if all(found.get(k) == json.dumps(v) for k, v in labels.items()):
                return float(value)
        return 0.0

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=2) as r:
                return bool(r.status == 200)
        except OSError:
            return False

    def stop(self) -> None:
        stop_process(self.proc)


def start_operator(
    kubeconfig: Path, log: Path, *, argv: Sequence[str] = ("-m", "keepfix.handlers"), **env: str
) -> Operator:
    """Start the operator (`python ARGV`) and wait until /healthz answers."""
    port = free_port()
    environ = {
        **os.environ,
        **FAST,
        "KUBECONFIG": str(kubeconfig),
        "KEEPFIX_METRICS_PORT": str(port),
        "KEEPFIX_METRICS_HOST": "127.0.0.1",
        **env,
    }
    handle = log.open("ab")
    proc = subprocess.Popen([sys.executable, *argv], env=environ, stdout=handle, stderr=handle)
    handle.close()
    op = Operator(proc, log, port)
    try:
        eventually(
            lambda: op.healthy() or (proc.poll() is not None and _died(op)), "operator healthy"
        )
    except BaseException:
        op.stop()
        raise
    return op


def _died(op: Operator) -> bool:
    raise AssertionError(f"The operator exited with {op.proc.returncode}:\n{op.log_text()[-3000:]}")


def get(cluster: Any, kind: str, name: str, namespace: str | None = None) -> dict[str, Any]:
    """One object as JSON (kubectl get -o json)."""
    args = ["get", kind, name, "-o", "json"]
    if namespace:
        args += ["-n", namespace]
    return dict(json.loads(cluster.kubectl(*args).stdout))


def items(cluster: Any, kind: str, namespace: str | None = None, *selector: str) -> list[Any]:
    """The items of a list (kubectl get KIND -o json)."""
    args = ["get", kind, "-o", "json", *selector]
    args += ["-n", namespace] if namespace else ["-A"]
    return list(json.loads(cluster.kubectl(*args).stdout)["items"])


def apply(cluster: Any, manifest: dict[str, Any] | str) -> None:
    """kubectl apply of one manifest (a dict or YAML text)."""
    text = manifest if isinstance(manifest, str) else json.dumps(manifest)
    cluster.kubectl("apply", "-f", "-", input=text)


def events(cluster: Any, namespace: str, reason: str | None = None) -> list[Any]:
    """events.k8s.io/v1 Events of a namespace, optionally of one reason."""
    found = items(cluster, "events.events.k8s.io", namespace)
    return [e for e in found if reason is None or e.get("reason") == reason]


def mitigation(
    name: str,
    namespace: str,
    target: dict[str, Any],
    fields: list[dict[str, Any]],
    **spec: Any,
) -> dict[str, Any]:
    """A Mitigation manifest; extra keyword arguments go into the spec as given."""
    return {
        "apiVersion": "keepfix.dev/v1alpha1",
        "kind": "Mitigation",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"target": target, "fields": fields, **spec},
    }


def configmap(name: str, namespace: str, data: dict[str, str], **labels: str) -> dict[str, Any]:
    """A ConfigMap manifest."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "data": data,
    }


def patch(  # noqa: PLR0917
    cluster: Any, kind: str, name: str, namespace: str, body: Any, manager: str
) -> None:
    """A merge patch under a named field manager."""
    cluster.kubectl(
        "patch",
        kind,
        name,
        "-n",
        namespace,
        "--type=merge",
        f"--field-manager={manager}",
        "-p",
        json.dumps(body),
    )


def regressions(cluster: Any, namespace: str) -> list[Any]:
    return items(cluster, "regressions.keepfix.dev", namespace)


def until(fetch: Callable[[], T], pred: Callable[[T], bool], what: str) -> T:
    """Poll `fetch` until `pred` holds for its value; return that value."""
    box: list[T] = []

    def check() -> bool:
        box[:] = [fetch()]
        return pred(box[0])

    eventually(check, what)
    return box[0]
