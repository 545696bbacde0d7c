"""The gate and admission decision: which Mitigations and Guardrails an object breaks.

`keepfix gate` (CI) and the admission webhook both call `evaluate` on a
`PolicySet`, so a manifest that fails in CI is the object the cluster denies,
with the same message.

A `PolicySet` is an index, never a list walked per object: Mitigations that
name their target are keyed by object identity (group, kind, namespace,
name); selector targets by (group, kind, namespace) and then matched on
labels; Guardrails by each (apiGroup, kind) they match, with `*` buckets for
wildcards. An object therefore costs a handful of dict look-ups plus the work
of the policies that really apply to it.

Reverting a Mitigation: the object targets the Mitigation's target and sets a
protected field to a value other than the stable one. A field the object
leaves out is not a revert (a manifest rarely spells out every field; the
runtime diff handles the live object). The level is the Mitigation's
`admission` (Deny, Warn, Off -> Audit), the severity the one the operator
would give the drift inside its watch window.

Breaking a Guardrail: `core.rules.matches` selects the object and each
violation of `core.rules.evaluate` is a finding at the Guardrail's
`enforcement` level, with severity High for Deny, Medium for Warn, Low for
Audit. With `old` (an admission UPDATE), a Guardrail violation the old object
already had is marked `preexisting`: it no longer `blocks`, so an unrelated
edit of a legacy object is not refused.

An object without a namespace is taken to be in `default_namespace`, as
`kubectl apply` and `helm install` would put it, unless its kind is a known
cluster-scoped kind (`CLUSTER_SCOPED`) or `default_namespace` is "" (what the
webhook passes for a cluster-scoped request). An object with no namespace
matches Mitigations on its group, kind and name in any namespace, since a
Mitigation's target namespace means nothing for a cluster-scoped kind.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from keepfix.core import diff, redaction, rules, scoring

#: Pointer prefixes of a Secret's values, which findings show only as hashes.
SECRET_DATA = redaction.SECRET_DATA
KIND_MITIGATION = "Mitigation"
KIND_GUARDRAIL = "Guardrail"
WILDCARD = "*"

#: Built-in kinds that have no namespace, by (group, kind).
CLUSTER_SCOPED: frozenset[tuple[str, str]] = frozenset(
    {
        ("", "Namespace"),
        ("", "Node"),
        ("", "PersistentVolume"),
        ("rbac.authorization.k8s.io", "ClusterRole"),
        ("rbac.authorization.k8s.io", "ClusterRoleBinding"),
        ("storage.k8s.io", "StorageClass"),
        ("storage.k8s.io", "CSIDriver"),
        ("storage.k8s.io", "CSINode"),
        ("storage.k8s.io", "VolumeAttachment"),
        ("apiextensions.k8s.io", "CustomResourceDefinition"),
        ("apiregistration.k8s.io", "APIService"),
        ("admissionregistration.k8s.io", "ValidatingWebhookConfiguration"),
        ("admissionregistration.k8s.io", "MutatingWebhookConfiguration"),
        ("admissionregistration.k8s.io", "ValidatingAdmissionPolicy"),
        ("admissionregistration.k8s.io", "ValidatingAdmissionPolicyBinding"),
        ("scheduling.k8s.io", "PriorityClass"),
        ("networking.k8s.io", "IngressClass"),
        ("node.k8s.io", "RuntimeClass"),
        ("policy", "PodSecurityPolicy"),
        ("certificates.k8s.io", "CertificateSigningRequest"),
        ("flowcontrol.apiserver.k8s.io", "FlowSchema"),
        ("flowcontrol.apiserver.k8s.io", "PriorityLevelConfiguration"),
        ("keepfix.dev", "Guardrail"),
        ("keepfix.dev", "AlertRoute"),
    }
)


class Level(enum.IntEnum):
    """How a finding is enforced; the integer order is the order of strictness."""

    AUDIT = 0
    WARN = 1
    DENY = 2

    @property
    def label(self) -> str:
        """`Audit`, `Warn` or `Deny`, as in the API and the gate's JSON."""
        return self.name.capitalize()

    @classmethod
    def from_admission(cls, admission: str) -> Level:
        """A Mitigation's `admission`: Deny, Warn, or Off (-> Audit: reported, never enforced)."""
        return {"Deny": cls.DENY, "Warn": cls.WARN, "Off": cls.AUDIT}[admission]

    @classmethod
    def from_enforcement(cls, enforcement: str) -> Level:
        """A Guardrail's `enforcement`: Deny, Warn or Audit."""
        return {"Deny": cls.DENY, "Warn": cls.WARN, "Audit": cls.AUDIT}[enforcement]


#: The severity of a Guardrail violation, by level.
GUARDRAIL_SEVERITY: Mapping[Level, scoring.Severity] = {
    Level.DENY: scoring.Severity.HIGH,
    Level.WARN: scoring.Severity.MEDIUM,
    Level.AUDIT: scoring.Severity.LOW,
}


@dataclass(frozen=True)
class Ref:
    """A policy or object by kind and name; `namespace` is None when cluster-scoped."""

    kind: str
    name: str
    namespace: str | None = None
    api_version: str = ""

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}" if self.namespace else self.name


@dataclass(frozen=True)
class Context:
    """What a person needs next to a finding: incident id, owning team, runbook."""

    incident: str | None = None
    owner: str | None = None
    runbook: str | None = None


@dataclass(frozen=True)
class MitigationPolicy:
    """A Mitigation reduced to what the gate checks.

    Exactly one of `target_name` and `selector` is set; `selector` is a
    `rules.Match` restricted to the target's kind and namespace, whose label
    selector is the Mitigation's. `fields` pairs each protected field's path as
    written with its core form; fields without a stable value (capture) are left
    out, since a manifest cannot be checked against a value nobody declared.
    """

    ref: Ref
    group: str
    kind: str
    namespace: str
    target_name: str | None
    selector: rules.Match | None
    fields: tuple[tuple[str, diff.ProtectedField], ...]
    level: Level
    context: Context = field(default_factory=Context)


@dataclass(frozen=True)
class GuardrailPolicy:
    """A Guardrail reduced to what the gate checks.

    `kinds` lists the (apiGroup, kind) pairs of `match.resources`, `*` allowed
    on either side; it is only the index key, `rules.matches` has the last word.
    """

    ref: Ref
    kinds: tuple[tuple[str, str], ...]
    match: rules.Match
    rules: tuple[rules.Rule, ...]
    level: Level
    context: Context = field(default_factory=Context)


@dataclass(frozen=True)
class Finding:
    """One broken field of one object: what the gate prints and the webhook answers."""

    policy: Ref
    rule: str
    path: str
    expected: Any
    actual: Any
    known_bad: bool
    severity: scoring.Severity
    level: Level
    message: str
    context: Context
    preexisting: bool = False

    @property
    def blocks(self) -> bool:
        """Deny level, and not a violation the object already had before this change."""
        return self.level is Level.DENY and not self.preexisting


_NameKey = tuple[str, str, str, str]
_KindKey = tuple[str, str, str]
_GroupKind = tuple[str, str]


@dataclass(frozen=True)
class PolicySet:
    """Mitigations and Guardrails indexed for `evaluate`; build it with `PolicySet.build`."""

    by_name: Mapping[_NameKey, tuple[MitigationPolicy, ...]]
    by_selector: Mapping[_KindKey, tuple[MitigationPolicy, ...]]
    guardrails: Mapping[_GroupKind, tuple[tuple[int, GuardrailPolicy], ...]]
    mitigation_count: int = 0
    guardrail_count: int = 0
    #: Guardrails by (group, kind, namespace): a Guardrail that names `namespaces` sits
    #: under each of them, one that names none under `*`. Namespaced objects look here.
    scoped: Mapping[_KindKey, tuple[tuple[int, GuardrailPolicy], ...]] = field(default_factory=dict)
    #: Mitigations by (group, kind, name) and, for selectors, by (group, kind), whatever
    #: their namespace: what an object without a namespace (cluster-scoped) matches.
    any_namespace_by_name: Mapping[_KindKey, tuple[MitigationPolicy, ...]] = field(
        default_factory=dict
    )
    any_namespace_by_selector: Mapping[_GroupKind, tuple[MitigationPolicy, ...]] = field(
        default_factory=dict
    )

    @classmethod
    def build(
        cls, mitigations: Iterable[MitigationPolicy], guardrails: Iterable[GuardrailPolicy]
    ) -> PolicySet:
        """Index the policies; order within a bucket is the order given."""
        by_name: dict[_NameKey, list[MitigationPolicy]] = {}
        by_selector: dict[_KindKey, list[MitigationPolicy]] = {}
        any_name: dict[_KindKey, list[MitigationPolicy]] = {}
        any_selector: dict[_GroupKind, list[MitigationPolicy]] = {}
        mitigation_count = 0
        for m in mitigations:
            mitigation_count += 1
            namespace = _scoped_namespace(m.group, m.kind, m.namespace)
            if m.target_name is not None:
                by_name.setdefault((m.group, m.kind, namespace, m.target_name), []).append(m)
                any_name.setdefault((m.group, m.kind, m.target_name), []).append(m)
            else:
                by_selector.setdefault((m.group, m.kind, namespace), []).append(m)
                any_selector.setdefault((m.group, m.kind), []).append(m)
        by_kind: dict[_GroupKind, list[tuple[int, GuardrailPolicy]]] = {}
        scoped: dict[_KindKey, list[tuple[int, GuardrailPolicy]]] = {}
        order = 0
        for order, g in enumerate(guardrails, start=1):
            for group, kind in dict.fromkeys(g.kinds):
                by_kind.setdefault((group, kind), []).append((order, g))
                for namespace in g.match.namespaces or (WILDCARD,):
                    scoped.setdefault((group, kind, namespace), []).append((order, g))
        return cls(
            by_name={k: tuple(v) for k, v in by_name.items()},
            by_selector={k: tuple(v) for k, v in by_selector.items()},
            guardrails={k: tuple(v) for k, v in by_kind.items()},
            mitigation_count=mitigation_count,
            guardrail_count=order,
            scoped={k: tuple(v) for k, v in scoped.items()},
            any_namespace_by_name={k: tuple(v) for k, v in any_name.items()},
            any_namespace_by_selector={k: tuple(v) for k, v in any_selector.items()},
        )


def group_of(api_version: str) -> str:
    """`apps/v1` -> `apps`; `v1` -> `` (the core group)."""
    group, _sep, _version = api_version.rpartition("/")
    return group


def object_ref(obj: Mapping[str, Any], *, default_namespace: str = "default") -> Ref:
    """The identity `evaluate` matches on: a missing namespace reads as `default_namespace`."""
    api_version = str(obj.get("apiVersion") or "")
    kind = str(obj.get("kind") or "")
    metadata = obj.get("metadata")
    metadata = metadata if isinstance(metadata, Mapping) else {}
    namespace = metadata.get("namespace") or default_namespace
    scoped = _scoped_namespace(group_of(api_version), kind, str(namespace))
    return Ref(
        kind=kind,
        name=str(metadata.get("name") or ""),
        namespace=scoped or None,
        api_version=api_version,
    )


def evaluate(
    policies: PolicySet,
    manifest: Mapping[str, Any],
    *,
    old: Mapping[str, Any] | None = None,
    default_namespace: str = "default",
) -> tuple[Finding, ...]:
    """Every finding of `manifest`: Mitigation reverts first, then Guardrail violations."""
    ref = object_ref(manifest, default_namespace=default_namespace)
    obj = _with_namespace(manifest, ref.namespace)
    group = group_of(ref.api_version)
    findings = [f for m in _mitigations_for(policies, obj, ref, group) for f in _reverts(m, obj)]
    guardrail_findings = _guardrail_findings(policies, obj, group, ref)
    if guardrail_findings and old is not None:
        before = _guardrail_findings(policies, _with_namespace(old, ref.namespace), group, ref)
        guardrail_findings = _mark_preexisting(guardrail_findings, before)
    return (*findings, *guardrail_findings)


def blocks(findings: Iterable[Finding]) -> bool:
    """True when any finding must stop the change."""
    return any(f.blocks for f in findings)


def _scoped_namespace(group: str, kind: str, namespace: str) -> str:
    return "" if (group, kind) in CLUSTER_SCOPED else namespace


def _with_namespace(obj: Mapping[str, Any], namespace: str | None) -> Mapping[str, Any]:
    # Guardrail namespace matching reads metadata.namespace: give a manifest the
    # namespace it will land in, without copying anything when it has one.
    metadata = obj.get("metadata")
    if not namespace or (isinstance(metadata, Mapping) and metadata.get("namespace")):
        return obj
    base = dict(metadata) if isinstance(metadata, Mapping) else {}
    return {**obj, "metadata": {**base, "namespace": namespace}}


def _mitigations_for(
    policies: PolicySet, obj: Mapping[str, Any], ref: Ref, group: str
) -> list[MitigationPolicy]:
    if ref.namespace is None:
        named = policies.any_namespace_by_name.get((group, ref.kind, ref.name), ())
        selecting = policies.any_namespace_by_selector.get((group, ref.kind), ())
    else:
        named = policies.by_name.get((group, ref.kind, ref.namespace, ref.name), ())
        selecting = policies.by_selector.get((group, ref.kind, ref.namespace), ())
    found = list(named)
    for m in selecting:
        if m.selector is not None and rules.matches(m.selector, obj):
            found.append(m)
    return found


def _reverts(m: MitigationPolicy, obj: Mapping[str, Any]) -> list[Finding]:
    drifted: list[tuple[str, diff.Drift]] = []
    for declared, protected in m.fields:
        drifted.extend((declared, d) for d in diff.diff((protected,), obj) if d.present)
    if not drifted:
        return []
    severity = scoring.severity([d for _, d in drifted], in_window=True, repeat=False)
    if obj.get("kind") == "Secret":
        drifted = [(declared, _redacted(d)) for declared, d in drifted]
    return [
        Finding(
            policy=m.ref,
            rule=declared,
            path=d.path,
            expected=d.expected,
            actual=d.actual,
            known_bad=d.known_bad,
            severity=severity,
            level=m.level,
            message=_revert_message(m, d),
            context=m.context,
        )
        for declared, d in drifted
    ]


def _redacted(d: diff.Drift) -> diff.Drift:
    # Secret data never reaches a CI log or a denial: only its hash, as core.rules does.
    if not redaction.is_secret_data(d.pointer):
        return d
    return dataclasses.replace(d, expected=_hash(d.expected), actual=_hash(d.actual))


def _hash(value: Any) -> str | None:
    if value is None:
        return None
    return redaction.redact(value)


def _revert_message(m: MitigationPolicy, d: diff.Drift) -> str:
    expected = "absent" if d.expected is None else render(d.expected)
    bad = " (known-bad)" if d.known_bad else ""
    where = "".join(f", {part}" for part in _context_parts(m.context))
    return (
        f"{d.path}={render(d.actual)} reverts Mitigation {m.ref}{bad}{where}: expected {expected}"
    )


def _guardrails_for(
    policies: PolicySet, group: str, kind: str, namespace: str | None
) -> list[GuardrailPolicy]:
    kinds = ((group, kind), (group, WILDCARD), (WILDCARD, kind), (WILDCARD, WILDCARD))
    if namespace is None:
        # Cluster-scoped objects are not filtered by namespaces: every bucket of the kind.
        buckets = [policies.guardrails.get(key, ()) for key in kinds]
    else:
        buckets = [
            policies.scoped.get((g, k, ns), ()) for g, k in kinds for ns in (namespace, WILDCARD)
        ]
    hits = [hit for bucket in buckets if bucket for hit in bucket]
    if sum(1 for b in buckets if b) <= 1:
        return [g for _, g in hits]
    return [g for _, g in sorted(dict(hits).items())]


def _guardrail_findings(
    policies: PolicySet, obj: Mapping[str, Any], group: str, ref: Ref
) -> list[Finding]:
    findings: list[Finding] = []
    for g in _guardrails_for(policies, group, ref.kind, ref.namespace):
        if not rules.matches(g.match, obj):
            continue
        findings.extend(_violation_finding(g, v) for v in rules.evaluate(g.rules, obj))
    return findings


def _violation_message(g: GuardrailPolicy, v: rules.Violation) -> str:
    """`Guardrail G, rule R: PATH is true (known-bad; INC-99, owner T): the rule's message`."""
    where = ", ".join(_context_parts(g.context))
    reason = v.reason
    if where:
        tag = "(known-bad)"
        reason = (
            f"{reason[: -len(tag)]}(known-bad; {where})"
            if reason.endswith(tag)
            else (f"{reason} ({where})")
        )
    said = v.message.removeprefix(f"{v.path} {v.reason}")
    return f"Guardrail {g.ref}, rule {v.rule}: {v.path} {reason}{said}"


def _violation_finding(g: GuardrailPolicy, v: rules.Violation) -> Finding:
    return Finding(
        policy=g.ref,
        rule=v.rule,
        path=v.path,
        expected=v.expected,
        actual=v.actual,
        known_bad=v.known_bad,
        severity=GUARDRAIL_SEVERITY[g.level],
        level=g.level,
        message=_violation_message(g, v),
        context=g.context,
    )


def _mark_preexisting(new: list[Finding], before: list[Finding]) -> list[Finding]:
    seen = {(f.policy, f.rule, f.path) for f in before}
    return [
        dataclasses.replace(f, preexisting=True) if (f.policy, f.rule, f.path) in seen else f
        for f in new
    ]


def _context_parts(context: Context) -> tuple[str, ...]:
    owner = f"owner {context.owner}" if context.owner else ""
    return tuple(p for p in (context.incident, owner) if p)


def render(value: Any) -> str:
    """A value as a person reads it in a one-line message: strings bare, the rest as JSON."""
    if isinstance(value, str):
        return value
    return rules.compact_json(value)


def applicable(
    policies: PolicySet, manifest: Mapping[str, Any], *, default_namespace: str = "default"
) -> tuple[Ref, ...]:
    """The policies that apply to `manifest`, broken or not (for reports that list passes)."""
    ref = object_ref(manifest, default_namespace=default_namespace)
    obj = _with_namespace(manifest, ref.namespace)
    group = group_of(ref.api_version)
    refs = [m.ref for m in _mitigations_for(policies, obj, ref, group)]
    candidates = _guardrails_for(policies, group, ref.kind, ref.namespace)
    refs.extend(g.ref for g in candidates if rules.matches(g.match, obj))
    return tuple(dict.fromkeys(refs))
