"""Regression records: one per (Mitigation, target object, signature).

The name is deterministic (`<mitigation>-<10 hex>`, the hex from the
signature and the target's namespace/name), so an operator restarted in the
middle of a stream of drifts finds the Regression it wrote before instead of
writing a second one. A recurrence of the same signature bumps `occurrences`
and `lastSeen`, reopens a Resolved one and appends to `status.history`
(the latest `models.MAX_HISTORY` entries).

Lifecycle: `Open` from the drift until the target is back at its stable
state (a rollback, or a person fixing it after an alert), then `Resolved`
with `resolvedAt` and `resolutionSeconds` counted from `lastSeen`.

Secret data never reaches a Regression: for a Secret target every value is
replaced by `redact(value)` (`sha256:<12 hex>`) before anything is written.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import json
import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from keepfix.adapters import kube
from keepfix.api import conventions, models

logger = logging.getLogger(__name__)

REGRESSIONS = kube.keepfix_resource(conventions.PLURAL_REGRESSIONS)
#: Longest Regression name (a label value must fit, too).
MAX_NAME = 63
_HEX = 10
_UNSAFE = re.compile(r"[^a-z0-9-]+")


@dataclasses.dataclass(frozen=True)
class Occurrence:
    """One drift of one target, as the Regression records it (values already redacted)."""

    signature: str
    severity: str
    action: str
    drift: tuple[Mapping[str, Any], ...]
    changed_by: tuple[Mapping[str, Any], ...]
    time: datetime.datetime


@dataclasses.dataclass
class Known:
    """What the operator remembers of one Regression between events (small on purpose)."""

    name: str
    target_uid: str
    state: str
    last_seen: datetime.datetime
    occurrences: int


def name_for(mitigation: str, signature: str, namespace: str | None, target: str) -> str:
    """`<mitigation>-<10 hex>`, DNS-safe and at most 63 characters."""
    digest = hashlib.sha256(f"{signature}|{namespace or ''}/{target}".encode()).hexdigest()
    stem = _UNSAFE.sub("-", mitigation.lower()).strip("-")[: MAX_NAME - _HEX - 1].rstrip("-")
    return f"{stem or 'regression'}-{digest[:_HEX]}"


def label_value(text: str) -> str:
    """A label value for `text`: itself when it fits, else a prefix and a hash."""
    if len(text) <= 63 and re.fullmatch(r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]", text):
        return text
    digest = hashlib.sha256(text.encode()).hexdigest()[:8]
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "-", text)[:54].strip("-_.")
    return f"{stem}-{digest}" if stem else digest


def redact(value: Any) -> str:
    """`sha256:<first 12 hex>` of a value: how Secret data appears anywhere keepfix writes."""
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()[:12]


def is_secret(api_version: str, kind: str) -> bool:
    """True for core/v1 Secrets, whose values keepfix never writes anywhere."""
    return kind == "Secret" and "/" not in api_version


def now() -> datetime.datetime:
    """The current time in UTC (written to the API to the second, see `rfc3339`)."""
    return datetime.datetime.now(datetime.UTC)


def rfc3339(moment: datetime.datetime) -> str:
    """`2026-12-04T20:00:00Z`."""
    return moment.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str | None) -> datetime.datetime | None:
    """An RFC 3339 time from the API, or None."""
    if not text:
        return None
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))


def build(
    *,
    name: str,
    mitigation: Mapping[str, Any],
    target: Mapping[str, Any],
    occurrence: Occurrence,
) -> dict[str, Any]:
    """The body of a new Regression (spec only: status goes through its subresource)."""
    meta = mitigation["metadata"]
    spec = mitigation.get("spec") or {}
    owner = spec.get("owner") or {}
    labels = {
        conventions.LABEL_MITIGATION: label_value(meta["name"]),
        conventions.LABEL_SEVERITY: occurrence.severity,
        conventions.LABEL_MANAGED_BY: conventions.MANAGED_BY_VALUE,
    }
    if owner.get("team"):
        labels[conventions.LABEL_TEAM] = label_value(str(owner["team"]))
    when = rfc3339(occurrence.time)
    body_spec: dict[str, Any] = {
        "mitigation": {"name": meta["name"], "uid": meta.get("uid")},
        "target": target_ref(target),
        "severity": occurrence.severity,
        "category": spec.get("category") or "ConfigDrift",
        "signature": occurrence.signature,
        "drift": list(occurrence.drift),
        "changedBy": list(occurrence.changed_by),
        "firstSeen": when,
        "lastSeen": when,
        "occurrences": 1,
    }
    for key in ("incident", "fix", "owner", "runbook"):
        if spec.get(key):
            body_spec[key] = spec[key]
    return {
        "apiVersion": conventions.API_VERSION,
        "kind": conventions.KIND_REGRESSION,
        "metadata": {
            "name": name,
            "namespace": meta["namespace"],
            "labels": labels,
            "ownerReferences": [
                {
                    "apiVersion": conventions.API_VERSION,
                    "kind": conventions.KIND_MITIGATION,
                    "name": meta["name"],
                    "uid": meta["uid"],
                }
            ],
        },
        "spec": body_spec,
    }


def target_ref(target: Mapping[str, Any]) -> dict[str, Any]:
    """apiVersion, kind, namespace, name and uid of an object."""
    meta = target.get("metadata") or {}
    ref = {
        "apiVersion": target.get("apiVersion"),
        "kind": target.get("kind"),
        "name": meta.get("name"),
        "uid": meta.get("uid"),
    }
    if meta.get("namespace"):
        ref["namespace"] = meta["namespace"]
    return ref


def history_entry(occurrence: Occurrence) -> dict[str, Any]:
    """One `status.history` item."""
    return {
        "time": rfc3339(occurrence.time),
        "severity": occurrence.severity,
        "action": occurrence.action,
        "drift": [{"path": d["path"], "actual": d.get("actual")} for d in occurrence.drift],
    }


def capped(history: Sequence[Mapping[str, Any]], entry: Mapping[str, Any]) -> list[Any]:
    """`history` plus `entry`, keeping the newest `models.MAX_HISTORY`."""
    return [*history, entry][-models.MAX_HISTORY :]


def open_status(occurrence: Occurrence, history: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The status of a Regression that has just (re)occurred."""
    return {
        "state": conventions.STATE_OPEN,
        "action": occurrence.action,
        "resolvedAt": None,
        "resolutionSeconds": None,
        "history": capped(history, history_entry(occurrence)),
        "conditions": [
            _condition(conventions.CONDITION_RESOLVED, "False", "Drifted", occurrence.time)
        ],
    }


def resolved_status(last_seen: datetime.datetime, at: datetime.datetime) -> dict[str, Any]:
    """The status of a Regression whose target is back at its stable state."""
    return {
        "state": conventions.STATE_RESOLVED,
        "resolvedAt": rfc3339(at),
        "resolutionSeconds": round(max(0.0, (at - last_seen).total_seconds()), 3),
        "conditions": [_condition(conventions.CONDITION_RESOLVED, "True", "BackAtStable", at)],
    }


def _condition(kind: str, status: str, reason: str, at: datetime.datetime) -> dict[str, Any]:
    return {"type": kind, "status": status, "reason": reason, "lastTransitionTime": rfc3339(at)}


async def record(
    client: kube.Kube,
    *,
    mitigation: Mapping[str, Any],
    target: Mapping[str, Any],
    occurrence: Occurrence,
) -> tuple[Known, bool]:
    """Create the Regression or bump it; returns it and whether it was opened just now.

    "Opened" means created, or reopened from Resolved: the Mitigation counts those.
    """
    meta = mitigation["metadata"]
    target_meta = target.get("metadata") or {}
    name = name_for(
        meta["name"], occurrence.signature, target_meta.get("namespace"), target_meta["name"]
    )
    namespace = meta["namespace"]
    existing = await client.get(REGRESSIONS, namespace=namespace, name=name)
    if existing is None:
        body = build(name=name, mitigation=mitigation, target=target, occurrence=occurrence)
        try:
            await client.create(REGRESSIONS, body=body)
        except kube.AlreadyExists:
            existing = await client.get(REGRESSIONS, namespace=namespace, name=name)
        else:
            await client.patch_status(
                REGRESSIONS,
                namespace=namespace,
                name=name,
                merge_patch={"status": open_status(occurrence, ())},
            )
            known = Known(
                name, target_meta.get("uid", ""), conventions.STATE_OPEN, occurrence.time, 1
            )
            return known, True
    assert existing is not None
    return await _bump(client, existing, occurrence, target_meta.get("uid", ""))


async def _bump(
    client: kube.Kube, existing: Mapping[str, Any], occurrence: Occurrence, target_uid: str
) -> tuple[Known, bool]:
    meta = existing["metadata"]
    status = existing.get("status") or {}
    was_open = status.get("state") == conventions.STATE_OPEN
    occurrences = int((existing.get("spec") or {}).get("occurrences") or 1) + 1
    when = rfc3339(occurrence.time)
    await client.patch_merge(
        REGRESSIONS,
        namespace=meta["namespace"],
        name=meta["name"],
        merge_patch={
            "metadata": {"labels": {conventions.LABEL_SEVERITY: occurrence.severity}},
            "spec": {
                "severity": occurrence.severity,
                "lastSeen": when,
                "occurrences": occurrences,
                "drift": list(occurrence.drift),
                "changedBy": list(occurrence.changed_by),
            },
        },
    )
    await client.patch_status(
        REGRESSIONS,
        namespace=meta["namespace"],
        name=meta["name"],
        merge_patch={"status": open_status(occurrence, status.get("history") or [])},
    )
    known = Known(meta["name"], target_uid, conventions.STATE_OPEN, occurrence.time, occurrences)
    return known, not was_open


async def resolve(
    client: kube.Kube, *, namespace: str, known: Known, at: datetime.datetime
) -> float | None:
    """Mark a Regression Resolved; the resolution seconds, or None if it is gone."""
    status = resolved_status(known.last_seen, at)
    try:
        await client.patch_status(
            REGRESSIONS, namespace=namespace, name=known.name, merge_patch={"status": status}
        )
    except kube.NotFound:
        return None
    known.state = conventions.STATE_RESOLVED
    seconds: float = status["resolutionSeconds"]
    return seconds


async def load_open(client: kube.Kube, *, namespace: str, mitigation: str) -> list[Known]:
    """The Open Regressions of a Mitigation (after a restart, to resolve them later)."""
    items, _ = await client.list(
        REGRESSIONS,
        namespace=namespace,
        label_selector=f"{conventions.LABEL_MITIGATION}={label_value(mitigation)}",
    )
    return [k for k in (_known(item) for item in items) if k.state == conventions.STATE_OPEN]


def _known(item: Mapping[str, Any]) -> Known:
    spec = item.get("spec") or {}
    status = item.get("status") or {}
    last_seen = parse_time(spec.get("lastSeen")) or now()
    return Known(
        name=item["metadata"]["name"],
        target_uid=str((spec.get("target") or {}).get("uid") or ""),
        state=str(status.get("state") or conventions.STATE_OPEN),
        last_seen=last_seen,
        occurrences=int(spec.get("occurrences") or 1),
    )


def drift_items(drifts: Iterable[Any], *, secret: bool) -> tuple[dict[str, Any], ...]:
    """`spec.drift` items from core Drifts; Secret values become hashes."""
    items = []
    for d in drifts:
        expected = d.expected
        actual = d.actual if d.present else None
        if secret:
            expected = redact(expected) if expected is not None else None
            actual = redact(actual) if actual is not None else None
        items.append(
            {"path": d.path, "expected": expected, "actual": actual, "knownBad": d.known_bad}
        )
    return tuple(items)
