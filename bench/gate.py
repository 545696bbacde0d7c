"""Benchmark of `keepfix gate`: end to end against parsing the same YAML, in one run.

Generates, in a temporary folder, a repository of manifests shaped like a
real one (per app: a Deployment or StatefulSet or CronJob, a Service, a
ConfigMap, a ServiceAccount; spread over 20 namespaces, 25 apps to a file),
1,000 Mitigations on the workloads (by name, a tenth by label selector; a
few of the manifests revert them) and 100 Guardrails (15 cluster-wide on
every workload, the rest scoped to one team's namespaces, with the rule
shapes of DESIGN.md: notIn, notMatches, atLeast, present, equals).

Measures, best of `repeat`:
(a) the parse-only baseline: read each file and `yaml.load_all` it with
    `yaml.CSafeLoader`, over the same manifest and policy files;
(b) `keepfix gate --format json` in-process over the same files (reading,
    validating, indexing, evaluating and rendering);
at 2,500 / 5,000 / 10,000 manifests with 1,000 Mitigations, and at 250 /
500 / 1,000 Mitigations with 10,000 manifests, and reports gate / parse.
"""

from __future__ import annotations

import io
import os
import pathlib
import platform
import random
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import yaml

from keepfix.cli import gate, sources
from keepfix.core import policy

NAMESPACES = 20
APPS_PER_FILE = 25
OBJECTS_PER_APP = 4
GLOBAL_GUARDRAILS = 15
SECTION = "keepfix gate"


@dataclass(frozen=True)
class Sizes:
    manifests: int
    mitigations: int
    guardrails: int


@dataclass(frozen=True)
class Row:
    """Best-of times in seconds: CPU time of this process (the ratio) and wall clock."""

    sizes: Sizes
    parse_s: float
    gate_s: float
    parse_wall_s: float
    gate_wall_s: float
    exit_code: int

    @property
    def ratio(self) -> float:
        return self.gate_s / self.parse_s


def app_objects(i: int, rng: random.Random) -> list[dict[str, Any]]:
    """The four objects of app `i`: a workload, a Service, a ConfigMap, a ServiceAccount."""
    name, namespace = f"app-{i}", f"team-{i % NAMESPACES}"
    labels = {
        "app.kubernetes.io/name": name,
        "app.kubernetes.io/part-of": f"system-{i % 50}",
        "tier": rng.choice(["web", "worker", "api"]),
    }
    meta = {"name": name, "namespace": namespace, "labels": labels}
    pod = _pod_spec(name, rng)
    template = {"metadata": {"labels": labels}, "spec": pod}
    shape = i % 10
    if shape < 7:
        workload = {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": meta,
            "spec": {
                "replicas": rng.choice([1, 2, 3, 3, 4]),
                "selector": {"matchLabels": {"app.kubernetes.io/name": name}},
                "strategy": {
                    "type": "RollingUpdate",
                    "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 0},
                },
                "template": template,
            },
        }
    elif shape < 9:
        workload = {
            "apiVersion": "apps/v1",
            "kind": "StatefulSet",
            "metadata": meta,
            "spec": {
                "replicas": 3,
                "serviceName": name,
                "selector": {"matchLabels": {"app.kubernetes.io/name": name}},
                "template": template,
                "volumeClaimTemplates": [
                    {
                        "metadata": {"name": "data"},
                        "spec": {
                            "accessModes": ["ReadWriteOnce"],
                            "resources": {"requests": {"storage": "10Gi"}},
                        },
                    }
                ],
            },
        }
    else:
        workload = {
            "apiVersion": "batch/v1",
            "kind": "CronJob",
            "metadata": meta,
            "spec": {
                "schedule": "*/15 * * * *",
                "concurrencyPolicy": "Forbid",
                "jobTemplate": {
                    "spec": {
                        "backoffLimit": 2,
                        "template": {
                            "metadata": {"labels": labels},
                            "spec": {**pod, "restartPolicy": "OnFailure"},
                        },
                    }
                },
            },
        }
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": meta,
        "spec": {
            "type": "ClusterIP",
            "selector": {"app.kubernetes.io/name": name},
            "ports": [{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"}],
        },
    }
    config = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {**meta, "name": f"{name}-config"},
        "data": {
            "LOG_LEVEL": "info",
            "FEATURE_FLAGS": "a,b,c",
            "config.yaml": "server:\n  port: 8080\n  timeout: 30s\n",
        },
    }
    account = {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta}
    return [workload, service, config, account]


def _pod_spec(name: str, rng: random.Random) -> dict[str, Any]:
    tag = (
        rng.choice(["1.25.3", "1.26.0", "2.4.1", "latest"])
        if rng.random() < 0.05
        else rng.choice(["1.25.3", "1.26.0", "2.4.1"])
    )
    memory = rng.choice(["256Mi", "512Mi", "1Gi"])
    container = {
        "name": "app",
        "image": f"registry.example.com/{name}:{tag}",
        "ports": [{"name": "http", "containerPort": 8080}],
        "env": [
            {"name": "PORT", "value": "8080"},
            {
                "name": "LOG_LEVEL",
                "valueFrom": {"configMapKeyRef": {"name": f"{name}-config", "key": "LOG_LEVEL"}},
            },
        ],
        "resources": {"requests": {"cpu": "100m", "memory": memory}, "limits": {"memory": memory}},
        "readinessProbe": {"httpGet": {"path": "/healthz", "port": "http"}, "periodSeconds": 10},
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "privileged": rng.random() < 0.01,
            "capabilities": {"drop": ["ALL"]},
        },
    }
    sidecar = {
        "name": "proxy",
        "image": "registry.example.com/proxy:2.4.1",
        "resources": {"limits": {"memory": "64Mi", "cpu": "50m"}},
    }
    return {
        "serviceAccountName": name,
        "containers": [container, sidecar],
        "terminationGracePeriodSeconds": 30,
    }


def mitigation(i: int, apps: int, rng: random.Random) -> dict[str, Any]:
    """A Mitigation on the workload of app `i` (a tenth by label selector)."""
    app = i * 7 % apps
    name, namespace = f"app-{app}", f"team-{app % NAMESPACES}"
    shape = app % 10
    kind = "Deployment" if shape < 7 else "StatefulSet" if shape < 9 else "CronJob"
    api_version = "batch/v1" if kind == "CronJob" else "apps/v1"
    pod = "spec.jobTemplate.spec.template.spec" if kind == "CronJob" else "spec.template.spec"
    target: dict[str, Any] = {"apiVersion": api_version, "kind": kind}
    if i % 10 == 0:
        target["selector"] = {"matchLabels": {"app.kubernetes.io/name": name}}
    else:
        target["name"] = name
    fields: list[dict[str, Any]] = [
        {
            "path": f"{pod}.containers[name=app].resources.limits.memory",
            "value": "512Mi",
            "knownBad": ["128Mi", "256Mi"],
        },
    ]
    if kind != "CronJob":
        fields.append({"path": "spec.replicas", "value": 3, "knownBad": [1]})
    return {
        "apiVersion": "keepfix.dev/v1alpha1",
        "kind": "Mitigation",
        "metadata": {"name": f"fix-{i}", "namespace": namespace},
        "spec": {
            "target": target,
            "fields": fields,
            "admission": rng.choice(["Deny", "Warn", "Off"]),
            "owner": {"team": f"team-{app % NAMESPACES}-sre"},
            "incident": {"id": f"INC-{1000 + i}"},
        },
    }


def guardrail(i: int) -> dict[str, Any]:
    """Guardrail `i`: the first ones cluster-wide on every workload, the rest per team."""
    rules = [
        [
            {
                "name": "not-privileged",
                "path": "podSpec.containers[*].securityContext.privileged",
                "notIn": [True],
                "message": "privileged containers caused INC-99",
            }
        ],
        [{"name": "no-latest", "path": "podSpec.containers[*].image", "notMatches": ":latest$"}],
        [{"name": "min-replicas", "path": "spec.replicas", "atLeast": 2, "optional": True}],
        [
            {
                "name": "memory-limit",
                "path": "podSpec.containers[*].resources.limits.memory",
                "present": True,
            }
        ],
        [
            {"name": "no-host-network", "path": "podSpec.hostNetwork", "notIn": [True]},
            {
                "name": "non-root",
                "path": "podSpec.containers[name=app].securityContext.runAsNonRoot",
                "equals": True,
            },
        ],
    ][i % 5]
    match: dict[str, Any] = {
        "resources": [
            {"apiGroups": ["apps", "batch"], "kinds": ["Deployment", "StatefulSet", "CronJob"]}
        ]
    }
    if i >= GLOBAL_GUARDRAILS:
        match["namespaces"] = [f"team-{i % NAMESPACES}"]
    else:
        match["excludeNamespaces"] = ["kube-system"]
    return {
        "apiVersion": "keepfix.dev/v1alpha1",
        "kind": "Guardrail",
        "metadata": {"name": f"guardrail-{i}"},
        "spec": {
            "match": match,
            "rules": rules,
            "enforcement": ["Deny", "Warn", "Audit"][i % 3],
            "owner": {"team": "platform-sre"},
            "incident": {"id": f"INC-{i}"},
        },
    }


def generate(root: pathlib.Path, sizes: Sizes, seed: int = 7) -> None:
    """Write manifests/ (one file per 25 apps) and policies/ (one file per 100 policies)."""
    rng = random.Random(seed)
    apps = sizes.manifests // OBJECTS_PER_APP
    _write_batches(
        root / "manifests",
        [o for i in range(apps) for o in app_objects(i, rng)],
        APPS_PER_FILE * OBJECTS_PER_APP,
    )
    policies = [mitigation(i, apps, rng) for i in range(sizes.mitigations)]
    policies += [guardrail(i) for i in range(sizes.guardrails)]
    _write_batches(root / "policies", policies, 100)


def _write_batches(folder: pathlib.Path, docs: Sequence[dict[str, Any]], per_file: int) -> None:
    folder.mkdir(parents=True)
    for start in range(0, len(docs), per_file):
        text = yaml.safe_dump_all(docs[start : start + per_file], sort_keys=False)
        (folder / f"{start // per_file:04d}.yaml").write_text(text)


def parse_only(root: pathlib.Path) -> None:
    """The baseline: read and parse every file with the C loader, nothing else."""
    for path in sorted(root.rglob("*.yaml")):
        for _ in yaml.load_all(path.read_text(encoding="utf-8"), Loader=yaml.CSafeLoader):
            pass


def gate_run(root: pathlib.Path) -> int:
    """`keepfix gate --policies root/policies --manifests root/manifests --format json`."""
    out, err = io.StringIO(), io.StringIO()
    code = gate.gate(
        policies=[str(root / "policies")],
        manifests=[str(root / "manifests")],
        output_format="json",
        stdin=io.StringIO(),
        stdout=out,
        stderr=err,
    )
    if code == gate.EXIT_BAD_INPUT:
        raise RuntimeError(f"gate rejected the generated input: {err.getvalue()[:2000]}")
    return code


def timed(fn: Callable[[], object]) -> tuple[float, float]:
    """(CPU seconds of this process, wall seconds) of one call."""
    cpu, wall = time.process_time(), time.perf_counter()
    fn()
    return time.process_time() - cpu, time.perf_counter() - wall


def measure(sizes: Sizes, repeat: int) -> Row:
    """Best of `repeat` for each, parse and gate alternating so load on the machine hits both.

    The ratio uses CPU time: on a shared machine, wall time also counts the time
    other processes hold the CPU, which has nothing to do with either side.
    """
    with tempfile.TemporaryDirectory(prefix="keepfix-bench-") as tmp:
        root = pathlib.Path(tmp)
        generate(root, sizes)
        code = gate_run(root)  # warm-up: imports, caches
        parse_times, gate_times = [], []
        for _ in range(repeat):
            parse_times.append(timed(lambda: parse_only(root)))
            gate_times.append(timed(lambda: gate_run(root)))
    return Row(
        sizes,
        parse_s=min(t[0] for t in parse_times),
        gate_s=min(t[0] for t in gate_times),
        parse_wall_s=min(t[1] for t in parse_times),
        gate_wall_s=min(t[1] for t in gate_times),
        exit_code=code,
    )


def breakdown(sizes: Sizes) -> dict[str, float]:
    """CPU seconds of the gate's steps, run one by one on the same input (GC paused, as in gate)."""
    with tempfile.TemporaryDirectory(prefix="keepfix-bench-") as tmp:
        root = pathlib.Path(tmp)
        generate(root, sizes)
        gate_run(root)
        with gate._without_gc():
            return _steps(root)


def _steps(root: pathlib.Path) -> dict[str, float]:
    problems: list[sources.Problem] = []
    out: dict[str, float] = {}
    cpu = time.process_time()
    policies = sources.read([str(root / "policies")], stdin=io.StringIO())
    manifests = sources.read([str(root / "manifests")], stdin=io.StringIO())
    out["read + parse"], cpu = time.process_time() - cpu, time.process_time()
    mitigations, guardrails = gate._policies(policies.documents, "default", problems)
    objects = list(gate._objects(manifests.documents, problems))
    policy_set = policy.PolicySet.build(mitigations, guardrails)
    out["validate + index"], cpu = time.process_time() - cpu, time.process_time()
    report = gate.check(policy_set, objects, namespace="default")
    out["evaluate"], cpu = time.process_time() - cpu, time.process_time()
    gate.RENDERERS["json"](report)
    out["render JSON"] = time.process_time() - cpu
    return out


SERIES = (
    Sizes(2_500, 1_000, 100),
    Sizes(5_000, 1_000, 100),
    Sizes(10_000, 250, 100),
    Sizes(10_000, 500, 100),
    Sizes(10_000, 1_000, 100),
)


def run(*, quick: bool = False, repeat: int = 3) -> str:
    """Run the series and return the Markdown section for docs/performance.md."""
    series = (
        tuple(Sizes(s.manifests // 10, s.mitigations // 10, s.guardrails // 10) for s in SERIES)
        if quick
        else SERIES
    )
    rows = []
    for sizes in series:
        row = measure(sizes, repeat)
        print(
            f"gate: {sizes.manifests} manifests, {sizes.mitigations} Mitigations, "
            f"{sizes.guardrails} Guardrails: parse {row.parse_s:.3f} s, "
            f"gate {row.gate_s:.3f} s CPU, ratio {row.ratio:.2f}",
            flush=True,
        )
        rows.append(row)
    steps = breakdown(series[-1])
    return section(rows, steps, quick=quick, repeat=repeat)


def section(rows: Sequence[Row], steps: dict[str, float], *, quick: bool, repeat: int) -> str:
    head = rows[-1]
    lines = [
        f"## {SECTION}",
        "",
        f"`python -m bench gate` (bench/gate.py), {time.strftime('%Y-%m-%d', time.gmtime())}, "
        f"{platform.python_implementation()} {platform.python_version()}, "
        f"PyYAML {yaml.__version__} (libyaml {'yes' if yaml.__with_libyaml__ else 'no'}), "
        f"{platform.machine()}, {cpu_name()}, {os.cpu_count()} CPUs; "
        f"best of {repeat}{', QUICK sizes (1/10)' if quick else ''}.",
        "",
        "Parse = read every manifest and policy file and "
        "`yaml.load_all(..., Loader=yaml.CSafeLoader)`; gate = `keepfix gate --format json` "
        "in-process on the same files (read, validate, index, evaluate, render). Both run "
        "alternately in one process; times are CPU seconds of that process (wall clock in "
        "brackets: on a shared machine it also counts other processes). Input: apps of a "
        "workload (70% Deployments, 20% StatefulSets, 10% CronJobs), a Service, a ConfigMap "
        "and a ServiceAccount, 25 apps to a file, 20 namespaces; Mitigations on workloads "
        "(a tenth by selector); 15 Guardrails on every workload and 85 scoped to one "
        "namespace, so a workload meets about 19 Guardrails (23 rules). Target: gate <= 2x "
        "parse, linear in manifests and policies.",
        "",
        "| manifests | Mitigations | Guardrails | parse (s) | gate (s) | gate / parse "
        "| gate per manifest (us) | exit |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        per = r.gate_s / r.sizes.manifests * 1e6
        lines.append(
            f"| {r.sizes.manifests:,} | {r.sizes.mitigations:,} | {r.sizes.guardrails} "
            f"| {r.parse_s:.3f} ({r.parse_wall_s:.3f}) | {r.gate_s:.3f} ({r.gate_wall_s:.3f}) "
            f"| {r.ratio:.2f}x | {per:.0f} | {r.exit_code} |"
        )
    total = sum(steps.values())
    parts = ", ".join(f"{name} {sec:.2f} s ({sec / total:.0%})" for name, sec in steps.items())
    lines += [
        "",
        f"Headline ({head.sizes.manifests:,} manifests, {head.sizes.mitigations:,} Mitigations, "
        f"{head.sizes.guardrails} Guardrails): gate / parse = **{head.ratio:.2f}x**.",
        "",
        f"Where the gate's time goes at that size (CPU, one more run, step by step): {parts}.",
        "Evaluation is almost all `core.rules` (rule walks and matching); the gate's own "
        "indexing and rendering stay under 5%. On a machine shared with other work the ratio "
        "moves by about 0.2 between runs: compare the per-manifest column across rows for "
        "linearity.",
        "",
    ]
    return "\n".join(lines)


def cpu_name() -> str:
    """The processor's model name, for the benchmark sections."""
    try:
        for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"
