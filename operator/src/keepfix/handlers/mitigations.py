"""Mitigation handlers: validate, resolve targets, capture, watch, keep status.

Kopf delivers every event of every Mitigation (`kopf.on.event`): the initial
listing, changes and deletions. The handler keeps the registry in step with
the cluster and is idempotent, so it needs no progress storage, no
last-handled-configuration annotation and no finalizer: deleting a Mitigation
releases its watch when the DELETED event arrives, and there is nothing in the
cluster to clean up (its Regressions are owned by it and garbage-collected).
A status-only change (our own status patch) leaves the entry as it is, by
`metadata.generation`.

An invalid spec (a bad path, a bad duration, a value missing without
capture) gets phase Invalid and a Valid=False condition whose message names
the field; it never raises into Kopf.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
from typing import Any

import kopf

from keepfix.adapters import kube as kube_
from keepfix.api import conventions, convert, models
from keepfix.core import diff, windows
from keepfix.handlers import drift, registry, regressions, runtime

logger = logging.getLogger(__name__)

MITIGATIONS = kube_.keepfix_resource(conventions.PLURAL_MITIGATIONS)
_invalid_seen: dict[registry.Key, tuple[str, int]] = {}
_latest: dict[registry.Key, str] = {}
#: Retry of a Mitigation event that failed on an API error: 0.5 s, doubling, at most 30 s.
RETRY_BASE = 0.5
RETRY_CAP = 30.0


@kopf.on.event(conventions.GROUP, conventions.VERSION, conventions.PLURAL_MITIGATIONS)
async def mitigation_event(event: kopf.RawEvent, **_: Any) -> None:
    """Every Mitigation event: keep the registry, the watches and the status in step."""
    obj: dict[str, Any] = dict(event["object"])
    meta = obj.get("metadata") or {}
    key = (str(meta.get("namespace")), str(meta.get("name")))
    _latest[key] = str(meta.get("resourceVersion"))
    await _apply_or_retry(str(event.get("type") or "") or None, obj, key, attempt=0)


async def _apply_or_retry(
    event_type: str | None, obj: dict[str, Any], key: registry.Key, *, attempt: int
) -> None:
    """Apply; on an API error try again later, unless a newer event came meanwhile."""
    try:
        await apply(event_type, obj)
    except asyncio.CancelledError:
        raise
    except Exception as error:
        delay = min(RETRY_CAP, RETRY_BASE * 2**attempt)
        logger.warning(
            "Mitigation handling failed, retrying: mitigation=%s/%s delay=%.1fs error=%s",
            key[0],
            key[1],
            delay,
            error,
        )
        rt = runtime.get()
        task = asyncio.create_task(_retry_later(event_type, obj, key, attempt + 1, delay))
        rt.background.append(task)
        task.add_done_callback(lambda t: _discard(rt, t))


async def _retry_later(
    event_type: str | None, obj: dict[str, Any], key: registry.Key, attempt: int, delay: float
) -> None:
    await asyncio.sleep(delay)
    if _latest.get(key) != str(obj["metadata"].get("resourceVersion")):
        return  # a newer event of this Mitigation has been handled since
    await _apply_or_retry(event_type, obj, key, attempt=attempt)


async def apply(event_type: str | None, obj: dict[str, Any]) -> None:
    """Register, update or forget one Mitigation."""
    meta = obj.get("metadata") or {}
    key = (str(meta.get("namespace")), str(meta.get("name")))
    if event_type == "DELETED" or meta.get("deletionTimestamp"):
        await forget(key)
        return
    uid = str(meta.get("uid"))
    generation = int(meta.get("generation") or 0)
    known = registry.current.mitigations.get(key)
    if known is not None and known.uid == uid and known.generation == generation:
        return
    if _invalid_seen.get(key) == (uid, generation):
        return
    try:
        convert.mitigation(obj, default_namespace=key[0])
        model = models.Mitigation.model_validate(obj)
        window = windows.parse_duration(model.spec.watch_window)
        _refuse_status_paths(model)
    except (convert.InvalidPolicy, ValueError) as error:
        await invalid(key, uid, generation, error)
        return
    _invalid_seen.pop(key, None)
    entry = build_entry(obj, model, window, previous=known)
    await register(entry, previous=known)


def _refuse_status_paths(model: models.Mitigation) -> None:
    """A `status` field cannot be put back: the API server drops such a patch."""
    errors = [
        f"spec.fields[{i}].path: {f.path} is under status, which controllers write through "
        "the status subresource; keepfix cannot put it back (protect a spec field instead)"
        for i, f in enumerate(model.spec.fields)
        if f.path == "status" or f.path.startswith(("status.", "status[", "/status"))
    ]
    if errors:
        raise convert.InvalidPolicy(errors)


def build_entry(
    obj: dict[str, Any],
    model: models.Mitigation,
    window: datetime.timedelta,
    *,
    previous: registry.MitigationEntry | None,
) -> registry.MitigationEntry:
    """A registry entry from the object, its status and what the operator already knew."""
    meta = obj["metadata"]
    status = obj.get("status") or {}
    namespace = str(meta["namespace"])
    mitigated_at = (
        regressions.parse_time(status.get("mitigatedAt"))
        or regressions.parse_time(meta.get("creationTimestamp"))
        or regressions.now()
    )
    secret = regressions.is_secret(model.spec.target.api_version, model.spec.target.kind)
    captured = {
        s["path"]: s.get("value")
        for s in status.get("stable") or []
        if isinstance(s, dict) and not secret
    }
    fields: list[diff.ProtectedField] = []
    stable: list[dict[str, Any]] = []
    to_capture: list[str] = []
    for f in model.spec.fields:
        if f.has_value:
            fields.append(diff.ProtectedField(f.path, f.value, tuple(f.known_bad)))
            shown = regressions.redact(f.value) if secret and f.value is not None else f.value
            stable.append({"path": f.path, "value": shown})
        elif f.path in captured:
            fields.append(
                diff.ProtectedField(f.path, captured[f.path], tuple(f.known_bad), whole=True)
            )
            stable.append({"path": f.path, "value": captured[f.path]})
        else:
            to_capture.append(f.path)
    entry = registry.MitigationEntry(
        namespace=namespace,
        name=str(meta["name"]),
        uid=str(meta["uid"]),
        generation=int(meta.get("generation") or 0),
        body={"metadata": dict(meta), "spec": obj.get("spec") or {}},
        model=model,
        fields=tuple(fields),
        to_capture=tuple(to_capture),
        stable=stable,
        watch_key=registry.watch_key(model, namespace),
        mitigated_at=mitigated_at,
        window=window,
        drifts=int(status.get("drifts") or 0),
        rollbacks=int(status.get("rollbacks") or 0),
        regressions=int(status.get("regressions") or 0),
        last_regression=status.get("lastRegression"),
        expired_announced=status.get("phase") == conventions.PHASE_EXPIRED,
        # Seen before (a restart): drift found now happened while the operator was away.
        baseline=status.get("observedGeneration") != int(meta.get("generation") or 0),
    )
    if previous is not None and previous.uid == entry.uid:
        entry.drifts, entry.rollbacks = previous.drifts, previous.rollbacks
        entry.regressions, entry.last_regression = previous.regressions, previous.last_regression
        entry.open, entry.expired_announced = previous.open, previous.expired_announced
        # A drift already recorded is not a new one because the spec was edited; the
        # targets stay counted until the check that follows the edit recounts them.
        entry.drifted, entry.targets = previous.drifted, previous.targets
    return entry


async def register(
    entry: registry.MitigationEntry, *, previous: registry.MitigationEntry | None
) -> None:
    """Put the entry in the registry, start (or move) its watch and check its targets."""
    rt = runtime.get()
    if previous is None:
        for known in await regressions.load_open(
            rt.kube, namespace=entry.namespace, mitigation=entry.name
        ):
            entry.open.setdefault(known.target_uid, {})[known.name] = known
    try:
        await rt.kube.resource_for(entry.watch_key.api_version, entry.watch_key.kind)
    except kube_.UnknownKind:
        entry.served = False
    registry.current.put_mitigation(entry)
    shared = rt.watches.references(entry.watch_key) > 0
    if previous is None or previous.watch_key != entry.watch_key:
        await rt.watches.ensure(entry.watch_key)
        if previous is not None:
            await rt.watches.release(previous.watch_key)
    logger.info(
        "Mitigation registered: mitigation=%s/%s target=%s/%s fields=%d",
        entry.namespace,
        entry.name,
        entry.spec.target.kind,
        entry.spec.target.name
        or registry.selector_text(entry.spec.target.selector or models.LabelSelector()),
        len(entry.spec.fields),
    )
    try:
        await rt.pipeline.write_status(entry)
        await announce_expiry(entry)
    except kube_.ApiError as error:
        rt.pipeline.schedule_status(entry)
        logger.warning(
            "Mitigation status failed: mitigation=%s/%s error=%s",
            entry.namespace,
            entry.name,
            error,
        )
    if shared or previous is not None:
        task = asyncio.create_task(_check_all(entry))
        rt.background.append(task)
        task.add_done_callback(lambda t: _discard(rt, t))


async def _check_all(entry: registry.MitigationEntry) -> None:
    try:
        await runtime.get().pipeline.check_all(entry)
    except asyncio.CancelledError:
        raise
    except Exception as error:
        logger.warning(
            "Target check failed: mitigation=%s/%s error=%s", entry.namespace, entry.name, error
        )


def _discard(rt: runtime.Runtime, task: asyncio.Task[None]) -> None:
    if task in rt.background:
        rt.background.remove(task)


async def forget(key: registry.Key) -> None:
    """A Mitigation is gone: release its watch, nothing else is left behind."""
    _invalid_seen.pop(key, None)
    _latest.pop(key, None)
    entry = registry.current.pop_mitigation(*key)
    if entry is None:
        return
    await runtime.get().watches.release(entry.watch_key)
    logger.info("Mitigation deleted, watch released: mitigation=%s/%s", *key)


async def invalid(key: registry.Key, uid: str, generation: int, error: Exception) -> None:
    """Phase Invalid with a message that names the field; the old entry (if any) stops."""
    await forget(key)
    _invalid_seen[key] = (uid, generation)
    errors = error.errors if isinstance(error, convert.InvalidPolicy) else (str(error),)
    message = "; ".join(errors)
    logger.warning("Mitigation invalid: mitigation=%s/%s error=%s", key[0], key[1], message)
    now = regressions.rfc3339(regressions.now())
    status = {
        "phase": conventions.PHASE_INVALID,
        "observedGeneration": generation,
        "targets": 0,
        "conditions": [
            {
                "type": conventions.CONDITION_VALID,
                "status": "False",
                "reason": "InvalidSpec",
                "message": message[:4000],
                "lastTransitionTime": now,
                "observedGeneration": generation,
            },
            {
                "type": conventions.CONDITION_READY,
                "status": "False",
                "reason": conventions.PHASE_INVALID,
                "message": "Fix the spec: " + message[:4000],
                "lastTransitionTime": now,
                "observedGeneration": generation,
            },
        ],
    }
    with contextlib.suppress(kube_.NotFound):
        await runtime.get().kube.patch_status(
            MITIGATIONS, namespace=key[0], name=key[1], merge_patch={"status": status}
        )


async def announce_expiry(entry: registry.MitigationEntry) -> None:
    """Event MitigationExpired once, when the watch window is over."""
    now = regressions.now()
    if entry.expired_announced or entry.in_window(now):
        return
    entry.expired_announced = True
    rt = runtime.get()
    await rt.recorder.record(
        regarding=drift.mitigation_ref(entry),
        type="Normal",
        reason=conventions.REASON_MITIGATION_EXPIRED,
        action="Expire",
        note=f"Watch window of Mitigation {entry.name} ended at "
        f"{regressions.rfc3339(entry.watch_until)}: drift is still acted on, scored Low",
    )
    logger.info("Mitigation expired: mitigation=%s/%s", entry.namespace, entry.name)
    rt.pipeline.schedule_status(entry)


async def expiry_loop() -> None:
    """Check watch windows every `expiry_check_interval` seconds."""
    rt = runtime.get()
    while True:
        await asyncio.sleep(rt.settings.expiry_check_interval)
        for entry in list(registry.current.mitigations.values()):
            try:
                await announce_expiry(entry)
            except asyncio.CancelledError:
                raise
            except Exception as error:
                logger.warning("Expiry check failed: mitigation=%s error=%s", entry.name, error)


async def resync_loop() -> None:
    """Re-check every target every `resync_interval` seconds: a backstop for missed events."""
    rt = runtime.get()
    while True:
        await asyncio.sleep(rt.settings.resync_interval)
        for entry in list(registry.current.mitigations.values()):
            for uid, (_signature, action) in list(entry.drifted.items()):
                if action == conventions.ACTION_ROLLBACK_FAILED:
                    del entry.drifted[uid]
            await _check_all(entry)
