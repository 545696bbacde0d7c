"""Kubernetes Events (events.k8s.io/v1) with series, as client-go's recorder writes them.

The first occurrence of a (regarding, reason, action, note key) creates an
Event; each repeat within `series_window` (default 6 minutes, as client-go)
patches that Event's `series` (`count`, `lastObservedTime`) instead of
creating another, so a flapping object does not flood the namespace. After
the window, or when the Event is gone (Events expire after an hour), a new
Event starts.

Recording never raises into the caller (except cancellation): a failure is
logged and counted (`failures`, and keepfix_event_failures_total when a
Metrics object is given). Notes are cut to 1 KiB (the API server's limit).
Callers never put secret values in a note: Secret data appears only as a hash.

The series memory is bounded: entries older than the window are dropped and
at most `max_series` are kept.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import datetime
import logging
import secrets
from collections.abc import Callable, Mapping
from typing import Any, Final, Literal

from keepfix.adapters import kube as kube_
from keepfix.adapters import metrics as metrics_
from keepfix.api import conventions

logger = logging.getLogger(__name__)

#: The API server rejects an Event note longer than this (bytes).
NOTE_LIMIT: Final = 1024
#: The API server rejects reason and action longer than this.
FIELD_LIMIT: Final = 128
EVENTS: Final = kube_.Resource("events.k8s.io", "v1", "Event", "events", namespaced=True)
#: Namespace of Events about cluster-scoped objects (client-go's choice).
CLUSTER_EVENT_NAMESPACE: Final = "default"

EventType = Literal["Normal", "Warning"]
_REFERENCE_FIELDS: Final = ("apiVersion", "kind", "namespace", "name", "uid", "resourceVersion")


@dataclasses.dataclass
class _Series:
    namespace: str
    name: str
    count: int
    last: datetime.datetime


def reference(obj: Mapping[str, Any]) -> dict[str, Any]:
    """An ObjectReference for an object (or a reference, returned trimmed as is)."""
    metadata = obj.get("metadata")
    source: Mapping[str, Any] = metadata if isinstance(metadata, Mapping) else obj
    ref = {key: source[key] for key in _REFERENCE_FIELDS if source.get(key)}
    for key in ("apiVersion", "kind"):
        if obj.get(key):
            ref[key] = obj[key]
    ref.pop("resourceVersion", None)
    return ref


def _utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _micro_time(moment: datetime.datetime) -> str:
    return moment.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def cap_note(note: str, limit: int = NOTE_LIMIT) -> str:
    """`note` cut to at most `limit` UTF-8 bytes, ending in `...` when cut."""
    encoded = note.encode()
    if len(encoded) <= limit:
        return note
    return encoded[: limit - 3].decode("utf-8", "ignore") + "..."


class EventRecorder:
    """Writes events.k8s.io/v1 Events for one operator instance.

    `reporting_instance` names this replica (the pod name); `clock` returns
    the current UTC time (tests pass their own); `series_window` is how long
    a repeat joins the previous Event's series.
    """

    def __init__(
        self,
        kube: kube_.Kube,
        *,
        reporting_instance: str,
        reporting_controller: str = conventions.REPORTING_CONTROLLER,
        series_window: datetime.timedelta = datetime.timedelta(minutes=6),
        metrics: metrics_.Metrics | None = None,
        clock: Callable[[], datetime.datetime] = _utcnow,
        max_series: int = 10_000,
    ) -> None:
        self._kube = kube
        self._instance = reporting_instance[:FIELD_LIMIT]
        self._controller = reporting_controller
        self._window = series_window
        self._metrics = metrics
        self._clock = clock
        self._max_series = max_series
        self._series: collections.OrderedDict[tuple[str, ...], _Series] = collections.OrderedDict()
        # One lock per series key, so two concurrent repeats never create two Events.
        self._locks: dict[tuple[str, ...], asyncio.Lock] = {}
        self._users: dict[tuple[str, ...], int] = {}
        self.failures = 0
        self.recorded = 0

    async def record(
        self,
        *,
        regarding: Mapping[str, Any],
        related: Mapping[str, Any] | None = None,
        type: EventType,
        reason: str,
        action: str,
        note: str,
        note_key: str | None = None,
    ) -> dict[str, Any] | None:
        """Record one occurrence; returns the Event written, or None when it failed.

        `regarding` is the object the Event is about (the object itself or an
        ObjectReference: apiVersion, kind, namespace, name, uid); `related` a
        second object (the Mitigation). `note_key` groups repeats whose notes
        differ in detail (default: the note itself). Never raises except on
        cancellation.
        """
        ref = reference(regarding)
        key = (
            ref.get("uid") or f"{ref.get('kind')}/{ref.get('namespace')}/{ref.get('name')}",
            reason,
            action,
            note_key if note_key is not None else note,
        )
        lock = self._locks.setdefault(key, asyncio.Lock())
        self._users[key] = self._users.get(key, 0) + 1
        try:
            async with lock:
                return await self._record(
                    key, ref, related, type=type, reason=reason, action=action, note=note
                )
        except asyncio.CancelledError:
            raise
        except Exception as error:
            self.failures += 1
            if self._metrics is not None:
                self._metrics.event_failures.inc()
            logger.warning(
                "Event failed: reason=%s object=%s/%s error=%s",
                reason,
                ref.get("kind"),
                ref.get("name"),
                error,
            )
            return None
        finally:
            self._users[key] -= 1
            if not self._users[key]:
                del self._users[key], self._locks[key]

    async def _record(
        self,
        key: tuple[str, ...],
        ref: dict[str, Any],
        related: Mapping[str, Any] | None,
        *,
        type: EventType,
        reason: str,
        action: str,
        note: str,
    ) -> dict[str, Any]:
        now = self._clock()
        self._expire(now)
        series = self._series.get(key)
        if series is not None:
            updated = await self._bump(series, now)
            if updated is not None:
                self._series.move_to_end(key)
                self.recorded += 1
                return updated
        body = self._body(ref, related, type=type, reason=reason, action=action, note=note, now=now)
        created = await self._kube.create(EVENTS, body=body)
        self._series[key] = _Series(
            body["metadata"]["namespace"], created["metadata"]["name"], 1, now
        )
        while len(self._series) > self._max_series:
            self._series.popitem(last=False)
        self.recorded += 1
        return created

    async def _bump(self, series: _Series, now: datetime.datetime) -> dict[str, Any] | None:
        """Patch the Event's series; None when the Event is gone."""
        patch = {"series": {"count": series.count + 1, "lastObservedTime": _micro_time(now)}}
        try:
            updated = await self._kube.patch_merge(
                EVENTS, namespace=series.namespace, name=series.name, merge_patch=patch
            )
        except kube_.NotFound:
            return None
        series.count += 1
        series.last = now
        return updated

    def _expire(self, now: datetime.datetime) -> None:
        while self._series:
            oldest = next(iter(self._series.values()))
            if now - oldest.last <= self._window:
                return
            self._series.popitem(last=False)

    def _body(
        self,
        ref: dict[str, Any],
        related: Mapping[str, Any] | None,
        *,
        type: EventType,
        reason: str,
        action: str,
        note: str,
        now: datetime.datetime,
    ) -> dict[str, Any]:
        namespace = ref.get("namespace") or CLUSTER_EVENT_NAMESPACE
        name = f"{ref.get('name', 'object')}.{secrets.token_hex(8)}"
        body: dict[str, Any] = {
            "apiVersion": EVENTS.api_version,
            "kind": EVENTS.kind,
            "metadata": {"name": name, "namespace": namespace},
            "eventTime": _micro_time(now),
            "reportingController": self._controller,
            "reportingInstance": self._instance,
            "action": action[:FIELD_LIMIT],
            "reason": reason[:FIELD_LIMIT],
            "type": type,
            "note": cap_note(note),
            "regarding": ref,
        }
        if related is not None:
            body["related"] = reference(related)
        return body
