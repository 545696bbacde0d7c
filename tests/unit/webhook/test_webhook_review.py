"""AdmissionReview decoding and the webhook's decisions (Deny, Warn, Audit, UPDATE, dry-run)."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import pytest

from keepfix.adapters.webhook import review
from keepfix.api import conventions, convert
from keepfix.core import policy

GR = conventions.WEBHOOK_GUARDRAILS
MIT = conventions.WEBHOOK_MITIGATIONS
PRIVILEGED = "spec.template.spec.containers[*].securityContext.privileged"


def _guardrail(gr_name: str, enforcement: str, **rule: Any) -> dict[str, Any]:
    return {
        "apiVersion": conventions.API_VERSION,
        "kind": "Guardrail",
        "metadata": {"name": gr_name},
        "spec": {
            "match": {"resources": [{"apiGroups": ["apps"], "kinds": ["Deployment"]}]},
            "rules": [rule],
            "enforcement": enforcement,
            "owner": {"team": "platform-sre"},
            "incident": {"id": "INC-99"},
        },
    }


def _mitigation(admission: str) -> dict[str, Any]:
    return {
        "apiVersion": conventions.API_VERSION,
        "kind": "Mitigation",
        "metadata": {"name": "web-memory-fix", "namespace": "shop"},
        "spec": {
            "target": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
            "fields": [
                {
                    "path": "spec.template.spec.containers[name=web].resources.limits.memory",
                    "value": "512Mi",
                    "knownBad": ["128Mi"],
                }
            ],
            "admission": admission,
            "owner": {"team": "shop-sre"},
            "incident": {"id": "INC-1234"},
        },
    }


def _policies(
    guardrails: tuple[dict[str, Any], ...] = (), mitigations: tuple[dict[str, Any], ...] = ()
) -> policy.PolicySet:
    return policy.PolicySet.build(
        [convert.mitigation(m) for m in mitigations], [convert.guardrail(g) for g in guardrails]
    )


def _deployment(*, privileged: bool = False, memory: str = "512Mi") -> dict[str, Any]:
    container: dict[str, Any] = {
        "name": "web",
        "image": "nginx:1.27",
        "resources": {"limits": {"memory": memory}},
    }
    if privileged:
        container["securityContext"] = {"privileged": True}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "shop"},
        "spec": {"replicas": 3, "template": {"spec": {"containers": [container]}}},
    }


def _review(
    obj: Mapping[str, Any], *, old: Mapping[str, Any] | None = None, dry_run: bool = False
) -> dict[str, Any]:
    request: dict[str, Any] = {
        "uid": "7b0b5a4e",
        "kind": {"group": "apps", "version": "v1", "kind": "Deployment"},
        "resource": {"group": "apps", "version": "v1", "resource": "deployments"},
        "namespace": "shop",
        "name": "web",
        "operation": "UPDATE" if old is not None else "CREATE",
        "dryRun": dry_run,
        "object": obj,
        "oldObject": old,
    }
    return {"apiVersion": review.API_VERSION, "kind": review.KIND, "request": request}


class Recorder:
    """Collects what the reviewer counts."""

    def __init__(self) -> None:
        self.counted: list[tuple[str, str]] = []
        self.prevented: list[policy.Ref] = []

    def reviewer(self, policies: policy.PolicySet) -> review.Reviewer:
        return review.Reviewer(
            policies=lambda: policies,
            on_counted=lambda kind, verdict: self.counted.append((kind, verdict)),
            on_prevented=self.prevented.append,
        )


NO_PRIVILEGED_DENY = _guardrail(
    "no-privileged", "Deny", name="not-privileged", path=PRIVILEGED, notIn=[True]
)


def test_deny_answers_with_the_finding_message() -> None:
    """A Deny Guardrail refuses the object; status.message is the gate's message."""
    rec = Recorder()
    answer = rec.reviewer(_policies((NO_PRIVILEGED_DENY,)))(
        GR, _review(_deployment(privileged=True))
    )
    response = answer["response"]
    assert (answer["apiVersion"], answer["kind"]) == (review.API_VERSION, review.KIND)
    assert response["uid"] == "7b0b5a4e"
    assert response["allowed"] is False
    assert response["status"]["code"] == 403
    assert response["status"]["message"].startswith(
        "Guardrail no-privileged, rule not-privileged: "
        "spec.template.spec.containers[name=web].securityContext.privileged is true"
    )
    assert "INC-99" in response["status"]["message"]
    assert "owner platform-sre" in response["status"]["message"]
    assert rec.counted == [("Deployment", conventions.VERDICT_DENIED)]
    assert rec.prevented == [
        policy.Ref("Guardrail", "no-privileged", None, conventions.API_VERSION)
    ]


def test_clean_object_is_allowed_without_warnings() -> None:
    """An object that breaks nothing is allowed silently and counted as Allowed."""
    rec = Recorder()
    answer = rec.reviewer(_policies((NO_PRIVILEGED_DENY,)))(GR, _review(_deployment()))
    assert answer["response"] == {"uid": "7b0b5a4e", "allowed": True}
    assert rec.counted == [("Deployment", conventions.VERDICT_ALLOWED)]
    assert rec.prevented == []


def test_warn_allows_with_one_warning_per_finding() -> None:
    """Warn allows the object and returns one short warning per broken rule."""
    warn = _guardrail("no-privileged", "Warn", name="not-privileged", path=PRIVILEGED, notIn=[True])
    two = _guardrail("two-replicas", "Warn", name="min-replicas", path="spec.replicas", atLeast=5)
    rec = Recorder()
    answer = rec.reviewer(_policies((warn, two)))(GR, _review(_deployment(privileged=True)))
    response = answer["response"]
    assert response["allowed"] is True
    assert len(response["warnings"]) == 2
    assert all(len(w) < review.WARNING_LIMIT for w in response["warnings"])
    assert response["warnings"][1].startswith("Guardrail two-replicas, rule min-replicas: ")
    assert rec.counted == [("Deployment", conventions.VERDICT_WARNED)]
    assert rec.prevented == []


def test_audit_allows_silently_and_counts() -> None:
    """Audit findings allow the object, print nothing, and count as Audited."""
    audit = _guardrail(
        "no-privileged", "Audit", name="not-privileged", path=PRIVILEGED, notIn=[True]
    )
    rec = Recorder()
    answer = rec.reviewer(_policies((audit,)))(GR, _review(_deployment(privileged=True)))
    assert answer["response"] == {"uid": "7b0b5a4e", "allowed": True}
    assert rec.counted == [("Deployment", conventions.VERDICT_AUDITED)]


def test_dry_run_answers_the_same_without_side_effects() -> None:
    """dryRun gets the identical answer and neither counts nor prevents."""
    rec = Recorder()
    reviewer = rec.reviewer(_policies((NO_PRIVILEGED_DENY,)))
    dry = reviewer(GR, _review(_deployment(privileged=True), dry_run=True))
    assert (rec.counted, rec.prevented) == ([], [])
    real = reviewer(GR, _review(_deployment(privileged=True)))
    assert dry == real


def test_update_of_a_legacy_violation_warns_instead_of_denying() -> None:
    """An unrelated edit of an object that already broke a Deny rule is allowed with a warning."""
    legacy = _deployment(privileged=True)
    edited = copy.deepcopy(legacy)
    edited["spec"]["replicas"] = 4
    rec = Recorder()
    answer = rec.reviewer(_policies((NO_PRIVILEGED_DENY,)))(GR, _review(edited, old=legacy))
    response = answer["response"]
    assert response["allowed"] is True
    assert [
        w.startswith(review.PREEXISTING_PREFIX + "Guardrail no-privileged")
        for w in response["warnings"]
    ] == [True]
    assert rec.prevented == []


def test_update_introducing_a_violation_is_denied() -> None:
    """An UPDATE that adds the violation is denied like a CREATE."""
    answer = Recorder().reviewer(_policies((NO_PRIVILEGED_DENY,)))(
        GR, _review(_deployment(privileged=True), old=_deployment())
    )
    assert answer["response"]["allowed"] is False


def test_reverting_a_mitigation_is_denied_with_its_context() -> None:
    """A change undoing a Deny Mitigation names it, the incident, owner, expected and actual."""
    rec = Recorder()
    answer = rec.reviewer(_policies(mitigations=(_mitigation("Deny"),)))(
        MIT, _review(_deployment(memory="128Mi"), old=_deployment())
    )
    message = answer["response"]["status"]["message"]
    for part in ("shop/web-memory-fix", "INC-1234", "shop-sre", "512Mi", "128Mi"):
        assert part in message
    assert [r.name for r in rec.prevented] == ["web-memory-fix"]


def test_mitigation_warn_allows_with_a_warning() -> None:
    """admission: Warn lets the revert through with a warning."""
    answer = Recorder().reviewer(_policies(mitigations=(_mitigation("Warn"),)))(
        MIT, _review(_deployment(memory="128Mi"))
    )
    assert answer["response"]["allowed"] is True
    assert "web-memory-fix" in answer["response"]["warnings"][0]


@pytest.mark.parametrize(
    ("old_memory", "new_memory", "allowed"),
    [("128Mi", "128Mi", True), ("128Mi", "64Mi", False), ("512Mi", "0.125Gi", False)],
    ids=["drift-left-as-it-was", "drift-made-worse", "new-revert-respelled"],
)
def test_mitigation_update_of_an_already_drifted_field(
    old_memory: str, new_memory: str, allowed: bool
) -> None:
    """A drift the old object already had is warned about; a new non-stable value is denied."""
    old, new = _deployment(memory=old_memory), _deployment(memory=new_memory)
    new["spec"]["replicas"] = 5
    answer = Recorder().reviewer(_policies(mitigations=(_mitigation("Deny"),)))(
        MIT, _review(new, old=old)
    )
    assert answer["response"]["allowed"] is allowed
    if allowed:
        assert answer["response"]["warnings"][0].startswith(review.PREEXISTING_PREFIX)


def test_each_webhook_answers_for_its_own_policy_kind() -> None:
    """The guardrails webhook ignores Mitigation reverts and vice versa."""
    policies = _policies((NO_PRIVILEGED_DENY,), (_mitigation("Deny"),))
    reviewer = Recorder().reviewer(policies)
    obj = _deployment(memory="128Mi")
    assert reviewer(GR, _review(obj))["response"]["allowed"] is True
    assert reviewer(MIT, _review(obj))["response"]["allowed"] is False


def test_internal_error_fails_open_with_a_warning() -> None:
    """An exception inside the review allows the request, warns, and counts as Error."""
    counted: list[tuple[str, str]] = []

    def broken() -> policy.PolicySet:
        raise RuntimeError("index corrupted")

    reviewer = review.Reviewer(policies=broken, on_counted=lambda k, v: counted.append((k, v)))
    answer = reviewer(GR, _review(_deployment(privileged=True)))
    assert answer["response"] == {
        "uid": "7b0b5a4e",
        "allowed": True,
        "warnings": [review.ERROR_WARNING],
    }
    assert counted == [("Deployment", conventions.VERDICT_ERROR)]


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ({"apiVersion": "admission.k8s.io/v1beta1", "kind": "AdmissionReview"}, "expected"),
        ({"apiVersion": review.API_VERSION, "kind": review.KIND}, "request.uid"),
        (
            {"apiVersion": review.API_VERSION, "kind": review.KIND, "request": {"uid": "u"}},
            "request.object",
        ),
    ],
    ids=["v1beta1", "no-request", "no-object"],
)
def test_decode_names_what_is_wrong(body: dict[str, Any], problem: str) -> None:
    """A body that is not an AdmissionReview v1 request raises ReviewError naming the part."""
    with pytest.raises(review.ReviewError, match=problem):
        review.decode(body)


def test_decode_reads_the_request() -> None:
    """decode takes uid, kind, namespace, operation, dryRun, object and oldObject."""
    old = _deployment()
    request = review.decode(_review(_deployment(privileged=True), old=old, dry_run=True))
    assert request == review.Request(
        uid="7b0b5a4e",
        kind="Deployment",
        namespace="shop",
        operation="UPDATE",
        dry_run=True,
        object=_deployment(privileged=True),
        old_object=old,
        resource=("apps", "v1", "deployments"),
    )


def _finding(message: str, *, path: str, preexisting: bool = False) -> policy.Finding:
    return policy.Finding(
        policy=policy.Ref("Guardrail", "g"),
        rule="r",
        path=path,
        expected=None,
        actual=None,
        known_bad=False,
        severity=policy.GUARDRAIL_SEVERITY[policy.Level.WARN],
        level=policy.Level.WARN,
        message=message,
        context=policy.Context(),
        preexisting=preexisting,
    )


LONG_PATH = (
    "spec.template.spec.containers[name=a-rather-long-container-name].securityContext.privileged"
)


ISSUE_PATH = "spec.template.spec.containers[name=web].securityContext.privileged"


@pytest.mark.parametrize(
    ("message", "path", "expected"),
    [
        (
            "Guardrail g, rule r: spec.replicas is 1 (INC-1)",
            "spec.replicas",
            "Guardrail g, rule r: spec.replicas is 1 (INC-1)",
        ),
        (
            f"Guardrail no-privileged, rule not-privileged: {ISSUE_PATH} is true "
            "(known-bad; INC-99, owner platform-sre)",
            ISSUE_PATH,
            "Guardrail no-privileged, rule not-privileged: "
            "...privileged is true (known-bad; INC-99, owner platform-sre)",
        ),
        (
            f"Guardrail no-privileged, rule not-privileged: {LONG_PATH} is true (INC-99)",
            LONG_PATH,
            "Guardrail no-privileged, rule not-privileged: "
            "...securityContext.privileged is true (INC-99)",
        ),
    ],
    ids=["short-kept", "issue-example", "long-container-name"],
)
def test_warning_fits_the_limit(message: str, path: str, expected: str) -> None:
    """A warning keeps short messages whole and shortens a long path from the front."""
    text = review.warning(_finding(message, path=path))
    assert (text, len(text) < review.WARNING_LIMIT) == (expected, True)


def test_warning_truncates_what_still_does_not_fit() -> None:
    """A message too long even with a short path is cut to under 120 characters with `...`."""
    text = review.warning(
        _finding("x" * 300 + " spec.replicas", path="spec.replicas", preexisting=True)
    )
    assert len(text) == review.WARNING_LIMIT - 1
    assert text.startswith(review.PREEXISTING_PREFIX)
    assert text.endswith(review.ELLIPSIS)


def test_warning_is_printable_ascii() -> None:
    """Control characters and non-ASCII never reach kubectl's terminal."""
    assert (
        review.warning(_finding("value is caf\u00e9\n\x1b[31m", path="p")) == "value is caf???[31m"
    )


def test_many_blocking_findings_are_summarised() -> None:
    """More than MESSAGE_FINDINGS blocking findings end with `and N more`."""
    deny = [
        policy.Finding(**{**_finding(f"m{i}", path="p").__dict__, "level": policy.Level.DENY})
        for i in range(review.MESSAGE_FINDINGS + 2)
    ]
    assert review.denial_message(deny) == "m0; m1; m2; m3; m4; and 2 more"


def test_published_policies_take_effect_on_the_next_review() -> None:
    """Without a getter the reviewer uses what was published last; before that it fails open."""
    reviewer = review.Reviewer()
    body = _review(_deployment(privileged=True))
    assert reviewer(GR, body)["response"]["warnings"] == [review.ERROR_WARNING]
    reviewer.publish(_policies((NO_PRIVILEGED_DENY,)))
    assert reviewer(GR, body)["response"]["allowed"] is False
    reviewer.publish(_policies())
    assert reviewer(GR, body)["response"]["allowed"] is True


def _scale_review(replicas: int, old_replicas: int, *, dry_run: bool = False) -> dict[str, Any]:
    def scale(count: int) -> dict[str, Any]:
        spec = {"replicas": count} if count else {}  # Scale omits a zero count
        return {
            "apiVersion": "autoscaling/v1",
            "kind": "Scale",
            "metadata": {"name": "web", "namespace": "shop"},
            "spec": spec,
            "status": {"replicas": old_replicas},
        }

    body = _review(scale(replicas), old=scale(old_replicas), dry_run=dry_run)
    body["request"]["kind"] = {"group": "autoscaling", "version": "v1", "kind": "Scale"}
    body["request"]["subResource"] = "scale"
    return body


SCALE_KINDS = {("apps", "deployments"): "Deployment"}
REPLICAS_FIX = {
    **_mitigation("Deny"),
    "spec": {
        **_mitigation("Deny")["spec"],
        "fields": [{"path": "spec.replicas", "value": 3, "knownBad": [1]}],
    },
}


@pytest.mark.parametrize(("replicas", "allowed"), [(1, False), (0, False), (3, True)])
def test_kubectl_scale_is_reviewed_as_a_change_of_spec_replicas(
    replicas: int, allowed: bool
) -> None:
    """A Scale write that reverts spec.replicas is denied like an edit of the Deployment."""
    rec = Recorder()
    reviewer = rec.reviewer(_policies(mitigations=(REPLICAS_FIX,)))
    reviewer.scale_kinds = SCALE_KINDS
    answer = reviewer(MIT, _scale_review(replicas, 3))
    assert answer["response"]["allowed"] is allowed
    assert rec.counted == [("Deployment", "Allowed" if allowed else "Denied")]


def test_scale_counts_only_findings_on_replicas() -> None:
    """Rules on fields a Scale does not carry never fire on `kubectl scale`."""
    floor = _guardrail("floor", "Deny", name="min", path="spec.replicas", atLeast=2)
    image = _guardrail(
        "pinned", "Deny", name="tag", path="spec.template.spec.containers[0].image", present=True
    )
    reviewer = Recorder().reviewer(_policies((floor, image)))
    reviewer.scale_kinds = SCALE_KINDS
    assert reviewer(GR, _scale_review(2, 3))["response"] == {"uid": "7b0b5a4e", "allowed": True}
    denied = reviewer(GR, _scale_review(1, 3))["response"]
    assert denied["status"]["message"].startswith("Guardrail floor, rule min: spec.replicas")


def test_scale_of_a_resource_keepfix_did_not_register_is_allowed() -> None:
    """Without a known parent kind a Scale write is allowed untouched."""
    reviewer = Recorder().reviewer(_policies(mitigations=(REPLICAS_FIX,)))
    assert reviewer(MIT, _scale_review(1, 3))["response"] == {"uid": "7b0b5a4e", "allowed": True}
