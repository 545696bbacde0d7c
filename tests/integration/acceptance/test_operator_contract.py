"""Black-box acceptance of the operator against DESIGN.md and issue 4, on a real API server.

Each test is a user story told with kubectl; one operator runs for the module.
"""

from __future__ import annotations

import base64
import functools
import json
from typing import Any

import pytest
from acceptance_helpers import Kube, Operator, eventually, never

WEBHOOK = "off"

MEMORY = "spec.template.spec.containers[name=web].resources.limits.memory"

OWNER = {"team": "shop-sre", "contact": "#shop-oncall", "escalation": "platform-sre"}


def deployment(name: str, namespace: str, memory: str = "512Mi", **labels: str) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace, "labels": {"app": name, **labels}},
        "spec": {
            "replicas": 3,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "containers": [
                        {
                            "name": "web",
                            "image": "nginx:1.27",
                            "resources": {"limits": {"memory": memory}},
                        },
                        {
                            "name": "sidecar",
                            "image": "busybox:1.36",
                            "env": [{"name": "MODE", "value": "a"}],
                        },
                    ]
                },
            },
        },
    }


def mitigation(
    name: str, namespace: str, target: dict[str, Any], fields: list[Any], **spec: Any
) -> dict[str, Any]:
    return {
        "apiVersion": "keepfix.dev/v1alpha1",
        "kind": "Mitigation",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "target": target,
            "fields": fields,
            "owner": OWNER,
            "incident": {"id": "INC-1234", "description": "web OOM-looped"},
            "fix": {"commit": "3f2a9c1", "description": "limit back to 512Mi"},
            "category": "ConfigDrift",
            **spec,
        },
    }


def web_target(name: str = "web") -> dict[str, Any]:
    return {"apiVersion": "apps/v1", "kind": "Deployment", "name": name}


def memory_patch(value: str) -> dict[str, Any]:
    return {
        "spec": {
            "template": {
                "spec": {
                    "containers": [{"name": "web", "resources": {"limits": {"memory": value}}}]
                }
            }
        }
    }


def live_memory(kube: Kube, namespace: str, name: str = "web") -> str:
    obj = kube.get("deployment", name, namespace)
    for c in obj["spec"]["template"]["spec"]["containers"]:
        if c["name"] == "web":
            return str(c.get("resources", {}).get("limits", {}).get("memory"))
    raise AssertionError("no web container")


def watching(kube: Kube, namespace: str, name: str) -> dict[str, Any]:
    """Wait until the Mitigation is Watching with its target matched; return it."""

    def check() -> dict[str, Any] | None:
        mit = kube.get("mitigation", name, namespace)
        status = mit.get("status") or {}
        return mit if status.get("phase") == "Watching" and status.get("targets") else None

    return eventually(check, f"Mitigation {name} Watching with a target")


def one_regression(kube: Kube, namespace: str, pred: Any = bool, what: str = "") -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        regs = kube.regressions(namespace)
        return regs[0] if len(regs) == 1 and pred(regs[0]) else None

    return eventually(check, what or f"one Regression in {namespace}")


@pytest.fixture
def story(kube: Kube, operator: Operator, namespace: str) -> str:
    """Deployment web at 512Mi protected by Mitigation web-memory-fix (Rollback)."""
    kube.apply(deployment("web", namespace))
    kube.apply(
        mitigation(
            "web-memory-fix",
            namespace,
            web_target(),
            [{"path": MEMORY, "value": "512Mi", "knownBad": ["128Mi"]}],
            action="Rollback",
        )
    )
    watching(kube, namespace, "web-memory-fix")
    return namespace


# --- the issue-4 story ---------------------------------------------------------------------------


def test_kubectl_edit_to_known_bad_is_rolled_back_with_events_and_critical_regression(
    kube: Kube, story: str
) -> None:
    ns = story
    before = kube.get("deployment", "web", ns)
    kube.patch("deployment", "web", ns, memory_patch("128Mi"), "kubectl-edit")

    eventually(lambda: live_memory(kube, ns) == "512Mi", "the limit back at 512Mi")

    detected = eventually(lambda: kube.events(ns, "DriftDetected"), "a DriftDetected Event")
    ev = detected[0]
    assert ev["regarding"]["kind"] == "Deployment", ev
    assert ev["regarding"]["name"] == "web", ev
    assert ev["related"]["kind"] == "Mitigation", ev
    assert ev["related"]["name"] == "web-memory-fix", ev
    assert ev["type"] == "Warning" or ev["type"] == "Normal", ev
    eventually(lambda: kube.events(ns, "DriftRolledBack"), "a DriftRolledBack Event")

    reg = one_regression(
        kube, ns, lambda r: r.get("spec", {}).get("severity") == "Critical", "a Critical Regression"
    )
    spec = reg["spec"]
    assert spec["incident"]["id"] == "INC-1234"
    assert spec["owner"]["team"] == "shop-sre"
    assert [c["manager"] for c in spec["changedBy"]] == ["kubectl-edit"], spec["changedBy"]
    assert spec["mitigation"]["name"] == "web-memory-fix"
    assert spec["target"]["name"] == "web"
    assert spec["target"]["uid"] == before["metadata"]["uid"]
    assert spec["category"] == "ConfigDrift"
    assert spec["occurrences"] == 1
    drift = spec["drift"]
    assert len(drift) == 1, drift
    assert drift[0]["expected"] == "512Mi", drift
    assert drift[0]["actual"] == "128Mi", drift
    assert drift[0]["knownBad"] is True
    assert spec["signature"].startswith("sha256:")
    eventually(
        lambda: (
            (kube.get("regression", reg["metadata"]["name"], ns).get("status") or {}).get("action")
            == "RolledBack"
        ),
        "Regression action RolledBack",
    )

    # What the user sees with kubectl get: the key columns are filled in.
    table = kube.run("get", "reg", "-n", ns, "-o", "wide").stdout
    for shown in ("Critical", "INC-1234", "web-memory-fix", "RolledBack"):
        assert shown in table, table
    _header, row = table.splitlines()[:2]
    assert "<none>" not in row, table
    mit_table = kube.run("get", "mit", "-n", ns, "-o", "wide").stdout
    mit_row = mit_table.splitlines()[1]
    for column in ("Deployment", "web", "Rollback", "INC-1234"):
        assert column in mit_row, mit_table
    # `kubectl get keepfix` lists both kinds (category).
    listing = kube.run("get", "keepfix", "-n", ns).stdout
    assert "web-memory-fix" in listing, listing
    assert reg["metadata"]["name"] in listing, listing


def test_rollback_touches_only_the_drifted_field(kube: Kube, story: str) -> None:
    """An unrelated label and another container's env changed in the same edit survive."""
    ns = story
    body = memory_patch("128Mi")
    body["metadata"] = {"labels": {"touched": "yes"}}
    body["spec"]["template"]["spec"]["containers"].append(
        {"name": "sidecar", "env": [{"name": "MODE", "value": "b"}]}
    )
    kube.run(
        "patch",
        "deployment",
        "web",
        "-n",
        ns,
        "--type=strategic",
        "--field-manager=kubectl-edit",
        "-p",
        json.dumps(body),
    )
    eventually(lambda: kube.events(ns, "DriftRolledBack"), "DriftRolledBack")
    eventually(lambda: live_memory(kube, ns) == "512Mi", "memory rolled back")
    obj = kube.get("deployment", "web", ns)
    assert obj["metadata"]["labels"].get("touched") == "yes", obj["metadata"]["labels"]
    side = next(c for c in obj["spec"]["template"]["spec"]["containers"] if c["name"] == "sidecar")
    assert side["env"] == [{"name": "MODE", "value": "b"}], side
    assert obj["spec"]["replicas"] == 3
    # keepfix's field manager owns only what it wrote.
    mine = [m for m in obj["metadata"].get("managedFields", []) if m["manager"] == "keepfix"]
    for entry in mine:
        text = json.dumps(entry.get("fieldsV1", {}))
        assert "touched" not in text, entry
        assert "MODE" not in text, entry


def test_target_metadata_untouched(kube: Kube, story: str) -> None:
    """keepfix never writes annotations, labels or finalizers on a target."""
    ns = story
    meta0 = kube.get("deployment", "web", ns)["metadata"]
    kube.patch("deployment", "web", ns, memory_patch("128Mi"), "kubectl-edit")
    eventually(lambda: kube.events(ns, "DriftRolledBack"), "DriftRolledBack")
    eventually(lambda: live_memory(kube, ns) == "512Mi", "memory rolled back")
    meta = kube.get("deployment", "web", ns)["metadata"]
    # The deployment controller bumps its revision annotation; nothing else may change.
    revision = "deployment.kubernetes.io/revision"
    annotations = {k: v for k, v in meta.get("annotations", {}).items() if k != revision}
    annotations0 = {k: v for k, v in meta0.get("annotations", {}).items() if k != revision}
    assert annotations == annotations0
    assert meta.get("labels") == meta0.get("labels")
    assert not meta.get("finalizers"), meta.get("finalizers")
    assert not meta.get("ownerReferences"), meta.get("ownerReferences")


def test_recurrence_bumps_occurrences_and_resolution_is_recorded(kube: Kube, story: str) -> None:
    ns = story
    kube.patch("deployment", "web", ns, memory_patch("128Mi"), "kubectl-edit")
    first = one_regression(
        kube,
        ns,
        lambda r: (r.get("status") or {}).get("state") == "Resolved",
        "the first Regression resolved after the rollback",
    )
    status = first["status"]
    assert status.get("resolvedAt"), status
    assert isinstance(status.get("resolutionSeconds"), int | float), status
    assert status["resolutionSeconds"] >= 0
    kube.patch("deployment", "web", ns, memory_patch("128Mi"), "kubectl-edit")
    again = one_regression(
        kube,
        ns,
        lambda r: r["spec"].get("occurrences") == 2,
        "the same Regression with occurrences 2 (no duplicate)",
    )
    assert again["metadata"]["name"] == first["metadata"]["name"]
    assert again["metadata"]["uid"] == first["metadata"]["uid"]
    eventually(
        lambda: (
            (kube.get("regression", again["metadata"]["name"], ns).get("status") or {}).get("state")
            == "Resolved"
        ),
        "Resolved again",
    )
    assert len(kube.regressions(ns)) == 1


def test_repeat_offender_is_one_level_higher(
    kube: Kube, operator: Operator, namespace: str
) -> None:
    """A Medium drift first; the next regression (different signature) is High."""
    ns = namespace
    kube.apply(deployment("web", ns))
    kube.apply(
        mitigation(
            "fix",
            ns,
            web_target(),
            [{"path": MEMORY, "value": "512Mi", "knownBad": ["128Mi"]}],
            action="Rollback",
        )
    )
    watching(kube, ns, "fix")
    kube.patch("deployment", "web", ns, memory_patch("300Mi"), "script")
    first = one_regression(kube, ns, lambda r: r["spec"].get("severity"), "first Regression")
    assert first["spec"]["severity"] == "Medium", first["spec"]
    eventually(lambda: live_memory(kube, ns) == "512Mi", "rolled back")
    kube.patch("deployment", "web", ns, memory_patch("200Mi"), "script")

    def second() -> dict[str, Any] | None:
        regs = [r for r in kube.regressions(ns) if r["metadata"]["uid"] != first["metadata"]["uid"]]
        return regs[0] if regs else None

    reg = eventually(second, "a second Regression (new signature)")
    assert reg["spec"]["severity"] == "High", reg["spec"]


def test_severity_high_when_some_fields_known_bad_medium_when_none(
    kube: Kube, operator: Operator, namespace: str
) -> None:
    ns = namespace
    for name in ("a", "b"):
        kube.apply(deployment(name, ns))
        kube.apply(
            mitigation(
                f"fix-{name}",
                ns,
                web_target(name),
                [
                    {"path": MEMORY, "value": "512Mi", "knownBad": ["128Mi"]},
                    {"path": "spec.replicas", "value": 3, "knownBad": [1]},
                ],
                action="Alert",
            )
        )
        watching(kube, ns, f"fix-{name}")
    both = memory_patch("128Mi")
    both["spec"]["replicas"] = 2
    kube.patch("deployment", "a", ns, both, "m1")
    kube.patch("deployment", "b", ns, memory_patch("256Mi"), "m1")

    def by_target() -> dict[str, dict[str, Any]] | None:
        regs = {r["spec"]["target"]["name"]: r for r in kube.regressions(ns)}
        a = regs.get("a")
        if not a or len(a["spec"].get("drift", [])) != 2 or "b" not in regs:
            return None
        return regs

    regs = eventually(by_target, "Regressions for a (two fields drifted) and b")
    assert regs["a"]["spec"]["severity"] == "High", regs["a"]["spec"]
    assert regs["b"]["spec"]["severity"] == "Medium", regs["b"]["spec"]


def test_alert_action_leaves_the_drift_and_records_alerted(
    kube: Kube, operator: Operator, namespace: str
) -> None:
    ns = namespace
    kube.apply(deployment("web", ns))
    kube.apply(
        mitigation(
            "alert-only",
            ns,
            web_target(),
            [{"path": MEMORY, "value": "512Mi", "knownBad": ["128Mi"]}],
            action="Alert",
        )
    )
    watching(kube, ns, "alert-only")
    kube.patch("deployment", "web", ns, memory_patch("128Mi"), "kubectl-edit")
    reg = one_regression(
        kube, ns, lambda r: (r.get("status") or {}).get("action") == "Alerted", "action Alerted"
    )
    assert reg["status"]["state"] == "Open", reg["status"]
    assert reg["spec"]["severity"] == "Critical"
    eventually(lambda: kube.events(ns, "DriftDetected"), "DriftDetected")
    never(lambda: live_memory(kube, ns) != "128Mi", "the Alert action changed the object")
    assert not kube.events(ns, "DriftRolledBack")
    mit = kube.get("mitigation", "alert-only", ns)
    assert mit["status"]["phase"] == "Drifted", mit["status"]
    assert mit["status"].get("rollbacks", 0) == 0, mit["status"]


def test_mitigation_status_is_complete(kube: Kube, story: str) -> None:
    ns = story
    kube.patch("deployment", "web", ns, memory_patch("128Mi"), "kubectl-edit")

    def counted() -> dict[str, Any] | None:
        st = kube.get("mitigation", "web-memory-fix", ns).get("status") or {}
        ok = st.get("rollbacks") == 1 and st.get("regressions") == 1 and st.get("drifts") == 1
        return st if ok and st.get("phase") == "Watching" else None

    st = eventually(counted, "status counters drifts/rollbacks/regressions = 1, phase Watching")
    assert st["targets"] == 1
    assert st.get("watchUntil"), st
    assert st.get("mitigatedAt"), st
    assert st["stable"] == [{"path": MEMORY, "value": "512Mi"}], st["stable"]
    assert st.get("lastRegression") == kube.regressions(ns)[0]["metadata"]["name"]
    conds = st.get("conditions") or []
    assert conds, st
    # A Mitigation is the user's (often GitOps-managed) object: no annotations or finalizers added.
    meta = kube.get("mitigation", "web-memory-fix", ns)["metadata"]
    added = set(meta.get("annotations", {})) - {"kubectl.kubernetes.io/last-applied-configuration"}
    assert not added, added
    assert not meta.get("finalizers"), meta.get("finalizers")
    for c in conds:
        for key in ("type", "status", "reason", "message", "lastTransitionTime"):
            assert key in c, c
        assert c["status"] in ("True", "False", "Unknown"), c


@pytest.mark.parametrize("path", ["spec..replicas", "spec.template.spec.containers[name=web"])
def test_invalid_mitigation_is_invalid_and_others_keep_working(
    kube: Kube, operator: Operator, namespace: str, path: str
) -> None:
    ns = namespace
    named = path
    kube.apply(deployment("web", ns))
    bad = mitigation("broken", ns, web_target(), [{"path": path, "value": 3}])
    kube.apply(bad)

    def invalid() -> dict[str, Any] | None:
        st = kube.get("mitigation", "broken", ns).get("status") or {}
        return st if st.get("phase") == "Invalid" else None

    st = eventually(invalid, "phase Invalid")
    messages = " ".join(str(c.get("message", "")) for c in st.get("conditions", []))
    assert named in messages or "fields[0]" in messages, st
    kube.apply(
        mitigation(
            "good", ns, web_target(), [{"path": MEMORY, "value": "512Mi"}], action="Rollback"
        )
    )
    watching(kube, ns, "good")
    kube.patch("deployment", "web", ns, memory_patch("1Gi"), "kubectl-edit")
    eventually(lambda: live_memory(kube, ns) == "512Mi", "the good Mitigation still rolls back")
    assert operator.proc.poll() is None


def test_unknown_target_kind_is_pending(kube: Kube, operator: Operator, namespace: str) -> None:
    """A target kind the server does not serve (yet) leaves the Mitigation Pending, not broken."""
    ns = namespace
    kube.apply(
        mitigation(
            "nokind",
            ns,
            {"apiVersion": "example.com/v1", "kind": "Nope", "name": "x"},
            [{"path": "spec.x", "value": 1}],
        )
    )

    def reported() -> dict[str, Any] | None:
        st = kube.get("mitigation", "nokind", ns).get("status") or {}
        return st if st.get("phase") == "Pending" and st.get("targets") == 0 else None

    st = eventually(reported, "phase Pending with no targets")
    assert any(c["type"] == "Ready" and c["status"] == "False" for c in st["conditions"]), st


def test_selector_target_protects_every_match_including_later_ones(
    kube: Kube, operator: Operator, namespace: str
) -> None:
    ns = namespace
    for i in range(3):
        kube.apply(configmap(f"cm{i}", ns, {"flag": "on"}, tier="edge"))
    kube.apply(configmap("other", ns, {"flag": "on"}, tier="core"))
    kube.apply(
        mitigation(
            "flags",
            ns,
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "selector": {"matchLabels": {"tier": "edge"}},
            },
            [{"path": "data.flag", "value": "on", "knownBad": ["off"]}],
            action="Rollback",
        )
    )
    eventually(
        lambda: (kube.get("mitigation", "flags", ns).get("status") or {}).get("targets") == 3,
        "targets 3",
    )
    kube.apply(configmap("cm3", ns, {"flag": "on"}, tier="edge"))
    eventually(
        lambda: (kube.get("mitigation", "flags", ns).get("status") or {}).get("targets") == 4,
        "targets 4 after one more labelled ConfigMap",
    )
    for name in ("cm0", "cm3", "other"):
        kube.patch("configmap", name, ns, {"data": {"flag": "off"}}, "script")
    for name in ("cm0", "cm3"):
        eventually(
            lambda n=name: kube.get("configmap", n, ns)["data"]["flag"] == "on",  # type: ignore[misc]
            f"{name} rolled back",
        )
    assert kube.get("configmap", "other", ns)["data"]["flag"] == "off"
    targets = {r["spec"]["target"]["name"] for r in kube.regressions(ns)}
    assert targets == {"cm0", "cm3"}, targets


def configmap(name: str, ns: str, data: dict[str, str], **labels: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": ns, "labels": labels},
        "data": data,
    }


def no_debug(ns: str) -> dict[str, Any]:
    return mitigation(
        "no-debug",
        ns,
        {"apiVersion": "v1", "kind": "ConfigMap", "name": "cfg"},
        [{"path": "data.debug", "value": None}],
        action="Rollback",
    )


@pytest.mark.xfail(
    strict=True,
    reason="BUG: `value: null` (documented: field must be absent) is refused by `kubectl apply`"
    " (client-side apply drops the null, then the CRD says spec.fields[0].value: Required value)",
)
def test_null_value_mitigation_can_be_kubectl_applied(
    kube: Kube, crds: list[str], namespace: str
) -> None:
    proc = kube.apply(no_debug(namespace), check=False)
    assert "Required value" not in proc.stderr, proc.stderr
    assert proc.returncode == 0, proc.stderr
    fields = kube.get("mitigation", "no-debug", namespace)["spec"]["fields"]
    assert fields == [{"path": "data.debug", "value": None}]


def test_null_value_means_absent_and_is_removed(
    kube: Kube, operator: Operator, namespace: str
) -> None:
    ns = namespace
    kube.apply(configmap("cfg", ns, {"keep": "1"}))
    # `kubectl create` keeps the null (client-side apply drops it: see the test above).
    kube.run("create", "-f", "-", input=json.dumps(no_debug(ns)))
    watching(kube, ns, "no-debug")
    kube.patch("configmap", "cfg", ns, {"data": {"debug": "true", "other": "x"}}, "kubectl-edit")
    eventually(
        lambda: "debug" not in kube.get("configmap", "cfg", ns).get("data", {}), "debug removed"
    )
    data = kube.get("configmap", "cfg", ns)["data"]
    assert data == {"keep": "1", "other": "x"}, data
    reg = one_regression(kube, ns)
    assert reg["spec"]["drift"][0]["actual"] == "true"


def test_secret_value_never_leaks(kube: Kube, operator: Operator, namespace: str) -> None:
    ns = namespace
    good, bad = "s3cr3t-GOOD-value-91f2", "l3ak3d-BAD-value-77aa"
    kube.run("create", "secret", "generic", "db", "-n", ns, f"--from-literal=password={good}")
    kube.apply(
        mitigation(
            "db-pw",
            ns,
            {"apiVersion": "v1", "kind": "Secret", "name": "db"},
            [{"path": "data.password"}],
            capture=True,
            action="Rollback",
        )
    )
    watching(kube, ns, "db-pw")
    kube.patch("secret", "db", ns, {"stringData": {"password": bad}}, "kubectl-edit")
    eventually(lambda: kube.events(ns, "DriftRolledBack"), "DriftRolledBack on the Secret")
    reg = one_regression(kube, ns)

    needles = [good, bad] + [base64.b64encode(v.encode()).decode() for v in (good, bad)]
    blobs = {
        "regressions": json.dumps(kube.regressions(ns)),
        "events": json.dumps(kube.events(ns)),
        "mitigation": json.dumps(kube.get("mitigation", "db-pw", ns)),
        "log": operator.log_text(),
        "metrics": operator.metrics(),
    }
    for where, text in blobs.items():
        for needle in needles:
            assert needle not in text, f"secret material in {where}"
    drift = reg["spec"]["drift"][0]
    assert "sha256" in json.dumps(drift), drift


def test_deleting_the_mitigation_stops_rollbacks(kube: Kube, story: str) -> None:
    ns = story
    kube.run("delete", "mitigation", "web-memory-fix", "-n", ns)
    kube.patch("deployment", "web", ns, memory_patch("128Mi"), "kubectl-edit")
    never(lambda: live_memory(kube, ns) != "128Mi", "rolled back after the Mitigation was deleted")
    meta = kube.get("deployment", "web", ns)["metadata"]
    assert not meta.get("finalizers")


def test_selector_is_scoped_to_the_mitigation_namespace(
    kube: Kube, operator: Operator, namespace: str
) -> None:
    """A selector without a namespace matches only in the Mitigation's own namespace."""
    ns = namespace
    other = f"{ns[:50]}-x"
    kube.run("create", "namespace", other)
    try:
        kube.apply(configmap("mine", ns, {"flag": "on"}, tier="edge"))
        kube.apply(configmap("theirs", other, {"flag": "on"}, tier="edge"))
        kube.apply(
            mitigation(
                "flags",
                ns,
                {
                    "apiVersion": "v1",
                    "kind": "ConfigMap",
                    "selector": {"matchLabels": {"tier": "edge"}},
                },
                [{"path": "data.flag", "value": "on"}],
                action="Rollback",
                admission="Off",
            )
        )
        watching(kube, ns, "flags")
        kube.patch("configmap", "theirs", other, {"data": {"flag": "off"}}, "script")
        kube.patch("configmap", "mine", ns, {"data": {"flag": "off"}}, "script")
        eventually(lambda: kube.get("configmap", "mine", ns)["data"]["flag"] == "on", "mine back")
        assert kube.get("configmap", "theirs", other)["data"]["flag"] == "off"
        assert (kube.get("mitigation", "flags", ns).get("status") or {}).get("targets") == 1
    finally:
        kube.run("delete", "namespace", other, "--wait=false", check=False)


def test_rollback_rejected_by_the_api_is_reported_not_retried_forever(
    kube: Kube, operator: Operator, namespace: str
) -> None:
    """A rollback the API server refuses: Event RollbackFailed with the API's reason."""
    ns = namespace
    dep = deployment("web", ns)
    dep["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"] = {"memory": "256Mi"}
    kube.apply(dep)
    kube.apply(
        mitigation("mem", ns, web_target(), [{"path": MEMORY, "value": "512Mi"}], admission="Off")
    )
    watching(kube, ns, "mem")
    body = memory_patch("2Gi")
    body["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"] = {"memory": "1Gi"}
    kube.patch("deployment", "web", ns, body, "tuner")
    failed = eventually(lambda: kube.events(ns, "RollbackFailed"), "a RollbackFailed Event")
    assert "less than or equal to memory limit" in failed[0]["note"], failed[0]
    reg = one_regression(
        kube, ns, lambda r: (r.get("status") or {}).get("action") == "RollbackFailed", "action"
    )
    assert reg["status"]["state"] == "Open"
    assert live_memory(kube, ns) == "2Gi"
    assert operator.proc.poll() is None


def test_alert_regression_resolves_when_a_person_fixes_it(
    kube: Kube, operator: Operator, namespace: str
) -> None:
    ns = namespace
    kube.apply(deployment("web", ns))
    kube.apply(
        mitigation("alert", ns, web_target(), [{"path": MEMORY, "value": "512Mi"}], action="Alert")
    )
    watching(kube, ns, "alert")
    kube.patch("deployment", "web", ns, memory_patch("1Gi"), "kubectl-edit")
    one_regression(kube, ns, lambda r: (r.get("status") or {}).get("state") == "Open", "Open")
    kube.patch("deployment", "web", ns, memory_patch("0.5Gi"), "kubectl-edit")
    reg = one_regression(
        kube, ns, lambda r: (r.get("status") or {}).get("state") == "Resolved", "Resolved"
    )
    assert reg["status"]["resolutionSeconds"] >= 0
    assert live_memory(kube, ns) in {"0.5Gi", "512Mi"}  # the API server canonicalizes


def _occurrence_rolled_back(kube: Kube, ns: str, n: int, memory: str | None) -> bool:
    """Occurrence `n` recorded and the object back (Deployment memory, or ConfigMap data.mem)."""
    if one_regression(kube, ns)["spec"]["occurrences"] != n:
        return False
    if memory is not None:
        return live_memory(kube, ns) == memory
    return bool(kube.get("configmap", "cfg", ns)["data"]["mem"] == "512Mi")


def test_repeated_drift_joins_one_event_series(kube: Kube, story: str) -> None:
    ns = story
    for n in range(1, 4):
        kube.patch("deployment", "web", ns, memory_patch("128Mi"), "kubectl-edit")
        eventually(
            functools.partial(_occurrence_rolled_back, kube, ns, n, "512Mi"),
            f"occurrence {n} rolled back",
        )
    detected = kube.events(ns, "DriftDetected")
    assert len(detected) == 1, [e.get("series") for e in detected]
    assert (detected[0].get("series") or {}).get("count", 1) >= 2, detected[0]


def test_window_expiry_event_phase_and_low_severity(
    kube: Kube, operator: Operator, namespace: str
) -> None:
    """watchWindow 1m: MitigationExpired, phase Expired; a drift after it is Low and acted on."""
    ns = namespace
    kube.apply(configmap("cfg", ns, {"mem": "512Mi"}))
    kube.apply(
        mitigation(
            "short",
            ns,
            {"apiVersion": "v1", "kind": "ConfigMap", "name": "cfg"},
            [{"path": "data.mem", "value": "512Mi", "knownBad": ["128Mi"]}],
            action="Rollback",
            admission="Off",
            watchWindow="1m",
        )
    )
    watching(kube, ns, "short")
    eventually(
        lambda: (kube.get("mitigation", "short", ns).get("status") or {}).get("phase") == "Expired",
        "phase Expired after the one-minute window",
        patience=180,
    )
    eventually(lambda: kube.events(ns, "MitigationExpired"), "a MitigationExpired Event")
    kube.patch("configmap", "cfg", ns, {"data": {"mem": "128Mi"}}, "late")
    reg = one_regression(kube, ns)
    assert reg["spec"]["severity"] == "Low", reg["spec"]
    eventually(lambda: kube.get("configmap", "cfg", ns)["data"]["mem"] == "512Mi", "rolled back")


def test_editing_the_fix_is_not_a_regression(
    kube: Kube, operator: Operator, namespace: str
) -> None:
    ns = namespace
    kube.apply(configmap("cfg", ns, {"mem": "512Mi"}))
    kube.apply(
        mitigation(
            "fix",
            ns,
            {"apiVersion": "v1", "kind": "ConfigMap", "name": "cfg"},
            [{"path": "data.mem", "value": "512Mi"}],
            action="Rollback",
            admission="Off",
        )
    )
    watching(kube, ns, "fix")
    kube.run(
        "patch",
        "mitigation",
        "fix",
        "-n",
        ns,
        "--type=json",
        "-p",
        '[{"op":"replace","path":"/spec/fields/0/value","value":"1Gi"}]',
    )
    # The new stable value is put in place (or at least reported) ...
    eventually(
        lambda: (
            (kube.get("mitigation", "fix", ns).get("status") or {}).get("stable")
            == [{"path": "data.mem", "value": "1Gi"}]
        ),
        "status.stable follows the edited spec",
    )
    eventually(lambda: kube.get("configmap", "cfg", ns)["data"]["mem"] == "1Gi", "rolled forward")
    # ... but nobody regressed anything.
    never(lambda: kube.regressions(ns), "a Regression for an edit of the Mitigation itself")


def test_adopting_an_object_without_the_fix_is_not_a_regression(
    kube: Kube, operator: Operator, namespace: str
) -> None:
    ns = namespace
    kube.apply(configmap("cfg", ns, {"mem": "128Mi"}))
    kube.apply(
        mitigation(
            "fix",
            ns,
            {"apiVersion": "v1", "kind": "ConfigMap", "name": "cfg"},
            [{"path": "data.mem", "value": "512Mi"}],
            action="Rollback",
            admission="Off",
        )
    )
    eventually(lambda: kube.get("configmap", "cfg", ns)["data"]["mem"] == "512Mi", "fix applied")
    never(lambda: kube.regressions(ns), "a Regression when the Mitigation first applied its fix")


def test_regression_history_is_capped(kube: Kube, operator: Operator, namespace: str) -> None:
    """22 recurrences: one Regression, occurrences 22, status.history at most 20 entries."""
    ns = namespace
    kube.apply(configmap("cfg", ns, {"mem": "512Mi"}))
    kube.apply(
        mitigation(
            "fix",
            ns,
            {"apiVersion": "v1", "kind": "ConfigMap", "name": "cfg"},
            [{"path": "data.mem", "value": "512Mi"}],
            action="Rollback",
            admission="Off",
        )
    )
    watching(kube, ns, "fix")
    for n in range(1, 23):
        kube.patch("configmap", "cfg", ns, {"data": {"mem": "1Gi"}}, "script")
        eventually(
            functools.partial(_occurrence_rolled_back, kube, ns, n, None),
            f"occurrence {n} rolled back",
        )
    reg = one_regression(kube, ns)
    assert len(reg["status"].get("history") or []) <= 20, len(reg["status"]["history"])


def test_target_deleted_and_recreated_from_an_old_manifest_gets_the_fix_back(
    kube: Kube, operator: Operator, namespace: str
) -> None:
    """The GitOps story: the object is deleted and re-created from a manifest without the fix."""
    ns = namespace
    kube.apply(configmap("cfg", ns, {"mem": "512Mi"}))
    kube.apply(
        mitigation(
            "fix",
            ns,
            {"apiVersion": "v1", "kind": "ConfigMap", "name": "cfg"},
            [{"path": "data.mem", "value": "512Mi", "knownBad": ["128Mi"]}],
            action="Rollback",
            admission="Off",
        )
    )
    watching(kube, ns, "fix")
    kube.run("delete", "configmap", "cfg", "-n", ns)
    eventually(
        lambda: (kube.get("mitigation", "fix", ns).get("status") or {}).get("targets") == 0,
        "targets 0 once the object is gone",
    )
    kube.run("create", "configmap", "cfg", "-n", ns, "--from-literal=mem=128Mi")
    eventually(lambda: kube.get("configmap", "cfg", ns)["data"]["mem"] == "512Mi", "fix re-applied")
    watching(kube, ns, "fix")


def test_metrics_count_drifts_rollbacks_and_regressions(
    kube: Kube, operator: Operator, story: str
) -> None:
    def total(name: str, **labels: str) -> float:
        value = 0.0
        for line in operator.metrics().splitlines():
            head, _, number = line.rpartition(" ")
            if head.split("{", 1)[0] != name:
                continue
            if all(f'{k}="{v}"' in head for k, v in labels.items()):
                value += float(number)
        return value

    before = (
        total("keepfix_drift_detected_total"),
        total("keepfix_rollbacks_total", result="Succeeded"),
        total("keepfix_regressions_total", severity="Critical", team="shop-sre"),
        total("keepfix_drift_to_rollback_seconds_count"),
    )
    kube.patch("deployment", "web", story, memory_patch("128Mi"), "kubectl-edit")
    eventually(lambda: kube.events(story, "DriftRolledBack"), "DriftRolledBack")

    def moved() -> tuple[float, ...] | None:
        after = (
            total("keepfix_drift_detected_total"),
            total("keepfix_rollbacks_total", result="Succeeded"),
            total("keepfix_regressions_total", severity="Critical", team="shop-sre"),
            total("keepfix_drift_to_rollback_seconds_count"),
        )
        return after if all(a > b for a, b in zip(after, before, strict=True)) else None

    eventually(moved, f"every counter above {before}")
    assert total("keepfix_watched_objects") >= 1


def test_contradicting_mitigations_are_not_blamed_on_a_bystander(
    kube: Kube, operator: Operator, namespace: str
) -> None:
    ns = namespace
    kube.run("create", "configmap", "cfg", "-n", ns, "--from-literal=a=1")
    target = {"apiVersion": "v1", "kind": "ConfigMap", "name": "cfg"}
    kube.apply(mitigation("one", ns, target, [{"path": "data.a", "value": "1"}], admission="Off"))
    watching(kube, ns, "one")
    try:
        kube.apply(
            mitigation("two", ns, target, [{"path": "data.a", "value": "2"}], admission="Off")
        )

        def blamed() -> list[str] | None:
            regs = [r for r in kube.regressions(ns) if r["spec"]["mitigation"]["name"] == "one"]
            if not regs:
                return None
            return [c["manager"] for c in regs[0]["spec"].get("changedBy", [])] or None

        managers = eventually(blamed, "a Regression of Mitigation one (keepfix wrote a=2)")
        # Only keepfix (for Mitigation two) ever wrote a=2; kubectl-create wrote a=1.
        assert "kubectl-create" not in managers, managers
    finally:
        kube.run("delete", "mitigation", "two", "-n", ns, "--wait=false", check=False)


def test_a_rollback_the_api_ignored_is_not_reported_as_rolled_back(
    kube: Kube, operator: Operator, namespace: str
) -> None:
    ns = namespace
    kube.run("create", "deployment", "web", "-n", ns, "--image=nginx:1.27", "--replicas=2")
    eventually(
        lambda: kube.get("deployment", "web", ns).get("status", {}).get("replicas") == 2,
        "status.replicas 2",
    )
    kube.apply(
        mitigation(
            "st", ns, web_target(), [{"path": "status.replicas", "value": 2}], admission="Off"
        )
    )

    def settled() -> str | None:
        phase = (kube.get("mitigation", "st", ns).get("status") or {}).get("phase")
        return phase if phase in {"Watching", "Invalid"} else None

    # keepfix refuses to protect status: a patch there is dropped by the API server.
    assert eventually(settled, "Mitigation st Watching or Invalid") == "Invalid"
    conditions = kube.get("mitigation", "st", ns)["status"]["conditions"]
    assert any("status.replicas" in (c.get("message") or "") for c in conditions), conditions


def test_star_index_and_podspec_paths_roll_back_only_the_drifted_item(
    kube: Kube, operator: Operator, namespace: str
) -> None:
    ns = namespace
    dep = deployment("web", ns)
    for c in dep["spec"]["template"]["spec"]["containers"]:
        c["securityContext"] = {"runAsNonRoot": True}
    kube.apply(dep)
    kube.apply(
        mitigation(
            "paths",
            ns,
            web_target(),
            [
                {
                    "path": "spec.template.spec.containers[*].securityContext.runAsNonRoot",
                    "value": True,
                },
                {"path": "spec.template.spec.containers[1].image", "value": "busybox:1.36"},
                {"path": "podSpec.containers[name=web].image", "value": "nginx:1.27"},
            ],
            admission="Off",
        )
    )
    watching(kube, ns, "paths")
    body = {
        "spec": {
            "template": {
                "spec": {
                    # Same order as the live list: a strategic merge patch listing the
                    # sidecar first would reorder the containers (and move index 1).
                    "containers": [
                        {"name": "web", "image": "nginx:9"},
                        {
                            "name": "sidecar",
                            "image": "busybox:9",
                            "securityContext": {"runAsNonRoot": False},
                        },
                    ]
                }
            }
        }
    }
    kube.patch("deployment", "web", ns, body, "kubectl-edit")

    def restored() -> bool:
        cs = {
            c["name"]: c
            for c in kube.get("deployment", "web", ns)["spec"]["template"]["spec"]["containers"]
        }
        return (
            cs["web"]["image"] == "nginx:1.27"
            and cs["sidecar"]["image"] == "busybox:1.36"
            and cs["sidecar"]["securityContext"]["runAsNonRoot"] is True
            and cs["web"]["securityContext"]["runAsNonRoot"] is True
        )

    eventually(restored, "all three drifted fields put back")
    drift = one_regression(kube, ns)["spec"]["drift"]
    assert len(drift) == 3, drift
