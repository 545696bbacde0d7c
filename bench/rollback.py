"""Drift-to-rollback latency of the demo scenario on a local control plane.

A real kube-apiserver + etcd (keepfix.localcluster), the CRDs, the operator
as a subprocess (`python -m keepfix.handlers`), the Deployment `web` and the
web-memory-fix Mitigation of `keepfix demo`. Then N times: cut the memory
limit to 128Mi under field manager `kubectl-edit` and wait until a watch sees
512Mi again. Two figures per drift:

- operator: from the watch event's arrival in the operator to the API
  server accepting the rollback patch (`keepfix_drift_to_rollback_seconds`,
  read exactly from the operator's log line `rollback_ms=`);
- end to end: from sending the drifting PATCH to this process's own watch
  seeing the limit back (API round trip + both watch deliveries + rollback).

Optionally `--objects N` first creates N ConfigMaps that a selector
Mitigation protects (watched objects), to see latency and the operator's
resident memory (from /proc) at that size. The fight limit is raised for the
run, since N drifts of one object in a minute would otherwise be a fight.

`python -m bench rollback` (when listed in bench/__main__.py) or
`python -m bench.rollback [--drifts 50] [--objects 0] [--no-write]`.
"""

from __future__ import annotations

import argparse
import copy
import datetime
import json
import os
import platform
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from kubernetes import client, config, watch

from keepfix import localcluster
from keepfix.api import crdgen
from keepfix.cli import demo

SECTION = "Drift to rollback"
NAMESPACE = "shop"
MEMORY = "spec.template.spec.containers[name=web].resources.limits.memory"


def run(*, quick: bool = False, drifts: int = 50, objects: int = 0) -> str:
    """Run the scenario and return the Markdown section."""
    if quick:
        drifts, objects = max(5, drifts // 10), objects // 10
    with tempfile.TemporaryDirectory(prefix="keepfix-bench-") as tmp:
        cluster = localcluster.LocalCluster(Path(tmp) / "cluster", die_with_parent=True)
        with cluster:
            return _scenario(cluster, Path(tmp), drifts=drifts, objects=objects, quick=quick)


def _scenario(
    cluster: localcluster.LocalCluster, tmp: Path, *, drifts: int, objects: int, quick: bool
) -> str:
    kubectl = str(cluster.client_dirs()[0] / "kubectl")
    env = {**os.environ, "KUBECONFIG": str(cluster.kubeconfig)}

    def k(*args: str, input: str | None = None) -> None:
        subprocess.run(
            [kubectl, *args], input=input, env=env, check=True, capture_output=True, text=True
        )

    k("apply", "--server-side", "-f", "-", input=crdgen.render_all())
    k("wait", "--for=condition=Established", "crd", "--all", "--timeout=120s")
    k("create", "namespace", NAMESPACE)
    k("apply", "-f", "-", input=json.dumps(_deployment()))
    if objects:
        _create_configmaps(k, objects)
    port = _free_port()
    log = tmp / "operator.log"
    proc = _start_operator(env, port, log)
    try:
        k("apply", "-f", "-", input=json.dumps(_mitigation()))
        if objects:
            k("apply", "-f", "-", input=json.dumps(_selector_mitigation()))
        try:
            _wait_watching(kubectl, env, objects)
        except RuntimeError:
            sys.stderr.write(log.read_text(errors="replace")[-4000:])
            raise
        config.load_kube_config(config_file=str(cluster.kubeconfig))  # type: ignore[no-untyped-call]
        end_to_end = _drift_loop(drifts)
        # The operator logs each drift after its bookkeeping: wait for the last ones.
        deadline = time.monotonic() + 30
        while len(_operator_seconds(log)) < drifts and time.monotonic() < deadline:
            time.sleep(0.2)
        operator = _operator_seconds(log)
        rss = _rss_mib(proc.pid)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    return _section(end_to_end, operator, rss=rss, objects=objects, quick=quick)


def _drift_loop(drifts: int) -> list[float]:
    apps = client.AppsV1Api()
    back = threading.Event()
    seen: dict[str, int] = {"rv": 0}
    stop = threading.Event()

    def watcher() -> None:
        try:
            _watch(apps, back, seen, stop)
        except Exception:
            if not stop.is_set():
                raise

    thread = threading.Thread(target=watcher, daemon=True)
    thread.start()
    time.sleep(1.0)
    patch = [
        {
            "op": "replace",
            "path": "/spec/template/spec/containers/0/resources/limits/memory",
            "value": "128Mi",
        }
    ]
    results = []
    for _ in range(drifts):
        back.clear()
        began = time.monotonic()
        drifted = apps.patch_namespaced_deployment(
            "web", NAMESPACE, patch, field_manager="kubectl-edit"
        )
        seen["rv"] = int(str(drifted.metadata.resource_version))  # type: ignore[union-attr]
        if not back.wait(timeout=30):
            raise RuntimeError("the drift was not rolled back within 30 s")
        results.append(time.monotonic() - began)
        time.sleep(0.2)
    stop.set()
    return results


def _watch(apps: Any, back: threading.Event, seen: dict[str, int], stop: threading.Event) -> None:
    w = watch.Watch()  # type: ignore[no-untyped-call]
    for event in w.stream(  # type: ignore[no-untyped-call]
        apps.list_namespaced_deployment,
        NAMESPACE,
        field_selector="metadata.name=web",
        timeout_seconds=600,
    ):
        obj = event["object"]
        memory = obj.spec.template.spec.containers[0].resources.limits["memory"]
        if memory == "512Mi" and int(obj.metadata.resource_version) > seen["rv"]:
            back.set()
        if stop.is_set():
            w.stop()  # type: ignore[no-untyped-call]


def _operator_seconds(log: Path) -> list[float]:
    found = re.findall(r"rollback_ms=([0-9.]+)", log.read_text(errors="replace"))
    return [float(ms) / 1000 for ms in found]


def _section(
    end_to_end: Sequence[float],
    operator: Sequence[float],
    *,
    rss: float | None,
    objects: int,
    quick: bool,
) -> str:
    today = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d")
    label = " (quick run: smoke test, not a measurement)" if quick else ""
    rows = [
        ("operator: watch event to accepted patch", operator),
        ("end to end: drifting PATCH sent to rollback seen", end_to_end),
    ]
    lines = [
        f"## {section_title(objects)}",
        "",
        f"One run of `python -m bench.rollback`{label} on {today}: the `keepfix demo` scenario "
        f"(Deployment web, Mitigation web-memory-fix) on a local kube-apiserver + etcd, "
        f"{len(end_to_end)} drifts of the memory limit to 128Mi by `kubectl-edit`, each rolled "
        f"back by the operator. {platform.machine()}, {os.cpu_count()} CPUs shared with other "
        f"work, Python {platform.python_version()}; figures vary from run to run with the "
        "load of that other work.",
        "",
        "| measure | drifts | p50 | p90 | p99 | max |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, values in rows:
        if values:
            lines.append(
                f"| {name} | {len(values)} | {_ms(_pct(values, 50))} | {_ms(_pct(values, 90))} | "
                f"{_ms(_pct(values, 99))} | {_ms(max(values))} |"
            )
    lines.append("")
    if objects:
        lines.append(
            f"Watched objects: {objects} ConfigMaps under a selector Mitigation, and the "
            "Deployment."
        )
    if rss is not None:
        lines.append(f"Operator resident memory at the end of the run: {rss:.0f} MiB.")
    lines.append("")
    return "\n".join(lines)


def section_title(objects: int) -> str:
    """The `##` heading: one section for the plain scenario, one per watched-object count."""
    return f"{SECTION} with {objects:,} watched objects" if objects else SECTION


def _pct(values: Sequence[float], pct: int) -> float:
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    return statistics.quantiles(ordered, n=100, method="inclusive")[pct - 1]


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def _rss_mib(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def _start_operator(env: dict[str, str], port: int, log: Path) -> subprocess.Popen[bytes]:
    environ = {
        **env,
        "KEEPFIX_METRICS_PORT": str(port),
        "KEEPFIX_METRICS_HOST": "127.0.0.1",
        "KEEPFIX_WEBHOOK": "off",
        "KEEPFIX_FIGHT_LIMIT": "100000",
    }
    handle = log.open("ab")
    proc = subprocess.Popen(
        [sys.executable, "-m", "keepfix.handlers"], env=environ, stdout=handle, stderr=handle
    )
    handle.close()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
                if r.status == 200:
                    return proc
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError(f"the operator did not start; see {log}")


def _wait_watching(kubectl: str, env: dict[str, str], objects: int) -> None:
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        out = subprocess.run(
            [kubectl, "get", "mitigations", "-n", NAMESPACE, "-o", "json"],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        statuses = [i.get("status") or {} for i in json.loads(out)["items"]]
        expected = 2 if objects else 1
        if len(statuses) == expected and all(s.get("phase") == "Watching" for s in statuses):
            return
        time.sleep(0.5)
    raise RuntimeError("the Mitigations did not reach Watching")


def _create_configmaps(k: Any, count: int) -> None:
    batch = 500
    for start in range(0, count, batch):
        items = [
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {
                    "name": f"cfg-{i}",
                    "namespace": NAMESPACE,
                    "labels": {"bench": "yes"},
                },
                "data": {"mode": "safe", "payload": "x" * 200},
            }
            for i in range(start, min(count, start + batch))
        ]
        k(
            "apply",
            "--server-side",
            "-f",
            "-",
            input=json.dumps({"apiVersion": "v1", "kind": "List", "items": items}),
        )


def _deployment() -> dict[str, Any]:
    """The demo's Deployment: the benchmark measures the `keepfix demo` scenario."""
    return copy.deepcopy(demo.DEPLOYMENT)


def _mitigation() -> dict[str, Any]:
    return {
        "apiVersion": "keepfix.dev/v1alpha1",
        "kind": "Mitigation",
        "metadata": {"name": "web-memory-fix", "namespace": NAMESPACE},
        "spec": {
            "target": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
            "fields": [{"path": MEMORY, "value": "512Mi", "knownBad": ["128Mi"]}],
            "incident": {"id": "INC-1234"},
            "owner": {"team": "shop-sre"},
        },
    }


def _selector_mitigation() -> dict[str, Any]:
    return {
        "apiVersion": "keepfix.dev/v1alpha1",
        "kind": "Mitigation",
        "metadata": {"name": "configs-fix", "namespace": NAMESPACE},
        "spec": {
            "target": {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "selector": {"matchLabels": {"bench": "yes"}},
            },
            "fields": [{"path": "data.mode", "value": "safe"}],
        },
    }


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.rollback", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--drifts", type=int, default=50, help="drifts to measure (default 50)")
    parser.add_argument(
        "--objects", type=int, default=0, help="extra watched ConfigMaps (default 0)"
    )
    parser.add_argument("--quick", action="store_true", help="a tenth of the drifts (smoke test)")
    parser.add_argument(
        "--no-write", action="store_true", help="print, do not touch docs/performance.md"
    )
    args = parser.parse_args(argv)
    text = run(quick=args.quick, drifts=args.drifts, objects=args.objects)
    if args.no_write:
        sys.stdout.write(text)
        return 0
    from bench.__main__ import DOC, PREAMBLE, replace_section

    title = section_title(args.objects)
    DOC.write_text(replace_section(DOC.read_text() if DOC.exists() else PREAMBLE, title, text))
    print(f"bench: wrote section {title!r} of {DOC}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
