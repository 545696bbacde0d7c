"""The admission webhook as the real API server calls it, over TLS, from the operator process."""

from __future__ import annotations

import asyncio
import base64
import datetime
import json
import ssl
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import webhook_helpers
import yaml
from cryptography import x509
from shared_helpers import eventually

from keepfix.adapters import kube
from keepfix.adapters.webhook import certs
from keepfix.api import conventions

pytestmark = pytest.mark.integration

#: The `operator` fixture: starts `python -m keepfix.handlers` (see conftest.py).
StartOperator = Callable[..., Any]
Guardrails = Callable[[dict[str, Any]], None]
PRIVILEGED_PATH = "spec.template.spec.containers[*].securityContext.privileged"
# The example is `... is true (known-bad; INC-99, owner platform-sre)`; the
# punctuation between the finding and its context is core.policy's (shared with
# `keepfix gate`), so only the words are pinned here.
DENIAL = (
    'admission webhook "guardrails.keepfix.dev" denied the request: '
    "Guardrail no-privileged, rule not-privileged: "
    "spec.template.spec.containers[name=web].securityContext.privileged is true (known-bad"
)
CONTEXT = "INC-99, owner platform-sre)"
DEPLOYMENTS = kube.Resource("apps", "v1", "Deployment", "deployments", namespaced=True)


def guardrail(
    name: str = "no-privileged",
    enforcement: str = "Deny",
    *,
    kinds: tuple[str, ...] = ("Deployment",),
    rule: dict[str, Any] | None = None,
) -> dict[str, Any]:
    return {
        "apiVersion": conventions.API_VERSION,
        "kind": conventions.KIND_GUARDRAIL,
        "metadata": {"name": name},
        "spec": {
            "match": {"resources": [{"apiGroups": ["apps"], "kinds": list(kinds)}]},
            "rules": [rule or {"name": "not-privileged", "path": PRIVILEGED_PATH, "notIn": [True]}],
            "enforcement": enforcement,
            "owner": {"team": "platform-sre"},
            "incident": {"id": "INC-99"},
        },
    }


def mitigation(namespace: str, admission: str = "Deny") -> dict[str, Any]:
    return {
        "apiVersion": conventions.API_VERSION,
        "kind": conventions.KIND_MITIGATION,
        "metadata": {"name": "web-memory-fix", "namespace": namespace},
        "spec": {
            "target": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
            "fields": [
                {
                    "path": "spec.template.spec.containers[name=web].resources.limits.memory",
                    "value": "512Mi",
                    "knownBad": ["128Mi"],
                }
            ],
            "action": "Alert",
            "admission": admission,
            "owner": {"team": "shop-sre"},
            "incident": {"id": "INC-1234"},
        },
    }


def deployment(
    namespace: str,
    name: str = "web",
    *,
    privileged: bool = False,
    memory: str = "512Mi",
    replicas: int = 1,
) -> dict[str, Any]:
    container: dict[str, Any] = {
        "name": "web",
        "image": "registry.k8s.io/pause:3.10",
        "resources": {"limits": {"memory": memory}},
    }
    if privileged:
        container["securityContext"] = {"privileged": True}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace, "labels": {"app": name}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [container]},
            },
        },
    }


def apply(cluster: Any, obj: dict[str, Any], *extra: str) -> subprocess.CompletedProcess[str]:
    proc: subprocess.CompletedProcess[str] = cluster.kubectl(
        "apply", *extra, "-f", "-", input=yaml.safe_dump(obj), check=False
    )
    return proc


def wait_denied(cluster: Any, obj: dict[str, Any]) -> str:
    """Wait until a server-side dry run of `obj` is refused (the webhook is in effect)."""

    def denied() -> str:
        proc = apply(cluster, obj, "--dry-run=server")
        return proc.stderr if proc.returncode != 0 and "denied the request" in proc.stderr else ""

    return str(eventually(denied, what="the webhook to deny a dry run"))


def prevented(cluster: Any, kind: str, name: str, namespace: str | None = None) -> int:
    args = ["get", kind, name, "-o", "jsonpath={.status.prevented}"]
    proc = cluster.kubectl(*args, *(("-n", namespace) if namespace else ()))
    return int(proc.stdout or 0)


def webhook_configuration(cluster: Any) -> dict[str, Any]:
    body = webhook_helpers.webhook_configuration(cluster)
    assert body is not None, "no ValidatingWebhookConfiguration"
    return body


def test_deny_shows_the_guardrail_message(
    cluster: Any, namespace: str, operator: StartOperator, guardrails: Guardrails
) -> None:
    """kubectl apply of a privileged Deployment fails with the Guardrail, rule, path and owner."""
    op = operator()
    guardrails(guardrail())
    wait_denied(cluster, deployment(namespace, "probe", privileged=True))
    proc = apply(cluster, deployment(namespace, privileged=True))
    assert proc.returncode == 1
    assert DENIAL in proc.stderr
    assert proc.stderr.rstrip().endswith(CONTEXT)
    assert cluster.kubectl("get", "deployment", "web", "-n", namespace, check=False).returncode == 1
    eventually(lambda: prevented(cluster, "guardrail", "no-privileged") == 1, what="prevented 1")
    assert op.sample("keepfix_admission_reviews_total", kind="Deployment", verdict="Denied") == 1


def test_reverting_a_mitigation_is_denied(
    cluster: Any, namespace: str, operator: StartOperator
) -> None:
    """A change that undoes a Deny Mitigation names it, its incident, owner, expected and actual."""
    operator()
    assert apply(cluster, deployment(namespace)).returncode == 0
    cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump(mitigation(namespace)))
    wait_denied(cluster, deployment(namespace, memory="128Mi"))
    proc = apply(cluster, deployment(namespace, memory="128Mi"))
    assert proc.returncode == 1
    assert 'admission webhook "mitigations.keepfix.dev" denied the request: ' in proc.stderr
    for part in (
        f"Mitigation {namespace}/web-memory-fix",
        "INC-1234",
        "shop-sre",
        "512Mi",
        "128Mi",
    ):
        assert part in proc.stderr
    eventually(
        lambda: prevented(cluster, "mitigation", "web-memory-fix", namespace) == 1,
        what="status.prevented of the Mitigation",
    )


def test_warn_prints_warnings_and_allows(
    cluster: Any, namespace: str, operator: StartOperator, guardrails: Guardrails
) -> None:
    """With Warn the object is created and kubectl prints one `Warning:` line per finding."""
    operator()
    guardrails(guardrail(enforcement="Warn"))
    guardrails(
        guardrail("probe-deny", rule={"name": "probe", "path": "metadata.name", "notIn": ["probe"]})
    )
    wait_denied(cluster, deployment(namespace, "probe"))
    proc = apply(cluster, deployment(namespace, privileged=True))
    assert proc.returncode == 0, proc.stderr
    warnings = [line for line in proc.stderr.splitlines() if line.startswith("Warning: ")]
    assert len(warnings) == 1
    assert warnings[0].startswith("Warning: Guardrail no-privileged, rule not-privileged: ")
    assert len(warnings[0].removeprefix("Warning: ")) < 120


def test_audit_allows_silently_and_counts(
    cluster: Any, namespace: str, operator: StartOperator, guardrails: Guardrails
) -> None:
    """An Audit finding lets the object in without a warning and counts it as Audited."""
    op = operator()
    floors = guardrail(
        "floors", "Audit", rule={"name": "min-replicas", "path": "spec.replicas", "atLeast": 2}
    )
    guardrails(floors)
    guardrails(guardrail())  # created last: once it denies, the operator has both
    wait_denied(cluster, deployment(namespace, "probe", privileged=True))
    proc = apply(cluster, deployment(namespace, replicas=1))
    assert proc.returncode == 0, proc.stderr
    assert "Warning" not in proc.stderr
    assert op.sample("keepfix_admission_reviews_total", kind="Deployment", verdict="Audited") == 1


def test_dry_run_answers_alike_without_counting(
    cluster: Any, namespace: str, operator: StartOperator, guardrails: Guardrails
) -> None:
    """A server-side dry run is denied identically, but only the real denial is counted."""
    op = operator()
    guardrails(guardrail())
    dry = wait_denied(cluster, deployment(namespace, privileged=True))
    assert DENIAL in dry
    for _ in range(3):
        assert (
            DENIAL
            in apply(cluster, deployment(namespace, privileged=True), "--dry-run=server").stderr
        )
    assert op.sample("keepfix_admission_reviews_total", kind="Deployment", verdict="Denied") == 0
    real = apply(cluster, deployment(namespace, privileged=True))
    assert DENIAL in real.stderr
    assert op.sample("keepfix_admission_reviews_total", kind="Deployment", verdict="Denied") == 1
    eventually(lambda: prevented(cluster, "guardrail", "no-privileged") >= 1, what="prevented")
    time.sleep(2 * 1.0)  # two flush intervals: a counted dry run would have landed by now
    assert prevented(cluster, "guardrail", "no-privileged") == 1


def test_unrelated_update_of_a_legacy_object_passes_with_a_warning(
    cluster: Any, namespace: str, operator: StartOperator, guardrails: Guardrails
) -> None:
    """An object that broke the rule before the Guardrail existed can still be edited."""
    operator()
    assert apply(cluster, deployment(namespace, "legacy", privileged=True)).returncode == 0
    guardrails(guardrail())
    wait_denied(cluster, deployment(namespace, "probe", privileged=True))
    proc = cluster.kubectl(
        "label", "deployment", "legacy", "-n", namespace, "team=shop", check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert "Warning: Existing: Guardrail no-privileged, rule not-privileged:" in proc.stderr
    made_worse = deployment(namespace, "legacy", privileged=True)
    made_worse["spec"]["template"]["spec"]["containers"].append(
        {
            "name": "sidecar",
            "image": "registry.k8s.io/pause:3.10",
            "securityContext": {"privileged": True},
        }
    )
    assert apply(cluster, made_worse).returncode == 1


@pytest.mark.parametrize(("policy", "passes"), [("Ignore", True), ("Fail", False)])
def test_operator_down(
    cluster: Any,
    namespace: str,
    operator: StartOperator,
    guardrails: Guardrails,
    *,
    policy: str,
    passes: bool,
) -> None:
    """With the operator stopped, Ignore lets writes through and Fail blocks them."""
    op = operator(failure_policy=policy)
    guardrails(guardrail())
    wait_denied(cluster, deployment(namespace, "probe", privileged=True))
    op.stop()
    proc = apply(cluster, deployment(namespace, privileged=True))
    assert (proc.returncode == 0) is passes, proc.stderr
    if not passes:
        assert 'failed calling webhook "guardrails.keepfix.dev"' in proc.stderr


def test_operator_down_with_fail_blocks_only_protected_objects(
    cluster: Any, namespace: str, operator: StartOperator
) -> None:
    """The Mitigation webhook is called only for what a Mitigation protects (matchConditions).

    With `Fail` and the operator stopped, writes of the protected Deployment
    (by name) and of Deployments its selector Mitigation picks are blocked;
    every other Deployment of the namespace is written as usual, because the
    API server never calls the webhook for it.
    """
    op = operator(failure_policy="Fail")
    by_name = mitigation(namespace)
    by_label = mitigation(namespace)
    by_label["metadata"]["name"] = "db-memory-fix"
    by_label["spec"]["target"] = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "selector": {"matchExpressions": [{"key": "app", "operator": "In", "values": ["db"]}]},
    }
    # A cluster-scoped target (not in core.policy's built-in list): matched by name alone.
    cluster_wide = mitigation(namespace)
    cluster_wide["metadata"]["name"] = "priority-fix"
    cluster_wide["spec"]["target"] = {
        "apiVersion": "scheduling.k8s.io/v1",
        "kind": "PriorityClass",
        "name": f"critical-{namespace}",
    }
    cluster_wide["spec"]["fields"] = [{"path": "value", "value": 1000000}]
    for doc in (by_name, by_label, cluster_wide):
        cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump(doc))
    try:
        _only_protected_objects_blocked(cluster, namespace, op)
    finally:
        # Gone before the next test's operator starts (namespace deletion is lazy).
        cluster.kubectl("delete", "mitigations", "--all", "-n", namespace)


def _only_protected_objects_blocked(cluster: Any, namespace: str, op: Any) -> None:
    wait_denied(cluster, deployment(namespace, memory="128Mi"))
    wait_denied(cluster, deployment(namespace, "db", memory="128Mi"))
    wait_denied(cluster, priority_class(f"critical-{namespace}", 5))
    [hook] = [
        w
        for w in webhook_configuration(cluster)["webhooks"]
        if w["name"] == conventions.WEBHOOK_MITIGATIONS
    ]
    assert [c["name"] for c in hook["matchConditions"]] == ["targeted-by-an-enforced-mitigation"]

    op.stop()
    for name in ("web", "db"):
        proc = apply(cluster, deployment(namespace, name))
        assert proc.returncode == 1, f"{name} was written with the operator down"
        assert 'failed calling webhook "mitigations.keepfix.dev"' in proc.stderr
    for name in ("api", "web-2", "dbx"):
        proc = apply(cluster, deployment(namespace, name, memory="128Mi"))
        assert proc.returncode == 0, proc.stderr
    proc = apply(cluster, priority_class(f"critical-{namespace}", 1000000))
    assert 'failed calling webhook "mitigations.keepfix.dev"' in proc.stderr
    other = priority_class(f"other-{namespace}", 5)
    try:
        assert apply(cluster, other).returncode == 0
    finally:
        cluster.kubectl("delete", "priorityclass", f"other-{namespace}", "--ignore-not-found")


def priority_class(name: str, value: int) -> dict[str, Any]:
    return {
        "apiVersion": "scheduling.k8s.io/v1",
        "kind": "PriorityClass",
        "metadata": {"name": name},
        "value": value,
    }


def test_only_enforced_kinds_are_registered(
    cluster: Any, namespace: str, operator: StartOperator, guardrails: Guardrails
) -> None:
    """Kinds only Audit policies or nothing at all target never reach the webhook."""
    # Mitigations of earlier tests' namespaces may outlive them (deletion is lazy).
    cluster.kubectl("delete", "mitigations", "--all", "--all-namespaces")
    op = operator()
    guardrails(guardrail("sts-audit", "Audit", kinds=("StatefulSet",)))
    off = mitigation(namespace, admission="Off")
    off["spec"]["target"] = {"apiVersion": "v1", "kind": "ConfigMap", "name": "flags"}
    off["spec"]["fields"] = [{"path": "data.mode", "value": "safe"}]
    cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump(off))
    guardrails(guardrail())  # created last: once it denies, the operator has the Guardrails
    wait_denied(cluster, deployment(namespace, "probe", privileged=True))
    eventually(
        lambda: (
            cluster.kubectl(
                "get",
                "mitigation",
                "web-memory-fix",
                "-n",
                namespace,
                "-o",
                "jsonpath={.status.phase}",
            ).stdout
        ),
        what="the operator to take up the Mitigation",
    )
    time.sleep(1.0)  # a few sync-loop ticks, in case it had changed the configuration
    webhooks = webhook_configuration(cluster)["webhooks"]
    assert [(w["name"], w["rules"]) for w in webhooks] == [
        (
            conventions.WEBHOOK_GUARDRAILS,
            [
                {
                    "apiGroups": ["apps"],
                    "apiVersions": ["*"],
                    "operations": ["CREATE", "UPDATE"],
                    "resources": ["deployments", "deployments/scale"],
                    "scope": "*",
                }
            ],
        )
    ]
    hook = webhooks[0]
    assert (hook["failurePolicy"], hook["timeoutSeconds"], hook["sideEffects"]) == (
        "Ignore",
        3,
        "None",
    )
    assert hook["namespaceSelector"]["matchExpressions"] == [
        {
            "key": "kubernetes.io/metadata.name",
            "operator": "NotIn",
            "values": ["keepfix", "kube-node-lease", "kube-system"],
        }
    ]
    assert (
        hook["clientConfig"]["url"]
        == f"https://127.0.0.1:{op.webhook_port}/validate/guardrails.keepfix.dev"
    )
    cluster.kubectl("create", "configmap", "flags", "-n", namespace, "--from-literal=mode=fast")
    assert op.sample("keepfix_admission_reviews_total", kind="ConfigMap", verdict="Audited") == 0


def test_guardrail_created_after_start_up_takes_effect(
    cluster: Any, namespace: str, operator: StartOperator, guardrails: Guardrails
) -> None:
    """A Guardrail created while the operator runs is enforced without a restart."""
    op = operator()
    assert apply(cluster, deployment(namespace, "before", privileged=True)).returncode == 0
    guardrails(guardrail())
    wait_denied(cluster, deployment(namespace, "after", privileged=True))
    assert (
        DENIAL.replace("[name=web]", "[name=web]")
        in apply(cluster, deployment(namespace, "after", privileged=True)).stderr
    )
    assert op.proc.poll() is None
    cluster.kubectl("delete", "guardrail", "no-privileged")
    eventually(
        lambda: apply(cluster, deployment(namespace, "later", privileged=True)).returncode == 0,
        what="the deleted Guardrail to stop denying",
    )


async def _create_many(kubeconfig: Path, bodies: list[dict[str, Any]]) -> list[str]:
    client = await kube.connect(kubeconfig=str(kubeconfig))
    async with client:

        async def one(body: dict[str, Any]) -> str:
            try:
                await client.create(DEPLOYMENTS, body=body)
            except kube.ApiError as error:
                return error.message
            return "created"

        return list(await asyncio.gather(*(one(b) for b in bodies)))


def test_200_concurrent_creates_are_all_answered(
    cluster: Any, namespace: str, operator: StartOperator, guardrails: Guardrails
) -> None:
    """200 creates at once: every bad one denied by the webhook, every good one created."""
    op = operator()
    guardrails(guardrail())
    wait_denied(cluster, deployment(namespace, "probe", privileged=True))
    bodies = [deployment(namespace, f"d{i:03d}", privileged=i % 2 == 0) for i in range(200)]
    results = asyncio.run(_create_many(cluster.kubeconfig, bodies))
    denied = [r for r in results if 'admission webhook "guardrails.keepfix.dev" denied' in r]
    created = [r for r in results if r == "created"]
    assert (len(denied), len(created)) == (100, 100), sorted(set(results))
    assert op.sample("keepfix_admission_reviews_total", kind="Deployment", verdict="Denied") == 100
    assert op.sample("keepfix_admission_reviews_total", kind="Deployment", verdict="Allowed") == 100


def test_gate_and_admission_agree(
    cluster: Any,
    namespace: str,
    operator: StartOperator,
    guardrails: Guardrails,
    tmp_path: Path,
) -> None:
    """`keepfix gate` and the webhook give the same verdict on the same manifests."""
    operator()
    policies = [
        guardrail(),
        guardrail(
            "two-replicas", "Warn", rule={"name": "min", "path": "spec.replicas", "atLeast": 2}
        ),
        guardrail(
            "no-latest",
            "Deny",
            rule={"name": "tag", "path": "podSpec.containers[*].image", "notMatches": ":latest$"},
        ),
        mitigation(namespace),
    ]
    manifests = {
        "clean": deployment(namespace, "clean", replicas=2),
        "privileged": deployment(namespace, "priv", privileged=True, replicas=2),
        "one-replica": deployment(namespace, "single", replicas=1),
        "reverts-fix": deployment(namespace, "web", memory="128Mi", replicas=2),
        "respelled-fix": deployment(namespace, "web", memory="0.5Gi", replicas=2),
        "latest": deployment(namespace, "latest", replicas=3),
    }
    manifests["latest"]["spec"]["template"]["spec"]["containers"][0]["image"] = "nginx:latest"
    for body in policies:
        if body["kind"] == conventions.KIND_GUARDRAIL:
            guardrails(body)
        else:
            cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump(body))
    wait_denied(cluster, manifests["reverts-fix"])
    wait_denied(cluster, manifests["latest"])  # the last Guardrail created
    policy_file = tmp_path / "policies.yaml"
    policy_file.write_text(yaml.safe_dump_all(policies))
    for label, body in manifests.items():
        path = tmp_path / f"{label}.yaml"
        path.write_text(yaml.safe_dump(body))
        gate = subprocess.run(
            [
                sys.executable,
                "-m",
                "keepfix",
                "gate",
                "--policies",
                str(policy_file),
                "--manifests",
                str(path),
                "--format",
                "json",
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        assert gate.returncode in (0, 1), gate.stderr
        report = json.loads(gate.stdout)
        gate_levels = sorted(v["level"] for v in report["violations"])
        webhook = apply(cluster, body, "--dry-run=server")
        warned = [x for x in webhook.stderr.splitlines() if x.startswith("Warning: ")]
        assert (gate.returncode == 1) is (webhook.returncode != 0), (
            label,
            gate.stdout,
            webhook.stderr,
        )
        assert gate_levels.count("Warn") == len(warned), (label, gate.stdout, webhook.stderr)
        for violation in report["violations"]:
            if violation["level"] == "Deny":
                assert violation["message"] in webhook.stderr, (label, violation)


def test_rotated_certificate_is_used_without_a_restart(
    cluster: Any,
    namespace: str,
    operator: StartOperator,
    guardrails: Guardrails,
    tmp_path: Path,
) -> None:
    """New files in the cert dir (a new CA too, as cert-manager rotates) keep admission working."""
    hosts = ("127.0.0.1", "localhost")
    now = datetime.datetime.now(datetime.UTC)
    certs.write(certs.generate(hosts=hosts, now=now), directory=tmp_path)
    op = operator(cert_dir=tmp_path)
    guardrails(guardrail())
    wait_denied(cluster, deployment(namespace, "probe", privileged=True))
    rotated = certs.generate(hosts=hosts, now=now)
    certs.write(rotated, directory=tmp_path)
    wanted = base64.b64encode(rotated.ca_pem).decode()
    eventually(
        lambda: all(
            w["clientConfig"]["caBundle"] == wanted
            for w in webhook_configuration(cluster)["webhooks"]
        ),
        what="the caBundle to carry the new CA",
    )
    served = ssl.get_server_certificate(("127.0.0.1", op.webhook_port)).encode()
    assert x509.load_pem_x509_certificate(served) == x509.load_pem_x509_certificate(
        rotated.cert_pem
    )
    assert DENIAL in wait_denied(cluster, deployment(namespace, privileged=True))
    assert op.proc.poll() is None


def test_kubectl_scale_is_reviewed(
    cluster: Any, namespace: str, operator: StartOperator, guardrails: Guardrails
) -> None:
    """`kubectl scale` below a Deny floor, or reverting a Deny Mitigation, is refused."""
    operator()
    assert apply(cluster, deployment(namespace, replicas=3)).returncode == 0
    fix = mitigation(namespace)
    fix["spec"]["fields"] = [{"path": "spec.replicas", "value": 3, "knownBad": [1]}]
    cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump(fix))
    floor = guardrail("floor", rule={"name": "min-replicas", "path": "spec.replicas", "atLeast": 2})
    guardrails(floor)
    wait_denied(cluster, deployment(namespace, "probe", replicas=1))
    wait_denied(cluster, deployment(namespace, replicas=2))

    def scale(count: int) -> subprocess.CompletedProcess[str]:
        proc: subprocess.CompletedProcess[str] = cluster.kubectl(
            "scale", "deployment", "web", "-n", namespace, f"--replicas={count}", check=False
        )
        return proc

    to_one = scale(1)
    assert to_one.returncode == 1
    assert 'admission webhook "guardrails.keepfix.dev" denied the request' in to_one.stderr or (
        'admission webhook "mitigations.keepfix.dev" denied the request' in to_one.stderr
    )
    assert f"Mitigation {namespace}/web-memory-fix" in scale(2).stderr
    assert scale(3).returncode == 0
    replicas = cluster.kubectl(
        "get", "deployment", "web", "-n", namespace, "-o", "jsonpath={.spec.replicas}"
    ).stdout
    assert replicas == "3"


def test_a_guardrail_on_every_kind_spares_cluster_plumbing(
    cluster: Any, namespace: str, operator: StartOperator, guardrails: Guardrails
) -> None:
    """A Deny Guardrail on `*/*` enforces on ConfigMaps but never on Events or Leases.

    Controllers post Events and renew Leases (leader election, node
    heartbeats) all the time and label neither: a Guardrail on every kind
    must not be able to stop them, nor the operator's own objects.
    """
    operator()
    guardrails(
        {
            "apiVersion": conventions.API_VERSION,
            "kind": conventions.KIND_GUARDRAIL,
            "metadata": {"name": "everything-owned"},
            "spec": {
                "match": {"resources": [{"apiGroups": ["*"], "kinds": ["*"]}]},
                "rules": [{"name": "owned", "path": "metadata.labels.owner", "present": True}],
                "enforcement": "Deny",
            },
        }
    )
    unowned = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "flags"}}
    unowned["metadata"]["namespace"] = namespace
    wait_denied(cluster, unowned)
    assert "rule owned: metadata.labels.owner" in apply(cluster, unowned).stderr
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    plumbing = [
        {
            "apiVersion": "events.k8s.io/v1",
            "kind": "Event",
            "metadata": {"name": "probe.1", "namespace": namespace},
            "eventTime": now,
            "reportingController": "keepfix.dev/tests",
            "reportingInstance": "tests",
            "action": "Probe",
            "reason": "Probe",
            "type": "Normal",
            "regarding": {"kind": "ConfigMap", "name": "flags", "namespace": namespace},
        },
        {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": "probe.2", "namespace": namespace},
            "involvedObject": {"kind": "ConfigMap", "name": "flags", "namespace": namespace},
            "reason": "Probe",
            "message": "probe",
        },
        {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": "probe", "namespace": namespace},
            "spec": {"holderIdentity": "tests", "leaseDurationSeconds": 15},
        },
    ]
    for obj in plumbing:
        proc = apply(cluster, obj)
        assert proc.returncode == 0, f"{obj['kind']} ({obj['apiVersion']}): {proc.stderr}"
