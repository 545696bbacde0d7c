"""The in-memory index of current Mitigations and Guardrails.

The Kopf handlers (`mitigations`, `guardrails`) put what they read here; the
drift pipeline asks which Mitigations cover a changed object; the admission
webhook reads `policy_set()`, a `core.policy.PolicySet` rebuilt lazily after
every change (the same conversion `keepfix gate` uses, so CI and admission
agree).

A `MitigationEntry` is small on purpose: the parsed spec, the resolved
protected fields, the counters that go to status and, per target object,
only its uid and the names of its open Regressions. Target objects are never
kept (10,000 watched objects must fit in 200 MiB).
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Iterator, Mapping
from typing import Any

from keepfix.adapters import watches
from keepfix.api import convert, models
from keepfix.core import diff, policy, windows
from keepfix.handlers import regressions as regressions_

Key = tuple[str, str]


@dataclasses.dataclass
class MitigationEntry:
    """One valid Mitigation as the operator runs it."""

    namespace: str
    name: str
    uid: str
    generation: int
    body: dict[str, Any]
    model: models.Mitigation
    fields: tuple[diff.ProtectedField, ...]
    to_capture: tuple[str, ...]
    stable: list[dict[str, Any]]
    watch_key: watches.WatchKey
    mitigated_at: datetime.datetime
    window: datetime.timedelta
    drifts: int = 0
    rollbacks: int = 0
    regressions: int = 0
    last_regression: str | None = None
    targets: set[str] = dataclasses.field(default_factory=set)
    #: Drifted target uids -> (signature, action) of the drift last recorded.
    drifted: dict[str, tuple[str, str]] = dataclasses.field(default_factory=dict)
    open: dict[str, dict[str, regressions_.Known]] = dataclasses.field(default_factory=dict)
    expired_announced: bool = False
    #: True when this generation is new to the operator (a new or edited Mitigation):
    #: the first check of each object is then an adoption, not a recurrence.
    baseline: bool = False
    #: Objects checked at least once under this generation.
    checked: set[str] = dataclasses.field(default_factory=set)
    #: Drifts acted on whose bookkeeping has not finished yet.
    recording: int = 0
    #: False while discovery does not know the target kind (a CRD not installed yet).
    served: bool = True

    @property
    def spec(self) -> models.MitigationSpec:
        return self.model.spec

    @property
    def watch_until(self) -> datetime.datetime:
        return self.mitigated_at + self.window

    def in_window(self, now: datetime.datetime) -> bool:
        return windows.within(self.mitigated_at, self.window, now)

    @property
    def target_namespace(self) -> str:
        return self.spec.target.namespace or self.namespace

    def covers(self, obj: Mapping[str, Any]) -> bool:
        """Whether `obj` is one of this Mitigation's targets."""
        target = self.spec.target
        meta = obj.get("metadata") or {}
        if obj.get("kind") != target.kind or _group(obj.get("apiVersion")) != _group(
            target.api_version
        ):
            return False
        namespace = meta.get("namespace")
        if namespace and namespace != self.target_namespace:
            return False
        if target.name is not None:
            return bool(meta.get("name") == target.name)
        return target.selector is not None and labels_match(target.selector, meta.get("labels"))


@dataclasses.dataclass
class Registry:
    """Current Mitigations (by namespace/name) and Guardrails (by name)."""

    mitigations: dict[Key, MitigationEntry] = dataclasses.field(default_factory=dict)
    guardrails: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    _policies: dict[Key, policy.MitigationPolicy] = dataclasses.field(default_factory=dict)
    _guardrail_policies: dict[str, policy.GuardrailPolicy] = dataclasses.field(default_factory=dict)
    _policy_set: policy.PolicySet | None = None
    #: Mitigations by target (group, kind, namespace, name or None for a selector), and by
    #: (group, kind): a watch event looks up its few candidates instead of scanning them all.
    _by_target: dict[tuple[str, str, str, str | None], set[Key]] = dataclasses.field(
        default_factory=dict
    )
    _by_kind: dict[tuple[str, str], set[Key]] = dataclasses.field(default_factory=dict)
    _indexed: dict[Key, tuple[tuple[str, str, str, str | None], tuple[str, str]]] = (
        dataclasses.field(default_factory=dict)
    )

    def _unindex(self, key: Key) -> None:
        found = self._indexed.pop(key, None)
        if found is not None:
            self._by_target.get(found[0], set()).discard(key)
            self._by_kind.get(found[1], set()).discard(key)

    def _index(self, key: Key, entry: MitigationEntry) -> None:
        self._unindex(key)
        target = entry.spec.target
        kind = (_group(target.api_version), target.kind)
        exact = (*kind, entry.target_namespace, target.name)
        self._by_target.setdefault(exact, set()).add(key)
        self._by_kind.setdefault(kind, set()).add(key)
        self._indexed[key] = (exact, kind)

    def put_mitigation(self, entry: MitigationEntry) -> None:
        key = (entry.namespace, entry.name)
        self.mitigations[key] = entry
        self._index(key, entry)
        try:
            compiled = convert.mitigation(entry.body, default_namespace=entry.namespace)
        except convert.InvalidPolicy:
            self._policies.pop(key, None)
        else:
            # Admission checks what the operator protects, captured values included
            # (the spec alone has no value for a captured field).
            fields = tuple((f.path, f) for f in entry.fields)
            self._policies[key] = dataclasses.replace(compiled, fields=fields)
        self._policy_set = None

    def pop_mitigation(self, namespace: str, name: str) -> MitigationEntry | None:
        self._policies.pop((namespace, name), None)
        self._policy_set = None
        self._unindex((namespace, name))
        return self.mitigations.pop((namespace, name), None)

    def put_guardrail(
        self, name: str, body: dict[str, Any], compiled: policy.GuardrailPolicy
    ) -> None:
        self.guardrails[name] = body
        self._guardrail_policies[name] = compiled
        self._policy_set = None

    def pop_guardrail(self, name: str) -> None:
        self.guardrails.pop(name, None)
        self._guardrail_policies.pop(name, None)
        self._policy_set = None

    def covering(self, obj: Mapping[str, Any]) -> list[MitigationEntry]:
        """The Mitigations whose target is `obj`."""
        meta = obj.get("metadata") or {}
        kind = (_group(obj.get("apiVersion")), str(obj.get("kind")))
        namespace = meta.get("namespace")
        if namespace:
            keys = self._by_target.get((*kind, namespace, meta.get("name")), set()) | (
                self._by_target.get((*kind, namespace, None), set())
            )
        else:  # cluster-scoped: a Mitigation in any namespace may target it
            keys = self._by_kind.get(kind, set())
        found = (self.mitigations.get(key) for key in sorted(keys))
        return [e for e in found if e is not None and e.covers(obj)]

    def by_watch(self, key: watches.WatchKey) -> Iterator[MitigationEntry]:
        return (e for e in self.mitigations.values() if e.watch_key == key)

    def policy_set(self) -> policy.PolicySet:
        if self._policy_set is None:
            self._policy_set = policy.PolicySet.build(
                self._policies.values(), self._guardrail_policies.values()
            )
        return self._policy_set

    def guardrail_policies(self) -> dict[str, policy.GuardrailPolicy]:
        return dict(self._guardrail_policies)


#: The one registry of this operator process.
current = Registry()


def policy_set() -> policy.PolicySet:
    """The current policies, for the admission webhook (same evaluation as `keepfix gate`)."""
    return current.policy_set()


def reset() -> None:
    """Forget everything (tests, and an operator start in the same process)."""
    global current  # noqa: PLW0603 - the one registry of the process
    current = Registry()


def selector_text(selector: models.LabelSelector) -> str:
    """A label selector in the API's query syntax: `app=web,tier in (a,b),!legacy`."""
    parts = [f"{k}={v}" for k, v in sorted(selector.match_labels.items())]
    for req in selector.match_expressions:
        if req.operator == "In":
            parts.append(f"{req.key} in ({','.join(req.values)})")
        elif req.operator == "NotIn":
            parts.append(f"{req.key} notin ({','.join(req.values)})")
        elif req.operator == "Exists":
            parts.append(req.key)
        else:
            parts.append(f"!{req.key}")
    return ",".join(parts)


def labels_match(selector: models.LabelSelector, labels: Mapping[str, str] | None) -> bool:
    """metav1.LabelSelector semantics; an empty selector matches everything."""
    labels = labels or {}
    if any(labels.get(k) != v for k, v in selector.match_labels.items()):
        return False
    for req in selector.match_expressions:
        has, value = req.key in labels, labels.get(req.key)
        ok = {
            "In": has and value in req.values,
            "NotIn": not has or value not in req.values,
            "Exists": has,
            "DoesNotExist": not has,
        }[req.operator]
        if not ok:
            return False
    return True


def watch_key(
    model: models.Mitigation, namespace: str, namespaced: bool = True
) -> watches.WatchKey:
    """The narrowest stream for a Mitigation's target."""
    target = model.spec.target
    target_ns = (target.namespace or namespace) if namespaced else None
    if target.name is not None:
        return watches.WatchKey(target.api_version, target.kind, target_ns, target.name)
    assert target.selector is not None
    return watches.WatchKey(
        target.api_version, target.kind, target_ns, None, selector_text(target.selector) or None
    )


def _group(api_version: Any) -> str:
    group, _, _ = str(api_version or "").rpartition("/")
    return group
