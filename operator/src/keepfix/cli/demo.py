"""`keepfix demo`: the drift story on a local control plane, narrated.

Starts (or reuses) a local control plane in DIR, applies the CRDs, the `shop`
namespace and the web-memory-fix Mitigation, starts the operator as a
subprocess (`keepfix run`), creates the Deployment `web` at its fixed state,
then plays the incident again: `kubectl patch --field-manager=kubectl-edit`
cuts the memory limit back to 128Mi. Each step is told in plain words with
what the cluster shows: the DriftDetected Event, the rollback and how long it
took, the Critical Regression naming INC-1234, its owner and `kubectl-edit`.
Then it prints the kubectl commands to look around and stays up until Ctrl-C
(or SIGTERM), and stops everything it started. `--no-wait` exits after the
story (tests).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from keepfix import localcluster
from keepfix.api import conventions

T = TypeVar("T")

NAMESPACE = "shop"
MITIGATION = "web-memory-fix"
MEMORY_PATH = "spec.template.spec.containers[name=web].resources.limits.memory"
#: How long any one step may take before the demo gives up (seconds).
STEP_TIMEOUT = 120.0

_MITIGATION = {
    "apiVersion": conventions.API_VERSION,
    "kind": conventions.KIND_MITIGATION,
    "metadata": {"name": MITIGATION, "namespace": NAMESPACE},
    "spec": {
        "target": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
        "fields": [
            {"path": MEMORY_PATH, "value": "512Mi", "knownBad": ["128Mi"]},
            {"path": "spec.replicas", "value": 3},
        ],
        "action": "Rollback",
        "admission": "Warn",
        "watchWindow": "30d",
        "category": "ConfigDrift",
        "owner": {"team": "shop-sre", "contact": "#shop-oncall", "escalation": "platform-sre"},
        "incident": {
            "id": "INC-1234",
            "url": "https://incidents.example.com/INC-1234",
            "description": "web OOM-looped after the memory limit was cut to 128Mi",
        },
        "fix": {"commit": "3f2a9c1", "description": "memory limit back to 512Mi"},
        "runbook": "https://runbooks.example.com/shop/web-oom",
    },
}

#: The Deployment of the drift story (also the benchmark scenario: bench/rollback.py).
DEPLOYMENT = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {"name": "web", "namespace": NAMESPACE, "labels": {"app": "web"}},
    "spec": {
        "replicas": 3,
        "selector": {"matchLabels": {"app": "web"}},
        "template": {
            "metadata": {"labels": {"app": "web"}},
            "spec": {
                "containers": [
                    {
                        "name": "web",
                        "image": "nginx:1.27.3",
                        "resources": {"limits": {"memory": "512Mi"}},
                    }
                ]
            },
        },
    },
}


_GUARDRAIL = {
    "apiVersion": conventions.API_VERSION,
    "kind": conventions.KIND_GUARDRAIL,
    "metadata": {"name": "no-privileged"},
    "spec": {
        "match": {
            "resources": [{"apiGroups": ["apps"], "kinds": ["Deployment"]}],
            "namespaces": [NAMESPACE],
        },
        "rules": [
            {
                "name": "not-privileged",
                "path": "podSpec.containers[*].securityContext.privileged",
                "notIn": [True],
                "message": "privileged containers let INC-99 escape to the node",
            }
        ],
        "enforcement": "Deny",
        "owner": {"team": "platform-sre"},
        "incident": {"id": "INC-99"},
    },
}

_PRIVILEGED = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {"name": "debug", "namespace": NAMESPACE, "labels": {"app": "debug"}},
    "spec": {
        "replicas": 1,
        "selector": {"matchLabels": {"app": "debug"}},
        "template": {
            "metadata": {"labels": {"app": "debug"}},
            "spec": {
                "containers": [
                    {
                        "name": "debug",
                        "image": "busybox:1.37",
                        "securityContext": {"privileged": True},
                    }
                ]
            },
        },
    },
}


class DemoError(RuntimeError):
    """A step of the demo did not happen; the message says which."""


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "demo",
        help="local control plane + CRDs + operator + a narrated drift story",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--dir",
        type=Path,
        default=Path(".local/cluster"),
        help="where the cluster and the operator log live (default: %(default)s)",
    )
    p.add_argument("--no-wait", action="store_true", help="exit after the story")
    p.add_argument(
        "--webhook",
        choices=("auto", "dev", "off"),
        default="auto",
        help="the operator's webhook mode (auto: dev when keepfix has one, else off)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    stop = threading.Event()
    previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    for sig in previous:
        signal.signal(sig, lambda *_: stop.set())
    try:
        with Demo(Path(args.dir).absolute(), stop) as demo:
            demo.story(webhook=_webhook_mode(args.webhook))
            if not args.no_wait:
                say("\nThe cluster and the operator keep running. Press Ctrl-C to stop them.")
                stop.wait()
                say("\nStopping everything the demo started...")
        return 0
    except (DemoError, localcluster.MissingBinariesError, localcluster.LocalClusterError) as e:
        say(f"Error: {e}")
        return 1
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _webhook_mode(choice: str) -> str:
    if choice != "auto":
        return choice
    return "dev" if importlib.util.find_spec("keepfix.handlers.admission") else "off"


class Demo:
    """The processes the demo owns and the story it tells."""

    def __init__(self, dir: Path, stop: threading.Event) -> None:
        self.dir = dir
        self.stop = stop
        self.cluster = localcluster.LocalCluster(dir, die_with_parent=True, progress=say)
        self.started_cluster = False
        self.operator: subprocess.Popen[bytes] | None = None
        self.port = _free_port()
        self.kubectl_path = ""

    def __enter__(self) -> Demo:
        return self

    def __exit__(self, *_: object) -> None:
        if self.operator is not None and self.operator.poll() is None:
            self.operator.send_signal(signal.SIGTERM)
            try:
                self.operator.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.operator.kill()
                self.operator.wait()
            say("Stopped the operator")
        if self.started_cluster:
            stopped = self.cluster.stop()
            say(f"Stopped the control plane ({', '.join(stopped) or 'nothing left'})")

    # ------------------------------------------------------------------ the story

    def story(self, *, webhook: str) -> None:
        self.up()
        env_line = f"export KUBECONFIG={shlex.quote(str(self.cluster.kubeconfig))}"
        say(f"\n{env_line}\n")
        step("1. The keepfix kinds and the shop namespace")
        self.apply_crds()
        self.kubectl("create", "namespace", NAMESPACE, check=False)
        step("2. The operator")
        self.start_operator(webhook)
        step("3. The web Deployment at its fixed state, and the Mitigation that records the fix")
        self.apply(DEPLOYMENT)
        self.apply(self.mitigation())
        say("   web runs with a 512Mi memory limit: the fix of INC-1234 (it OOM-looped at 128Mi).")
        self.wait(lambda: self.phase() == "Watching", "the Mitigation to be Watching")
        say(f"   Mitigation {MITIGATION} is Watching the memory limit and the replica count.")
        step("4. Someone runs kubectl edit and cuts the memory limit back to 128Mi")
        say(f"   $ kubectl -n {NAMESPACE} patch deployment web --field-manager=kubectl-edit ...")
        self.kubectl(
            "-n", NAMESPACE, "patch", "deployment", "web", "--field-manager=kubectl-edit",
            "--type=json", "-p",
            json.dumps([{
                "op": "replace",
                "path": "/spec/template/spec/containers/0/resources/limits/memory",
                "value": "128Mi",
            }]),
        )  # fmt: skip
        self.narrate_outcome()
        if webhook != "off":
            step("5. A Guardrail rejects known-bad config before it lands")
            self.denial()
        step("Look around yourself")
        for line in self.next_commands(env_line):
            say(line)

    def narrate_outcome(self) -> None:
        detected = self.wait(lambda: self.event("DriftDetected"), "the DriftDetected Event")
        say(f"   Event DriftDetected on deployment/web: {detected['note']}")
        rolled = self.wait(lambda: self.event("DriftRolledBack"), "the rollback")
        memory = self.memory()
        seconds = self.rollback_seconds()
        took = f"{seconds * 1000:.0f} ms" if seconds is not None else "moments"
        say(f"   keepfix put the limit back: it is {memory} again, {took} after the change.")
        say(f"   Event DriftRolledBack: {rolled['note']}")
        reg = self.wait(self.regression, "the Regression")
        spec = reg["spec"]
        who = ", ".join(c["manager"] for c in spec.get("changedBy", [])[:1]) or "unknown"
        state = (reg.get("status") or {}).get("state", "Open")
        say(
            f"   Regression {reg['metadata']['name']}: severity {spec['severity']} (the incident's "
            f"own known-bad value came back), incident {spec.get('incident', {}).get('id')}, "
            f"owner {spec.get('owner', {}).get('team')}, changed by {who}, state {state}."
        )
        say(f"   Runbook for the on-call: {spec.get('runbook')}")

    def denial(self) -> None:
        """Apply the no-privileged Guardrail (Deny) and try a privileged Deployment."""
        self.apply(_GUARDRAIL)
        say("   Guardrail no-privileged (enforcement Deny) forbids privileged containers (INC-99).")
        say(f"   $ kubectl -n {NAMESPACE} apply -f debug.yaml   # a privileged debug Deployment")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not self.stop.is_set():
            proc = self.kubectl("apply", "-f", "-", input=json.dumps(_PRIVILEGED), check=False)
            if proc.returncode != 0 and "denied" in proc.stderr:
                say("   " + proc.stderr.strip().replace("\n", "\n   "))
                return
            if proc.returncode == 0:  # the webhook configuration is not in place yet
                self.kubectl("-n", NAMESPACE, "delete", "deployment", "debug", check=False)
            time.sleep(0.5)
        say("   The webhook did not answer in time: the Deployment was admitted and removed again.")

    def next_commands(self, env_line: str) -> list[str]:
        return [
            env_line,
            f"kubectl get keepfix -n {NAMESPACE}",
            f"kubectl get regressions -n {NAMESPACE} -o yaml",
            f"kubectl get events.events.k8s.io -n {NAMESPACE} --field-selector regarding.name=web",
            f"kubectl -n {NAMESPACE} set resources deployment/web -c web --limits=memory=128Mi",
            f"kubectl get mitigation {MITIGATION} -n {NAMESPACE} -o jsonpath='{{.status}}'",
            "kubectl get guardrails",
            f"curl -s http://127.0.0.1:{self.port}/metrics | grep keepfix_",
            f"Operator log: {self.dir / 'operator.log'}",
        ]

    # ------------------------------------------------------------------ steps

    def up(self) -> None:
        if self.cluster.is_running():
            say(f"Using the control plane already running in {self.dir}")
            return
        step("0. A local control plane (etcd, kube-apiserver, kube-controller-manager)")
        self.cluster.start(timeout=180)
        self.started_cluster = True

    def apply_crds(self) -> None:
        from keepfix.api import crdgen

        self.kubectl(
            "apply", "--server-side", "--force-conflicts", "-f", "-", input=crdgen.render_all()
        )
        self.kubectl("wait", "--for=condition=Established", "--timeout=120s", "crd", "--all")

    def start_operator(self, webhook: str) -> None:
        log = (self.dir / "operator.log").open("ab")
        env = {**os.environ, "KUBECONFIG": str(self.cluster.kubeconfig)}
        self.operator = subprocess.Popen(
            [
                sys.executable, "-m", "keepfix", "run", f"--webhook={webhook}",
                "--metrics-host=127.0.0.1", f"--metrics-port={self.port}",
            ],
            env=env, stdout=log, stderr=log, start_new_session=True,
        )  # fmt: skip
        log.close()
        self.wait(self.healthy, "the operator to answer /healthz")
        say(f"   keepfix run --webhook={webhook} is up: /metrics and /healthz on port {self.port}")

    def mitigation(self) -> dict[str, Any]:
        # examples/mitigation-memory-limit.yaml with admission Warn: with Deny the
        # webhook would refuse the drift this story is about.
        return _MITIGATION

    # ------------------------------------------------------------------ reads

    def phase(self) -> str | None:
        obj = self.get("mitigation", MITIGATION)
        return None if obj is None else (obj.get("status") or {}).get("phase")

    def event(self, reason: str) -> dict[str, Any] | None:
        found = self.get_json("get", "events.events.k8s.io", "-n", NAMESPACE)
        matching = [e for e in (found or {}).get("items", []) if e.get("reason") == reason]
        return matching[-1] if matching else None

    def regression(self) -> dict[str, Any] | None:
        found = self.get_json("get", "regressions", "-n", NAMESPACE)
        items = (found or {}).get("items", [])
        return items[0] if items else None

    def memory(self) -> str:
        obj = self.get("deployment", "web") or {}
        container = obj["spec"]["template"]["spec"]["containers"][0]
        return str(container["resources"]["limits"]["memory"])

    def rollback_seconds(self) -> float | None:
        total = count = 0.0
        for line in self.metrics().splitlines():
            if line.startswith("keepfix_drift_to_rollback_seconds_sum"):
                total = float(line.split()[-1])
            elif line.startswith("keepfix_drift_to_rollback_seconds_count"):
                count = float(line.split()[-1])
        return total / count if count else None

    def metrics(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=5) as r:
            return str(r.read().decode())

    def healthy(self) -> bool:
        if self.operator is not None and self.operator.poll() is not None:
            raise DemoError(
                f"the operator exited with {self.operator.returncode}; see "
                f"{self.dir / 'operator.log'}"
            )
        url = f"http://127.0.0.1:{self.port}/healthz"
        with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=2) as r:
            return bool(r.status == 200)
        return False

    def get(self, kind: str, name: str) -> dict[str, Any] | None:
        return self.get_json("get", kind, name, "-n", NAMESPACE)

    def get_json(self, *args: str) -> dict[str, Any] | None:
        proc = self.kubectl(*args, "-o", "json", check=False)
        return dict(json.loads(proc.stdout)) if proc.returncode == 0 else None

    def apply(self, manifest: dict[str, Any] | str) -> None:
        text = manifest if isinstance(manifest, str) else json.dumps(manifest)
        self.kubectl("apply", "-f", "-", input=text)

    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        if not self.kubectl_path:
            self.kubectl_path = str(self.cluster.client_dirs()[0] / "kubectl")
        cmd = [self.kubectl_path, f"--kubeconfig={self.cluster.kubeconfig}", *args]
        proc = subprocess.run(cmd, input=input, capture_output=True, text=True, check=False)
        if check and proc.returncode != 0:
            raise DemoError(f"kubectl {' '.join(args[:3])} failed: {proc.stderr.strip()}")
        return proc

    def wait(self, check: Callable[[], T | None], what: str) -> T:
        deadline = time.monotonic() + STEP_TIMEOUT
        while not self.stop.is_set():
            found = check()
            if found:
                return found
            if time.monotonic() > deadline:
                raise DemoError(f"gave up waiting for {what} after {STEP_TIMEOUT:.0f}s")
            time.sleep(0.1)
        raise DemoError(f"interrupted while waiting for {what}")


def step(title: str) -> None:
    say(f"\n== {title}")


def say(message: str) -> None:
    print(message, flush=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
