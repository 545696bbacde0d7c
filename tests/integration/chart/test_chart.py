"""The Helm chart: lint, render, schema, install/upgrade/uninstall and RBAC on a real API server."""

from __future__ import annotations

import base64
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[3]
CHART = REPO / "charts" / "keepfix"

EVERY_OPTION = [
    "ha.enabled=true",
    "metrics.serviceMonitor.enabled=true",
    "metrics.prometheusRule.enabled=true",
    "metrics.dashboard.enabled=true",
    "watch.secrets=true",
    "operator.namespaces={shop,payments}",
]


def helm(cluster: Any, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [str(cluster.bin_dir / "helm"), "--kubeconfig", str(cluster.kubeconfig), *args],
        capture_output=True,
        text=True,
        check=False,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} failed:\n{proc.stderr}{proc.stdout}")
    return proc


def render(cluster: Any, *sets: str, values: Path | None = None) -> list[dict[str, Any]]:
    args = ["template", "kf", str(CHART), "-n", "keepfix"]
    for s in sets:
        args += ["--set", s]
    if values is not None:
        args += ["-f", str(values)]
    out = helm(cluster, *args).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def by_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def test_lint_strict_default_and_every_option(cluster: Any) -> None:
    """`helm lint --strict` passes with default values and with every optional feature on."""
    helm(cluster, "lint", "--strict", str(CHART))
    sets = ",".join(EVERY_OPTION)
    helm(cluster, "lint", "--strict", str(CHART), "--set", sets)
    helm(
        cluster,
        "lint",
        "--strict",
        str(CHART),
        "--set",
        "webhook.certificates.provider=cert-manager",
    )


def test_default_render_is_hardened_and_least_privilege(cluster: Any) -> None:
    """The default Deployment is non-root, read-only, drops capabilities; RBAC has no '*'."""
    docs = render(cluster)
    (deploy,) = by_kind(docs, "Deployment")
    pod = deploy["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    sc = container["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["drop"] == ["ALL"]
    assert container["resources"]["limits"]["memory"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert {"name": "metrics", "containerPort": 8080, "protocol": "TCP"} in container["ports"]
    assert "--webhook=service" in container["args"]
    assert "--standalone" in container["args"]
    (role,) = by_kind(docs, "ClusterRole")
    for rule in role["rules"]:
        assert "*" not in rule["verbs"], rule
        assert "*" not in rule.get("resources", []), rule
        assert "secrets" not in rule.get("resources", []), rule
        if rule.get("apiGroups") != ["keepfix.dev"]:
            assert "delete" not in rule["verbs"], rule
    assert len(by_kind(docs, "CustomResourceDefinition")) == 4
    assert by_kind(docs, "PodDisruptionBudget") == []


def test_every_option_renders_its_objects(cluster: Any) -> None:
    """HA, ServiceMonitor, PrometheusRule, dashboard and Secrets each add what they promise."""
    docs = render(cluster, *EVERY_OPTION)
    kinds = {d["kind"] for d in docs}
    assert {
        "ServiceMonitor",
        "PrometheusRule",
        "PodDisruptionBudget",
        "ClusterKopfPeering",
    } <= kinds
    (deploy,) = by_kind(docs, "Deployment")
    assert deploy["spec"]["replicas"] == 2
    args = deploy["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--peering-name=kf-keepfix" in args
    assert {"--namespace=shop", "--namespace=payments"} <= set(args)
    assert deploy["spec"]["template"]["spec"]["topologySpreadConstraints"]
    (role,) = by_kind(docs, "ClusterRole")
    assert any("secrets" in r.get("resources", []) for r in role["rules"])
    (rule,) = by_kind(docs, "PrometheusRule")
    alerts = {r["alert"] for r in rule["spec"]["groups"][0]["rules"]}
    assert alerts == {
        "KeepfixCriticalRegression",
        "KeepfixFightDetected",
        "KeepfixWebhookSlow",
        "KeepfixRollbackFailures",
    }
    dashboards = [
        d for d in by_kind(docs, "ConfigMap") if d["metadata"]["name"].endswith("dashboard")
    ]
    panels = json.loads(dashboards[0]["data"]["keepfix.json"])["panels"]
    exprs = " ".join(t["expr"] for p in panels for t in p["targets"])
    for metric in (
        "keepfix_regressions_total",
        "keepfix_drift_to_rollback_seconds",
        "keepfix_admission_reviews_total",
        "keepfix_regression_resolution_seconds",
    ):
        assert metric in exprs


def test_cert_manager_mode_issues_a_certificate(cluster: Any) -> None:
    """With cert-manager the chart makes an Issuer and Certificate, no generated Secret."""
    docs = render(cluster, "webhook.certificates.provider=cert-manager")
    assert by_kind(docs, "Certificate")
    assert by_kind(docs, "Issuer")
    assert not [d for d in by_kind(docs, "Secret") if "webhook" in d["metadata"]["name"]]
    (vwc,) = by_kind(docs, "ValidatingWebhookConfiguration")
    assert (
        vwc["metadata"]["annotations"]["cert-manager.io/inject-ca-from"]
        == "keepfix/kf-keepfix-webhook"
    )


def test_crds_off_renders_no_crds(cluster: Any) -> None:
    """crds.install=false leaves the CRDs to the user."""
    assert by_kind(render(cluster, "crds.install=false"), "CustomResourceDefinition") == []


def test_chart_crds_match_committed_crds(cluster: Any) -> None:
    """The CRDs the chart installs are the committed crds/ (regenerate with `make crds`)."""
    chart = {d["metadata"]["name"]: d for d in by_kind(render(cluster), "CustomResourceDefinition")}
    for path in sorted((REPO / "crds").glob("*.yaml")):
        committed = yaml.safe_load(path.read_text())
        name = committed["metadata"]["name"]
        assert name in chart, f"{name} missing from the chart: run `make crds`"
        assert chart[name]["spec"] == committed["spec"], f"{name} differs: run `make crds`"


BAD_VALUES = {
    "webhook.failurePolicy": ({"webhook": {"failurePolicy": "Sometimes"}}, "failurePolicy"),
    "webhook.timeoutSeconds": ({"webhook": {"timeoutSeconds": 60}}, "timeoutSeconds"),
    "operator.logFormat": ({"operator": {"logFormat": "xml"}}, "logFormat"),
    "typo at top level": ({"replicaCount": 3}, "replicaCount"),
    "watch wildcard": (
        {"watch": {"resources": [{"apiGroups": ["*"], "resources": ["*"]}]}},
        "resources",
    ),
    "watch secrets in list": (
        {"watch": {"resources": [{"apiGroups": [""], "resources": ["secrets"]}]}},
        "resources",
    ),
    "image digest": ({"image": {"digest": "latest"}}, "digest"),
    "metrics port": ({"operator": {"metricsPort": "eighty"}}, "metricsPort"),
    "ha replicas": ({"ha": {"enabled": True, "replicas": 1}}, "replicas"),
    "cert provider": ({"webhook": {"certificates": {"provider": "vault"}}}, "provider"),
}


@pytest.mark.parametrize("case", sorted(BAD_VALUES))
def test_schema_rejects_bad_values(cluster: Any, tmp_path: Path, case: str) -> None:
    """values.schema.json rejects a wrong value with a message naming the key."""
    values, key = BAD_VALUES[case]
    path = tmp_path / "values.yaml"
    path.write_text(yaml.safe_dump(values))
    proc = helm(cluster, "template", "kf", str(CHART), "-f", str(path), check=False)
    assert proc.returncode != 0
    assert "values don't meet the specifications of the schema" in proc.stderr
    assert key in proc.stderr


# Install on the real API server ------------------------------------------------------


@pytest.fixture(scope="module")
def chart_cluster(cluster: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A control plane of its own: the chart owns its CRDs, which the session's `crds` applied."""
    if cluster.local is None:
        yield cluster
        return
    from keepfix import localcluster

    local = localcluster.LocalCluster(tmp_path_factory.mktemp("chart-cluster"), stop_grace=5.0)
    with local:
        local.start(timeout=float(os.environ.get("KEEPFIX_TEST_CLUSTER_TIMEOUT", "180")))
        yield type(cluster)("local", local.kubeconfig, local.bin_dir, local)


@pytest.fixture(scope="module")
def release(chart_cluster: Any) -> Iterator[str]:
    """The chart installed into namespace keepfix-chart (no kubelet: pods never run)."""
    ns = "keepfix-chart"
    helm(chart_cluster, "install", "kf", str(CHART), "-n", ns, "--create-namespace")
    yield ns
    helm(chart_cluster, "uninstall", "kf", "-n", ns, check=False)


def webhook_ca(cluster: Any, ns: str) -> bytes:
    out = cluster.kubectl("get", "secret", "kf-keepfix-webhook-tls", "-n", ns, "-o", "json").stdout
    return base64.b64decode(json.loads(out)["data"]["ca.crt"])


def test_install_creates_every_object(chart_cluster: Any, release: str) -> None:
    """`helm install` creates the Deployment, Services, RBAC, webhook objects and CRDs."""
    for kind, name in [
        ("deployment", "kf-keepfix"),
        ("serviceaccount", "kf-keepfix"),
        ("service", "kf-keepfix-metrics"),
        ("service", "kf-keepfix-webhook"),
        ("secret", "kf-keepfix-webhook-tls"),
    ]:
        chart_cluster.kubectl("get", kind, name, "-n", release)
    chart_cluster.kubectl("get", "clusterrole", "kf-keepfix")
    chart_cluster.kubectl("get", "clusterrolebinding", "kf-keepfix")
    chart_cluster.kubectl("get", "validatingwebhookconfiguration", "keepfix")
    for crd in ("mitigations", "guardrails", "regressions", "alertroutes"):
        chart_cluster.kubectl("get", "crd", f"{crd}.keepfix.dev")
    assert webhook_ca(chart_cluster, release).startswith(b"-----BEGIN CERTIFICATE-----")


def test_upgrade_keeps_the_webhook_ca(chart_cluster: Any, release: str) -> None:
    """`helm upgrade` reuses the generated CA instead of rotating it."""
    before = webhook_ca(chart_cluster, release)
    helm(
        chart_cluster,
        "upgrade",
        "kf",
        str(CHART),
        "-n",
        release,
        "--set",
        "operator.logFormat=text",
    )
    assert webhook_ca(chart_cluster, release) == before


SA = "system:serviceaccount:keepfix-chart:kf-keepfix"


@pytest.mark.parametrize(
    ("verb", "resource", "allowed"),
    [
        ("get", "secrets", False),
        ("list", "secrets", False),
        ("delete", "deployments.apps", False),
        ("delete", "configmaps", False),
        ("create", "deployments.apps", False),
        ("patch", "deployments.apps", True),
        ("watch", "configmaps", True),
        ("create", "regressions.keepfix.dev", True),
        ("patch", "mitigations.keepfix.dev/status", True),
        ("delete", "mitigations.keepfix.dev", False),
        ("create", "events.events.k8s.io", True),
        ("create", "validatingwebhookconfigurations", False),
        ("delete", "validatingwebhookconfigurations", False),
    ],
)
def test_service_account_can_do_enough_and_no_more(
    chart_cluster: Any, release: str, verb: str, resource: str, allowed: bool
) -> None:
    """`kubectl auth can-i --as` the chart's ServiceAccount matches least privilege."""
    proc = chart_cluster.kubectl(
        "auth", "can-i", verb, resource, "-n", "default", f"--as={SA}", check=False
    )
    assert proc.stdout.strip() == ("yes" if allowed else "no"), (verb, resource, proc.stdout)


def test_service_account_may_patch_only_its_own_webhook_configuration(
    chart_cluster: Any, release: str
) -> None:
    """The operator may patch the `keepfix` webhook configuration and no other."""
    own = chart_cluster.kubectl(
        "auth",
        "can-i",
        "patch",
        "validatingwebhookconfigurations/keepfix",
        f"--as={SA}",
        check=False,
    )
    other = chart_cluster.kubectl(
        "auth", "can-i", "patch", "validatingwebhookconfigurations/other", f"--as={SA}", check=False
    )
    assert (own.stdout.strip(), other.stdout.strip()) == ("yes", "no")


def test_uninstall_keeps_crds_when_asked(chart_cluster: Any, release: str) -> None:
    """`helm uninstall` removes the operator but leaves the CRDs when crds.keep is true (last)."""
    helm(chart_cluster, "uninstall", "kf", "-n", release, "--wait")
    for crd in ("mitigations", "guardrails", "regressions", "alertroutes"):
        chart_cluster.kubectl("get", "crd", f"{crd}.keepfix.dev")
    gone = chart_cluster.kubectl("get", "deployment", "kf-keepfix", "-n", release, check=False)
    assert gone.returncode != 0
