"""AdmissionReview v1 in, AdmissionReview v1 out, decided by `keepfix.core.policy`.

A `Reviewer` is what the HTTPS server calls for each request. It
decodes the review, asks `core.policy.evaluate` (the same function `keepfix
gate` runs, so CI and admission agree) about `request.object` and, on UPDATE,
`request.oldObject`, and answers:

- a finding that `blocks` (Deny level, new with this change) -> `allowed:
  false`, `status.message` = the findings' messages, which kubectl prints
  after `admission webhook "<name>" denied the request: `;
- Warn findings, and Deny findings the old object already had -> allowed, one
  admission warning per finding, each under the API server's 120-character
  advice (`warning`);
- Audit findings -> allowed and counted, silently.

Each webhook (`guardrails.keepfix.dev`, `mitigations.keepfix.dev`) answers
for its own policy kind only, so kubectl names the right one in a denial.

Mitigations on UPDATE: a protected field the old object already had at the
same non-stable value is not a revert made by this change (the drift is
older, and the runtime pipeline owns it): it is reported as a warning, never
denied, like a Guardrail violation of a legacy object. Changing a protected
field to any other non-stable value is a revert.

The request path never awaits and makes no API call: it reads the PolicySet
last published (an in-memory index; see `Reviewer`), and side effects go to
callbacks that only enqueue (`on_prevented`, `on_counted`). A request with `dryRun: true`
gets the same answer with no side effects. Any exception is logged and the
request allowed with a warning: a bug in keepfix must never block a cluster
(`failurePolicy` only governs an unreachable or slow webhook).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Final

from keepfix.api import conventions
from keepfix.core import policy

logger = logging.getLogger(__name__)

API_VERSION: Final = "admission.k8s.io/v1"
KIND: Final = "AdmissionReview"
#: The API server advises warnings of at most 120 characters.
WARNING_LIMIT: Final = 120
#: More blocking findings than this are summarised as "and N more".
MESSAGE_FINDINGS: Final = 5
ELLIPSIS: Final = "..."
PREEXISTING_PREFIX: Final = "Existing: "
ERROR_WARNING: Final = "keepfix webhook failed internally; request allowed (see operator log)"
#: The subresource `kubectl scale` writes, and the one field it carries.
SCALE: Final = "scale"
SCALE_PATH: Final = "spec.replicas"

#: Policy kind each webhook answers for.
WEBHOOK_POLICY_KIND: Final[Mapping[str, str]] = {
    conventions.WEBHOOK_GUARDRAILS: conventions.KIND_GUARDRAIL,
    conventions.WEBHOOK_MITIGATIONS: conventions.KIND_MITIGATION,
}

PolicyGetter = Callable[[], policy.PolicySet]
#: Called once per denying policy of a real (not dry-run) denial.
OnPrevented = Callable[[policy.Ref], None]
#: Called once per real (not dry-run) review with (object kind, verdict).
OnCounted = Callable[[str, str], None]


class ReviewError(ValueError):
    """The body is not an AdmissionReview v1 request this webhook can read."""


@dataclasses.dataclass(frozen=True)
class Request:
    """The parts of AdmissionReview.request a decision needs."""

    uid: str
    kind: str
    namespace: str
    operation: str
    dry_run: bool
    object: Mapping[str, Any]
    old_object: Mapping[str, Any] | None
    #: request.resource as (group, version, resource), and request.subResource.
    resource: tuple[str, str, str] = ("", "", "")
    sub_resource: str = ""
    #: When set, only findings on these paths count (a Scale carries spec.replicas only).
    paths: tuple[str, ...] | None = None


@dataclasses.dataclass(frozen=True)
class Verdict:
    """The answer to one review; `label` is the metric's verdict."""

    allowed: bool
    label: str
    message: str = ""
    warnings: tuple[str, ...] = ()
    denied_by: tuple[policy.Ref, ...] = ()


def decode(body: Mapping[str, Any]) -> Request:
    """The request of an AdmissionReview v1; ReviewError names what is missing."""
    if body.get("apiVersion") != API_VERSION or body.get("kind") != KIND:
        raise ReviewError(f"expected {KIND} {API_VERSION}, got {body.get('kind')!r}")
    request = body.get("request")
    if not isinstance(request, Mapping) or not isinstance(request.get("uid"), str):
        raise ReviewError("request.uid is missing")
    obj = request.get("object")
    if not isinstance(obj, Mapping):
        raise ReviewError("request.object is missing")
    old = request.get("oldObject")
    kind = request.get("kind")
    resource = request.get("resource")
    resource = resource if isinstance(resource, Mapping) else {}
    return Request(
        uid=request["uid"],
        kind=str(kind.get("kind", "")) if isinstance(kind, Mapping) else str(obj.get("kind", "")),
        namespace=str(request.get("namespace") or ""),
        operation=str(request.get("operation") or ""),
        dry_run=bool(request.get("dryRun")),
        object=obj,
        old_object=old if isinstance(old, Mapping) else None,
        resource=(
            str(resource.get("group") or ""),
            str(resource.get("version") or ""),
            str(resource.get("resource") or ""),
        ),
        sub_resource=str(request.get("subResource") or ""),
    )


def from_scale(request: Request, kinds: Mapping[tuple[str, str], str]) -> Request | None:
    """A `scale` subresource request as a change of the parent object's spec.replicas.

    `kubectl scale` writes an autoscaling/v1 Scale, not the Deployment, so the
    policies of the parent kind see an object holding only its name,
    namespace and `spec.replicas`, and only findings on that path count (the
    rest of the object is not in the request). `kinds` maps (group, resource)
    to the parent kind; None when the resource is not one keepfix registered.
    """
    group, version, plural = request.resource
    kind = kinds.get((group, plural))
    if kind is None:
        return None
    api_version = f"{group}/{version}" if group else version
    old = request.old_object
    return dataclasses.replace(
        request,
        kind=kind,
        object=_scaled(request.object, api_version, kind),
        old_object=_scaled(old, api_version, kind) if old is not None else None,
        paths=(SCALE_PATH,),
    )


def _scaled(scale: Mapping[str, Any], api_version: str, kind: str) -> dict[str, Any]:
    metadata = scale.get("metadata")
    metadata = metadata if isinstance(metadata, Mapping) else {}
    spec = scale.get("spec")
    # Scale.spec.replicas is omitted when it is 0 (omitempty).
    replicas = spec.get("replicas", 0) if isinstance(spec, Mapping) else 0
    return {
        "apiVersion": api_version,
        "kind": kind,
        "metadata": {k: metadata[k] for k in ("name", "namespace") if metadata.get(k)},
        "spec": {"replicas": replicas},
    }


def decide(
    policies: policy.PolicySet, request: Request, *, policy_kind: str | None = None
) -> Verdict:
    """The verdict on `request`, for findings of `policy_kind` (None: every kind)."""
    if policy_kind is not None:
        policies = only(policies, policy_kind)
    return verdict(_own(_findings(policies, request), policy_kind, request.paths))


def only(policies: policy.PolicySet, policy_kind: str) -> policy.PolicySet:
    """A PolicySet of only the Mitigations or only the Guardrails of `policies`."""
    if policy_kind == conventions.KIND_MITIGATION:
        buckets = (*policies.by_name.values(), *policies.by_selector.values())
        mitigations = {id(m): m for bucket in buckets for m in bucket}
        return policy.PolicySet.build(mitigations.values(), ())
    ordered = {order: g for bucket in policies.guardrails.values() for order, g in bucket}
    return policy.PolicySet.build((), (ordered[k] for k in sorted(ordered)))


def verdict(findings: Sequence[policy.Finding]) -> Verdict:
    """Deny on a blocking finding; warn for Warn and pre-existing Deny; audit the rest."""
    blocking = [f for f in findings if f.blocks]
    warned = [f for f in findings if not f.blocks and f.level is not policy.Level.AUDIT]
    warnings = tuple(warning(f) for f in warned)
    if blocking:
        return Verdict(
            allowed=False,
            label=conventions.VERDICT_DENIED,
            message=denial_message(blocking),
            warnings=warnings,
            denied_by=tuple(dict.fromkeys(f.policy for f in blocking)),
        )
    if warned:
        return Verdict(allowed=True, label=conventions.VERDICT_WARNED, warnings=warnings)
    if findings:
        return Verdict(allowed=True, label=conventions.VERDICT_AUDITED)
    return Verdict(allowed=True, label=conventions.VERDICT_ALLOWED)


def denial_message(blocking: Sequence[policy.Finding]) -> str:
    """The messages of the blocking findings, `; `-joined, the first few in full."""
    shown = [f.message for f in blocking[:MESSAGE_FINDINGS]]
    rest = len(blocking) - len(shown)
    if rest:
        shown.append(f"and {rest} more")
    return "; ".join(shown)


def warning(finding: policy.Finding) -> str:
    """One admission warning under WARNING_LIMIT characters, printable ASCII."""
    prefix = PREEXISTING_PREFIX if finding.preexisting else ""
    text = prefix + _printable(finding.message)
    if len(text) < WARNING_LIMIT:
        return text
    for keep in (3, 2, 1):
        shorter = text.replace(finding.path, _short_path(finding.path, keep), 1)
        if len(shorter) < WARNING_LIMIT:
            return shorter
    return shorter[: WARNING_LIMIT - 1 - len(ELLIPSIS)] + ELLIPSIS


def response(uid: str, verdict: Verdict) -> dict[str, Any]:
    """The AdmissionReview v1 answer."""
    answer: dict[str, Any] = {"uid": uid, "allowed": verdict.allowed}
    if not verdict.allowed:
        answer["status"] = {"code": 403, "reason": "Forbidden", "message": verdict.message}
    if verdict.warnings:
        answer["warnings"] = list(verdict.warnings)
    return {"apiVersion": API_VERSION, "kind": KIND, "response": answer}


class Reviewer:
    """The review callable the server runs: decode, decide, count, answer; never raises.

    Policies come either from `policies` (a getter asked on every review; the
    per-webhook views are rebuilt when it returns a new set) or, with no
    getter, only from `publish`, which the webhook's sync loop calls on the
    operator's event loop while reviews run on the server's own thread: the
    views are built before one reference swap, so a review never builds
    anything and never sees half a swap.
    """

    def __init__(
        self,
        *,
        policies: PolicyGetter | None = None,
        on_prevented: OnPrevented | None = None,
        on_counted: OnCounted | None = None,
    ) -> None:
        self._policies = policies
        self._on_prevented = on_prevented
        self._on_counted = on_counted
        self._views: tuple[policy.PolicySet | None, Mapping[str, policy.PolicySet]] = (None, {})
        #: (group, resource) -> kind of what is registered, for `scale` requests.
        self.scale_kinds: Mapping[tuple[str, str], str] = {}

    def __call__(self, webhook: str, body: Mapping[str, Any]) -> dict[str, Any]:
        uid = _uid(body)
        try:
            request = decode(body)
            if request.sub_resource == SCALE:
                scaled = from_scale(request, self.scale_kinds)
                if scaled is None:
                    return response(uid, Verdict(allowed=True, label=conventions.VERDICT_ALLOWED))
                request = scaled
            kind = WEBHOOK_POLICY_KIND.get(webhook)
            result = verdict(_own(_findings(self.view(kind), request), kind, request.paths))
        except Exception:
            logger.exception("Admission review failed, request allowed: uid=%s", uid)
            result = Verdict(
                allowed=True, label=conventions.VERDICT_ERROR, warnings=(ERROR_WARNING,)
            )
            self._count(str(_kind(body)), result, dry_run=_dry_run(body))
            return response(uid, result)
        self._count(request.kind, result, dry_run=request.dry_run)
        return response(uid, result)

    @property
    def published(self) -> policy.PolicySet | None:
        """The PolicySet reviews use now (None before the first `publish`)."""
        return self._views[0]

    def publish(self, policies: policy.PolicySet) -> None:
        """Use `policies` from the next review on (views built first, then swapped in)."""
        views = {kind: only(policies, kind) for kind in WEBHOOK_POLICY_KIND.values()}
        self._views = (policies, views)

    def view(self, policy_kind: str | None) -> policy.PolicySet:
        """The current policies of one policy kind (None: all of them)."""
        if self._policies is not None:
            current = self._policies()
            if self._views[0] is not current:
                self.publish(current)
        source, views = self._views
        if source is None:
            raise LookupError("No policies published yet")
        return source if policy_kind is None else views[policy_kind]

    def _count(self, kind: str, result: Verdict, *, dry_run: bool) -> None:
        # Side effects only for real requests; the callbacks only enqueue.
        if dry_run:
            return
        try:
            if self._on_counted is not None:
                self._on_counted(kind, result.label)
            if self._on_prevented is not None:
                for ref in result.denied_by:
                    self._on_prevented(ref)
        except Exception:
            logger.exception("Admission review counting failed")


def _own(
    findings: Sequence[policy.Finding], policy_kind: str | None, paths: tuple[str, ...] | None
) -> Sequence[policy.Finding]:
    return [
        f
        for f in findings
        if (policy_kind is None or f.policy.kind == policy_kind)
        and (paths is None or f.path in paths)
    ]


def _findings(policies: policy.PolicySet, request: Request) -> tuple[policy.Finding, ...]:
    findings = policy.evaluate(
        policies, request.object, old=request.old_object, default_namespace=request.namespace
    )
    if request.old_object is None or not any(_is_mitigation(f) for f in findings):
        return findings
    before = policy.evaluate(policies, request.old_object, default_namespace=request.namespace)
    return tuple(_mark_older_drift(findings, before))


def _mark_older_drift(
    findings: Iterable[policy.Finding], before: Iterable[policy.Finding]
) -> Iterable[policy.Finding]:
    older = {(f.policy, f.path, policy.render(f.actual)) for f in before if _is_mitigation(f)}
    for f in findings:
        if _is_mitigation(f) and (f.policy, f.path, policy.render(f.actual)) in older:
            yield dataclasses.replace(f, preexisting=True)
        else:
            yield f


def _is_mitigation(finding: policy.Finding) -> bool:
    return finding.policy.kind == conventions.KIND_MITIGATION


def _short_path(path: str, keep: int) -> str:
    # Keep the end of a long path: `...containers[name=web].securityContext.privileged`.
    parts = path.split(".")
    return ELLIPSIS + ".".join(parts[-keep:]) if len(parts) > keep else path


def _printable(text: str) -> str:
    return "".join(c if " " <= c <= "~" else "?" for c in text)


def _uid(body: Mapping[str, Any]) -> str:
    request = body.get("request")
    uid = request.get("uid") if isinstance(request, Mapping) else None
    return uid if isinstance(uid, str) else ""


def _kind(body: Mapping[str, Any]) -> str:
    request = body.get("request")
    kind = request.get("kind") if isinstance(request, Mapping) else None
    return str(kind.get("kind", "")) if isinstance(kind, Mapping) else ""


def _dry_run(body: Mapping[str, Any]) -> bool:
    request = body.get("request")
    return bool(request.get("dryRun")) if isinstance(request, Mapping) else False
