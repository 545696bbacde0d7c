"""The drift pipeline: a watched object changed -> diff -> rollback -> Regression.

For every watch event of a target object (fetch), `keepfix.core` decides
(diff, rollback plan, severity, signature, attribution, fights) and this
module applies the result: the guarded JSON patch, the Events, the
Regression, the Mitigation's counters and the metrics.

- One asyncio.Lock per object uid serializes deciding and acting on one
  object (diff, fight window, rollback), so two events never act twice;
  events are handled in tasks so a slow object does not hold up the watch
  stream of the others.
- The rollback goes first (it is what the latency metric measures, from the
  watch event's arrival to the accepted patch). The bookkeeping (Events, the
  Regression, its resolution, the Mitigation's status) runs afterwards in a
  per-object chain of tasks, in order, outside the lock: the next drift's
  rollback never waits for the previous drift's API writes. On 409/422 the
  object is read again and the patch planned again (at most
  `rollback_retries` times); the patch writes only protected fields, each
  behind a `test` op, so a newer write to any other field is never
  overwritten.
- Our own rollback comes back as a MODIFIED event with no drift: it is not
  counted, it resolves the open Regressions instead.
- Fights: `fight_limit` drifts of one object within `fight_span` seconds stop
  the rollbacks (Event FightDetected naming the other manager, Regression
  action Fighting); a retry is scheduled after a backoff that grows x
  `backoff_factor` up to `backoff_cap`; when a retry holds for a whole
  backoff period, rollbacks resume as normal.
- Secrets: values of a Secret target are written only as `sha256:<12 hex>`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from keepfix.adapters import events as events_
from keepfix.adapters import kube as kube_
from keepfix.adapters import metrics as metrics_
from keepfix.adapters import watches as watches_
from keepfix.api import conventions
from keepfix.api import settings as settings_
from keepfix.core import attribution, diff, fights, paths, rollback, scoring
from keepfix.handlers import registry as registry_
from keepfix.handlers import regressions

logger = logging.getLogger(__name__)

MITIGATIONS = kube_.keepfix_resource(conventions.PLURAL_MITIGATIONS)


@dataclasses.dataclass
class ObjectState:
    """What is kept per watched object: a lock, the fight window and resourceVersion."""

    lock: asyncio.Lock = dataclasses.field(default_factory=asyncio.Lock)
    window: fights.FightWindow = dataclasses.field(default_factory=fights.FightWindow)
    fight: fights.FightState | None = None
    retry: asyncio.Task[None] | None = None
    resource_version: int = 0
    #: The tail of this object's bookkeeping chain (Events, Regressions), run in order.
    records: asyncio.Task[None] | None = None


@dataclasses.dataclass
class Outcome:
    """What one drift led to."""

    action: str
    patched: dict[str, Any] | None = None
    reason: str = ""
    seconds: float | None = None


@dataclasses.dataclass(frozen=True)
class Record:
    """One drift's facts, handed from the act phase to the bookkeeping."""

    entry: registry_.MitigationEntry
    obj: dict[str, Any]
    drifts: tuple[diff.Drift, ...]
    outcome: Outcome
    changed_by: tuple[attribution.ChangedBy, ...]
    severity: str
    signature: str
    time: datetime.datetime


class Pipeline:
    """The drift pipeline of one operator process (see the module docstring)."""

    def __init__(
        self,
        *,
        kube: kube_.Kube,
        recorder: events_.EventRecorder,
        metrics: metrics_.Metrics,
        settings: settings_.OperatorSettings,
        registry: registry_.Registry,
    ) -> None:
        self.kube = kube
        self.recorder = recorder
        self.metrics = metrics
        self.settings = settings
        self.registry = registry
        self.objects: dict[str, ObjectState] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._status_tasks: dict[registry_.Key, asyncio.Task[None]] = {}
        self._status_dirty: set[registry_.Key] = set()
        self._status_locks: dict[registry_.Key, asyncio.Lock] = {}

    # ------------------------------------------------------------------ entry points

    async def on_event(self, event: watches_.WatchEvent) -> None:
        """The WatchManager callback: queue the event behind its object's lock."""
        arrived = time.monotonic()
        task = asyncio.create_task(self.handle(event.type, event.object, arrived))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def handle(self, event_type: str, obj: dict[str, Any], arrived: float) -> None:
        """Check one object against every Mitigation that covers it."""
        entries = self.registry.covering(obj)
        meta = obj.get("metadata") or {}
        uid = str(meta.get("uid") or "")
        if event_type == "DELETED":
            self._forget(uid, entries)
            return
        if not entries:
            return
        state = self.objects.setdefault(uid, ObjectState())
        async with state.lock:
            version = _version(meta.get("resourceVersion"))
            if version and version < state.resource_version:
                return  # an event older than what we already handled (our own patch)
            state.resource_version = max(state.resource_version, version)
            for entry in entries:
                try:
                    obj = await self.check(entry, obj, state, arrived)
                    seen = _version((obj.get("metadata") or {}).get("resourceVersion"))
                    state.resource_version = max(state.resource_version, seen)
                except asyncio.CancelledError:
                    raise
                except Exception as error:
                    # A traceback may quote values: never for a Secret.
                    secret = regressions.is_secret(str(obj.get("apiVersion")), str(obj.get("kind")))
                    logger.error(
                        "Drift check failed: mitigation=%s/%s object=%s error=%s",
                        entry.namespace,
                        entry.name,
                        meta.get("name"),
                        type(error).__name__ if secret else error,
                        exc_info=not secret,
                    )

    async def check_all(self, entry: registry_.MitigationEntry) -> None:
        """Check every current target of one Mitigation (after a create, update or resync)."""
        resource = await self.kube.resource_for(entry.watch_key.api_version, entry.watch_key.kind)
        items, _ = await self.kube.list(
            resource,
            namespace=entry.watch_key.namespace if resource.namespaced else None,
            label_selector=entry.watch_key.label_selector,
            field_selector=f"metadata.name={entry.watch_key.name}"
            if entry.watch_key.name
            else None,
        )
        entry.targets = {str(i["metadata"].get("uid")) for i in items}
        await asyncio.gather(*(self.handle("MODIFIED", item, time.monotonic()) for item in items))
        self.schedule_status(entry)

    def _forget(self, uid: str, entries: Sequence[registry_.MitigationEntry]) -> None:
        state = self.objects.pop(uid, None)
        if state is not None and state.retry is not None:
            state.retry.cancel()
        for entry in self.registry.mitigations.values():
            if uid in entry.targets:
                entry.targets.discard(uid)
                entry.drifted.pop(uid, None)
                entry.open.pop(uid, None)
                self.schedule_status(entry)

    # ------------------------------------------------------------------ one object

    async def check(
        self,
        entry: registry_.MitigationEntry,
        obj: dict[str, Any],
        state: ObjectState,
        arrived: float,
    ) -> dict[str, Any]:
        """Diff, act and record for one (Mitigation, object); returns the object as it is now."""
        uid = str(obj["metadata"].get("uid") or "")
        new_target = uid not in entry.targets
        entry.targets.add(uid)
        entry.served = True
        if entry.to_capture:
            await self._capture(entry, obj)
        first = uid not in entry.checked
        entry.checked.add(uid)
        drifts = diff.diff(entry.fields, obj)
        if not drifts:
            self._settled(entry, state, uid, changed=new_target)
            return obj
        if first and entry.baseline:
            return await self._adopt(entry, obj, drifts, arrived)
        return await self._drifted(entry, obj, state, drifts, arrived)

    async def _adopt(
        self,
        entry: registry_.MitigationEntry,
        obj: dict[str, Any],
        drifts: tuple[diff.Drift, ...],
        arrived: float,
    ) -> dict[str, Any]:
        """A new or edited Mitigation meets an object without its fix: apply it, no Regression.

        Nothing recurred (the object never carried these stable values under this
        spec), so there is no Regression and no drift counted; with `action: Rollback`
        the fix is put in place, with `Alert` the object is reported as missing it.
        """
        uid = str(obj["metadata"].get("uid") or "")
        secret = regressions.is_secret(str(obj.get("apiVersion")), str(obj.get("kind")))
        summary = _summary(drifts, secret=secret)
        signature = scoring.signature(
            scoring.kind_key(str(obj.get("apiVersion")), str(obj.get("kind"))), drifts
        )
        if entry.spec.action != "Rollback":
            entry.drifted[uid] = (signature, conventions.ACTION_ALERTED)
            note = f"Object does not carry the fix of Mitigation {entry.name} yet: {summary}"
            await self._event(obj, entry, "Warning", conventions.REASON_FIX_MISSING, "Adopt", note)
            self.schedule_status(entry)
            return obj
        outcome = await self.rollback(entry, obj, drifts, arrived, measure=False)
        if outcome.patched is not None and not diff.diff(entry.fields, outcome.patched):
            note = f"Fix of Mitigation {entry.name} applied: {summary}"
            await self._event(obj, entry, "Normal", conventions.REASON_FIX_APPLIED, "Adopt", note)
            self.schedule_status(entry)
            return outcome.patched
        entry.drifted[uid] = (signature, conventions.ACTION_ROLLBACK_FAILED)
        await self._event(
            obj,
            entry,
            "Warning",
            conventions.REASON_ROLLBACK_FAILED,
            "Adopt",
            f"Fix of Mitigation {entry.name} could not be applied: {outcome.reason}",
        )
        self.schedule_status(entry)
        return outcome.patched or obj

    async def _drifted(
        self,
        entry: registry_.MitigationEntry,
        obj: dict[str, Any],
        state: ObjectState,
        drifts: tuple[diff.Drift, ...],
        arrived: float,
    ) -> dict[str, Any]:
        uid = str(obj["metadata"].get("uid") or "")
        signature = scoring.signature(
            scoring.kind_key(str(obj.get("apiVersion")), str(obj.get("kind"))), drifts
        )
        seen = entry.drifted.get(uid)
        if seen is not None and seen[0] == signature:
            # The same drift, still there (an alert, a fight, a failed rollback, or an
            # unrelated change such as a controller's status update): nothing new to act
            # on or to record. A failed rollback is tried again at the next resync.
            return obj
        now = regressions.now()
        mono = time.monotonic()
        self.metrics.drift_detected.inc()
        entry.drifts += 1
        # keepfix is not excluded: when it is the newest owner of a drifted field, it made
        # the change itself (another Mitigation contradicting this one), and says so.
        changed_by = attribution.attribute_object(obj, [d.pointer for d in drifts])
        severity = scoring.severity(
            drifts, in_window=entry.in_window(now), repeat=entry.regressions + entry.recording > 0
        ).label
        outcome = await self._act(entry, obj, state, drifts, arrived, mono, changed_by)
        current = outcome.patched
        clean = current is not None and not diff.diff(entry.fields, current)
        rolled_back = current is not None and outcome.action == conventions.ACTION_ROLLED_BACK
        if clean or rolled_back:
            entry.drifted.pop(uid, None)
        else:
            entry.drifted[uid] = (signature, outcome.action)
        # The bookkeeping (Events, the Regression, status) runs after the lock is released,
        # in order per object, so the next drift's rollback never waits for it.
        entry.recording += 1
        record = Record(entry, obj, drifts, outcome, tuple(changed_by), severity, signature, now)
        self._then(state, lambda: self._record(record, resolve=clean or rolled_back))
        if rolled_back and not clean:
            # Another protected field was changed between the event and our patch: its
            # own event is older than the patch and will be skipped, so act on it now.
            assert current is not None
            return await self.check(entry, current, state, time.monotonic())
        return current or obj

    async def _record(self, record: Record, *, resolve: bool) -> None:
        """Events, the Regression and the counters of one drift (in the object's chain)."""
        entry, obj, drifts, outcome = record.entry, record.obj, record.drifts, record.outcome
        uid = str(obj["metadata"].get("uid") or "")
        secret = regressions.is_secret(str(obj.get("apiVersion")), str(obj.get("kind")))
        try:
            summary = _summary(drifts, secret=secret)
            await self._event(
                obj,
                entry,
                "Warning",
                conventions.REASON_DRIFT_DETECTED,
                "Detect",
                f"Drift detected: {summary} (Mitigation {entry.name}, severity {record.severity})",
                note_key=summary,
            )
            await self._report(entry, obj, outcome, record.changed_by)
            occurrence = regressions.Occurrence(
                signature=record.signature,
                severity=record.severity,
                action=outcome.action,
                drift=regressions.drift_items(drifts, secret=secret),
                changed_by=tuple(c.to_dict() for c in record.changed_by),
                time=record.time,
            )
            known, opened = await regressions.record(
                self.kube, mitigation=entry.body, target=obj, occurrence=occurrence
            )
            entry.open.setdefault(uid, {})[known.name] = known
            if opened:
                entry.regressions += 1
                team = (entry.spec.owner.team if entry.spec.owner else None) or ""
                self.metrics.regressions.labels(record.severity, entry.spec.category, team).inc()
                await self._event(
                    obj,
                    entry,
                    "Warning",
                    conventions.REASON_REGRESSION_DETECTED,
                    "Record",
                    f"Regression {known.name} recorded: severity {record.severity}, "
                    f"{_incident(entry)}",
                    note_key=known.name,
                )
            entry.last_regression = known.name
            logger.info(
                "Drift handled: mitigation=%s/%s object=%s/%s action=%s severity=%s "
                "regression=%s rollback_ms=%s",
                entry.namespace,
                entry.name,
                obj["metadata"].get("namespace"),
                obj["metadata"].get("name"),
                outcome.action,
                record.severity,
                known.name,
                "-" if outcome.seconds is None else f"{outcome.seconds * 1000:.1f}",
            )
            if resolve:
                await self._resolve_open(entry, uid)
        finally:
            entry.recording -= 1
            self.schedule_status(entry)

    async def _act(  # noqa: PLR0917
        self,
        entry: registry_.MitigationEntry,
        obj: dict[str, Any],
        state: ObjectState,
        drifts: tuple[diff.Drift, ...],
        arrived: float,
        mono: float,
        changed_by: Sequence[attribution.ChangedBy],
    ) -> Outcome:
        s = self.settings
        if entry.spec.action != "Rollback":
            return Outcome(conventions.ACTION_ALERTED)
        state.window = fights.record(state.window, mono, limit=s.fight_limit, span=s.fight_span)
        if state.fight is not None:
            state.fight = fights.drifted(state.fight, mono)
            self._schedule_retry(entry, obj, state)
            return Outcome(conventions.ACTION_FIGHTING)
        if fights.is_fighting(state.window, limit=s.fight_limit):
            state.fight = fights.begin(
                mono, base=s.backoff_base, factor=s.backoff_factor, cap=s.backoff_cap
            )
            self.metrics.fights.inc()
            other = changed_by[0].manager if changed_by else "an unknown writer"
            await self._event(
                obj,
                entry,
                "Warning",
                conventions.REASON_FIGHT_DETECTED,
                "Backoff",
                f"Fight detected: {other} keeps reverting Mitigation {entry.name} "
                f"({len(state.window.timestamps)} drifts within {s.fight_span:g}s); rollbacks "
                f"paused, next try in {state.fight.delay:g}s",
                note_key=other,
            )
            self._schedule_retry(entry, obj, state)
            return Outcome(conventions.ACTION_FIGHTING)
        return await self.rollback(entry, obj, drifts, arrived)

    async def rollback(
        self,
        entry: registry_.MitigationEntry,
        obj: dict[str, Any],
        drifts: tuple[diff.Drift, ...],
        arrived: float,
        *,
        measure: bool = True,
    ) -> Outcome:
        """Put the drifted fields back with a guarded JSON patch; re-plan on 409/422.

        A patch the API server accepts but does not apply (a status field, a field
        a mutating webhook or a controller resets) is a failure, not a rollback.
        """
        meta = obj["metadata"]
        live: dict[str, Any] | None = obj
        reason = ""
        secret = regressions.is_secret(str(obj.get("apiVersion")), str(obj.get("kind")))
        resource = await self.kube.resource_for(str(obj["apiVersion"]), str(obj["kind"]))
        for _ in range(self.settings.rollback_retries):
            assert live is not None
            try:
                plan = rollback.plan(drifts, live)
                patched = await self.kube.json_patch(
                    resource, namespace=meta.get("namespace"), name=meta["name"], ops=plan.patch
                )
            except rollback.RollbackError as error:
                reason = "NoPatch" if secret else f"NoPatch: {error}"
                break
            except kube_.ApiError as error:
                # The API's message may quote the value: for a Secret, only its reason.
                reason = error.reason if secret else f"{error.reason}: {error.message}"
                if not error.replannable and not isinstance(error, kube_.NotFound):
                    break
                live = await self.kube.get(
                    resource, namespace=meta.get("namespace"), name=meta["name"]
                )
                if live is None:
                    reason = "NotFound: the object was deleted"
                    break
                live.setdefault("apiVersion", obj["apiVersion"])
                live.setdefault("kind", obj["kind"])
                drifts = diff.diff(entry.fields, live)
                if not drifts:
                    return Outcome(conventions.ACTION_ROLLED_BACK, patched=live, seconds=None)
                continue
            seconds = time.monotonic() - arrived
            patched.setdefault("apiVersion", obj["apiVersion"])
            patched.setdefault("kind", obj["kind"])
            targeted = {d.pointer for d in drifts}
            kept = [d.path for d in diff.diff(entry.fields, patched) if d.pointer in targeted]
            if kept:
                reason = (
                    "Ignored: the API server accepted the patch but kept "
                    f"{', '.join(kept)} (a status field, or one something else resets)"
                )
                break
            if measure:
                self.metrics.drift_to_rollback_seconds.observe(seconds)
            self.metrics.rollbacks.labels("Succeeded").inc()
            entry.rollbacks += 1
            return Outcome(conventions.ACTION_ROLLED_BACK, patched=patched, seconds=seconds)
        self.metrics.rollbacks.labels("Failed").inc()
        return Outcome(conventions.ACTION_ROLLBACK_FAILED, reason=reason or "retries exhausted")

    async def _report(
        self,
        entry: registry_.MitigationEntry,
        obj: dict[str, Any],
        outcome: Outcome,
        changed_by: Sequence[attribution.ChangedBy],
    ) -> None:
        who = changed_by[0].manager if changed_by else "unknown"
        if outcome.action == conventions.ACTION_ROLLED_BACK and outcome.seconds is not None:
            await self._event(
                obj,
                entry,
                "Normal",
                conventions.REASON_DRIFT_ROLLED_BACK,
                "Rollback",
                f"Drift rolled back to the stable values of Mitigation {entry.name} in "
                f"{outcome.seconds * 1000:.0f} ms (changed by {who})",
                note_key=entry.name,
            )
        elif outcome.action == conventions.ACTION_ROLLBACK_FAILED:
            await self._event(
                obj,
                entry,
                "Warning",
                conventions.REASON_ROLLBACK_FAILED,
                "Rollback",
                f"Rollback failed for Mitigation {entry.name}: {outcome.reason}",
                note_key=entry.name,
            )

    # ------------------------------------------------------------------ settled

    def _settled(
        self, entry: registry_.MitigationEntry, state: ObjectState, uid: str, *, changed: bool
    ) -> None:
        """The object is at its stable state: resolve its open Regressions (in its chain)."""
        was_drifted = entry.drifted.pop(uid, None) is not None
        pending = state.records is not None and not state.records.done()
        if pending or uid in entry.open:
            self._then(state, lambda: self._resolve_open(entry, uid))
        elif changed or was_drifted:
            self.schedule_status(entry)

    async def _resolve_open(self, entry: registry_.MitigationEntry, uid: str) -> None:
        opened = entry.open.pop(uid, {})
        at = regressions.now()
        for known in opened.values():
            seconds = await regressions.resolve(
                self.kube, namespace=entry.namespace, known=known, at=at
            )
            if seconds is not None:
                self.metrics.regression_resolution_seconds.observe(seconds)
                logger.info(
                    "Regression resolved: regression=%s/%s seconds=%.0f",
                    entry.namespace,
                    known.name,
                    seconds,
                )
        self.schedule_status(entry)

    def _then(self, state: ObjectState, work: Callable[[], Awaitable[None]]) -> None:
        """Run `work` after the object's earlier bookkeeping; a failure is logged, not raised."""
        previous = state.records

        async def run() -> None:
            if previous is not None:
                await asyncio.wait({previous})
            try:
                await work()
            except asyncio.CancelledError:
                raise
            except Exception as error:
                logger.warning("Drift bookkeeping failed: error=%s", type(error).__name__)

        task = asyncio.create_task(run())
        state.records = task
        self._tasks.add(task)
        task.add_done_callback(lambda t: self._chain_done(state, t))

    def _chain_done(self, state: ObjectState, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if state.records is task:
            state.records = None  # keep nothing of a finished drift (memory per object)

    # ------------------------------------------------------------------ fights

    def _schedule_retry(
        self, entry: registry_.MitigationEntry, obj: dict[str, Any], state: ObjectState
    ) -> None:
        if state.retry is not None and not state.retry.done():
            return
        state.retry = asyncio.create_task(self._retry_loop(entry, obj, state))

    async def _retry_loop(
        self, entry: registry_.MitigationEntry, obj: dict[str, Any], state: ObjectState
    ) -> None:
        """Retry the rollback on the fight's schedule; an API error only delays the next try."""
        while state.fight is not None:
            try:
                await self._retry_fight(entry, obj, state)
                return
            except asyncio.CancelledError:
                raise
            except Exception as error:
                logger.warning(
                    "Fight retry failed: object=%s error=%s",
                    obj["metadata"].get("name"),
                    type(error).__name__,
                )
                await asyncio.sleep(self.settings.backoff_base)

    async def _retry_fight(
        self, entry: registry_.MitigationEntry, obj: dict[str, Any], state: ObjectState
    ) -> None:
        s = self.settings
        meta = obj["metadata"]
        resource = await self.kube.resource_for(str(obj["apiVersion"]), str(obj["kind"]))
        while state.fight is not None:
            await asyncio.sleep(max(0.0, state.fight.retry_at - time.monotonic()))
            async with state.lock:
                fight = state.fight
                if fight is None:
                    return
                now = time.monotonic()
                if fights.is_over(fight, now):
                    state.fight = None
                    state.window = fights.FightWindow()
                    logger.info("Fight over, rollbacks resumed: object=%s", meta.get("name"))
                    return
                if not fights.may_retry(fight, now):
                    continue
                live = await self.kube.get(
                    resource, namespace=meta.get("namespace"), name=meta["name"]
                )
                if live is None:
                    state.fight = None
                    return
                live.setdefault("apiVersion", obj["apiVersion"])
                live.setdefault("kind", obj["kind"])
                drifts = diff.diff(entry.fields, live)
                if drifts:
                    outcome = await self.rollback(entry, live, drifts, time.monotonic())
                    if outcome.patched is not None:
                        version = _version(outcome.patched["metadata"].get("resourceVersion"))
                        state.resource_version = max(state.resource_version, version)
                        self._settled(entry, state, str(meta.get("uid")), changed=True)
                state.fight = fights.rolled_back(
                    fight,
                    time.monotonic(),
                    base=s.backoff_base,
                    factor=s.backoff_factor,
                    cap=s.backoff_cap,
                )

    # ------------------------------------------------------------------ capture

    async def _capture(self, entry: registry_.MitigationEntry, obj: dict[str, Any]) -> None:
        """Take the stable values of fields without one from this object (once)."""
        captured = []
        secret = regressions.is_secret(str(obj.get("apiVersion")), str(obj.get("kind")))
        for path in entry.to_capture:
            matches = [m for m in paths.resolve(obj, path) if m.present]
            if not matches:
                continue
            value = matches[0].value
            known_bad = next((tuple(f.known_bad) for f in entry.spec.fields if f.path == path), ())
            captured.append(diff.ProtectedField(path, value, known_bad, whole=True))
            shown = regressions.redact(value) if secret else value
            entry.stable.append({"path": path, "value": shown})
        entry.fields = (*entry.fields, *captured)
        entry.to_capture = tuple(p for p in entry.to_capture if p not in {f.path for f in captured})
        if captured:
            self.registry.put_mitigation(entry)  # admission now checks the captured values
        await self.write_status(entry)

    # ------------------------------------------------------------------ status

    def schedule_status(self, entry: registry_.MitigationEntry) -> None:
        """Patch the Mitigation's status soon; changes during a write make one more write."""
        key = (entry.namespace, entry.name)
        self._status_dirty.add(key)
        running = self._status_tasks.get(key)
        if running is not None and not running.done():
            return
        self._status_tasks[key] = asyncio.create_task(self._status_soon(entry))

    async def _status_soon(self, entry: registry_.MitigationEntry) -> None:
        key = (entry.namespace, entry.name)
        while key in self._status_dirty:
            self._status_dirty.discard(key)
            await asyncio.sleep(0)
            try:
                await self.write_status(entry)
            except asyncio.CancelledError:
                raise
            except Exception as error:
                logger.warning(
                    "Mitigation status failed: %s/%s error=%s", entry.namespace, entry.name, error
                )

    async def write_status(self, entry: registry_.MitigationEntry) -> None:
        """Patch the Mitigation's status subresource with the current counters and phase.

        Writes of one Mitigation are serialized and each computes the status when
        its turn comes, so the last write always carries the latest state.
        """
        key = (entry.namespace, entry.name)
        async with self._status_locks.setdefault(key, asyncio.Lock()):
            if self.registry.mitigations.get(key) is not entry:
                return
            await self.kube.patch_status(
                MITIGATIONS,
                namespace=entry.namespace,
                name=entry.name,
                merge_patch={"status": status_of(entry, regressions.now())},
            )

    async def _event(  # noqa: PLR0917
        self,
        obj: Mapping[str, Any],
        entry: registry_.MitigationEntry,
        kind: events_.EventType,
        reason: str,
        action: str,
        note: str,
        *,
        note_key: str | None = None,
    ) -> None:
        await self.recorder.record(
            regarding=dict(obj),
            related=mitigation_ref(entry),
            type=kind,
            reason=reason,
            action=action,
            note=note,
            note_key=note_key,
        )

    async def close(self, *, grace: float = 5.0) -> None:
        """Let started work finish for up to `grace` seconds, then cancel the rest (shutdown)."""
        started = [t for t in (*self._tasks, *self._status_tasks.values()) if not t.done()]
        if started:
            await asyncio.wait(started, timeout=grace)
        pending = [*self._tasks, *self._status_tasks.values()]
        pending += [s.retry for s in self.objects.values() if s.retry is not None]
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)


def phase_of(entry: registry_.MitigationEntry, now: datetime.datetime) -> str:
    """Pending (nothing to watch yet), Drifted, Expired or Watching."""
    if not entry.targets or entry.to_capture:
        return conventions.PHASE_PENDING
    if entry.drifted:
        return conventions.PHASE_DRIFTED
    if not entry.in_window(now):
        return conventions.PHASE_EXPIRED
    return conventions.PHASE_WATCHING


def status_of(entry: registry_.MitigationEntry, now: datetime.datetime) -> dict[str, Any]:
    """The Mitigation status the operator writes."""
    phase = phase_of(entry, now)
    ready = phase in (conventions.PHASE_WATCHING, conventions.PHASE_EXPIRED)
    when = regressions.rfc3339(now)
    conditions = [
        _condition(conventions.CONDITION_VALID, "True", "Valid", "The spec is valid", when, entry),
        _condition(
            conventions.CONDITION_READY,
            "True" if ready else "False",
            phase,
            _ready_message(entry, phase),
            when,
            entry,
        ),
        _condition(
            conventions.CONDITION_DRIFTED,
            "True" if entry.drifted else "False",
            "Drifted" if entry.drifted else "AtStable",
            f"{len(entry.drifted)} of {len(entry.targets)} targets drifted",
            when,
            entry,
        ),
    ]
    return {
        "phase": phase,
        "mitigatedAt": regressions.rfc3339(entry.mitigated_at),
        "watchUntil": regressions.rfc3339(entry.watch_until),
        "stable": entry.stable,
        "targets": len(entry.targets),
        "drifts": entry.drifts,
        "rollbacks": entry.rollbacks,
        "regressions": entry.regressions,
        "lastRegression": entry.last_regression,
        "observedGeneration": entry.generation,
        "conditions": conditions,
    }


def _ready_message(entry: registry_.MitigationEntry, phase: str) -> str:
    if entry.to_capture and entry.targets:
        return "Waiting to capture: " + ", ".join(entry.to_capture)
    if not entry.targets and not entry.served:
        target = entry.spec.target
        return (
            f"The API server does not serve kind {target.kind} in {target.api_version} (yet): "
            "watching starts when it does"
        )
    if not entry.targets:
        return "No target object exists yet"
    if phase == conventions.PHASE_EXPIRED:
        return "The watch window is over: drift is still rolled back, scored Low"
    return f"Watching {len(entry.targets)} target(s)"


def _condition(  # noqa: PLR0917
    kind: str,
    status: str,
    reason: str,
    message: str,
    when: str,
    entry: registry_.MitigationEntry,
) -> dict[str, Any]:
    return {
        "type": kind,
        "status": status,
        "reason": reason,
        "message": message,
        "lastTransitionTime": when,
        "observedGeneration": entry.generation,
    }


def mitigation_ref(entry: registry_.MitigationEntry) -> dict[str, Any]:
    return {
        "apiVersion": conventions.API_VERSION,
        "kind": conventions.KIND_MITIGATION,
        "namespace": entry.namespace,
        "name": entry.name,
        "uid": entry.uid,
    }


def _summary(drifts: Sequence[diff.Drift], *, secret: bool) -> str:
    parts = []
    for d in drifts:
        actual = d.actual if d.present else "absent"
        expected = d.expected
        if secret:
            actual = regressions.redact(actual) if d.present else "absent"
            expected = regressions.redact(expected) if expected is not None else None
        shown = "absent" if expected is None else expected
        bad = " (known-bad)" if d.known_bad else ""
        parts.append(f"{d.path}={_text(actual)}{bad}, expected {_text(shown)}")
    return "; ".join(parts)


def _text(value: Any) -> str:
    import json

    return value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)


def _incident(entry: registry_.MitigationEntry) -> str:
    spec = entry.spec
    parts = []
    if spec.incident and spec.incident.id:
        parts.append(f"incident {spec.incident.id}")
    if spec.owner and spec.owner.team:
        parts.append(f"owner {spec.owner.team}")
    if spec.runbook:
        parts.append(f"runbook {spec.runbook}")
    return ", ".join(parts) or f"Mitigation {entry.name}"


def _version(text: Any) -> int:
    try:
        return int(str(text))
    except (TypeError, ValueError):
        return 0
