"""Guardrails at run time: audit the objects they match, optionally put fields back.

A Guardrail (cluster-scoped) is compiled with `api.convert.guardrail` (the
same form the gate and the webhook use) into the registry. Its kinds are
watched (one namespace-wide stream per kind, shared with other Guardrails);
every event of a matched object is evaluated with `core.rules`. The status
keeps the count of violating objects and a sample of at most
`models.MAX_SAMPLE`; each violating object gets a `GuardrailViolation` Event
(repeats join the Event's series). With `remediation: Rollback`, a rule that
says `equals` is put back with a guarded JSON patch; other rules only report.

Only what is needed is kept per object: the (guardrail, uid) pairs that
violate, with a one-line sample each.

Full audits (a Guardrail created or changed) are batched per watched kind:
Guardrails that arrive together, as 100 of them do at start-up, share one
paged LIST of each kind instead of one LIST each, and the audit's status is
written once every kind of it has been audited. A Guardrail is registered
before the LIST it joins starts, so an object changed during the LIST reaches
it through the watch.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Coroutine
from typing import Any

import kopf

from keepfix.adapters import kube as kube_
from keepfix.adapters import watches as watches_
from keepfix.api import conventions, convert, models
from keepfix.core import diff, policy, rollback, rules
from keepfix.handlers import registry, runtime

logger = logging.getLogger(__name__)

GUARDRAILS = kube_.keepfix_resource(conventions.PLURAL_GUARDRAILS)


@dataclasses.dataclass
class Audit:
    """The violations of one Guardrail, by object uid."""

    compiled: policy.GuardrailPolicy
    remediation: str
    generation: int
    keys: tuple[watches_.WatchKey, ...] = ()
    violating: dict[str, list[dict[str, Any]]] = dataclasses.field(default_factory=dict)
    dirty: bool = True
    #: Keys whose full audit (a LIST) this Guardrail still waits for.
    unaudited: set[watches_.WatchKey] = dataclasses.field(default_factory=set)


_audits: dict[str, Audit] = {}
_latest: dict[str, str] = {}
_status_tasks: dict[str, asyncio.Task[None]] = {}
#: Per watched kind: the Guardrails waiting for its next full audit, and the task running it.
_pending: dict[watches_.WatchKey, set[str]] = {}
_auditors: dict[watches_.WatchKey, asyncio.Task[None]] = {}
#: Objects per page of an audit LIST: small pages keep each JSON decode short.
AUDIT_PAGE_SIZE = 100
#: How long an audit waits for more Guardrails to join its LIST (seconds).
AUDIT_BATCH_DELAY = 0.05


@kopf.on.event(conventions.GROUP, conventions.VERSION, conventions.PLURAL_GUARDRAILS)
async def guardrail_event(event: kopf.RawEvent, **_: Any) -> None:
    """Every Guardrail event: compile, (re)watch its kinds, audit."""
    obj: dict[str, Any] = dict(event["object"])
    name = str((obj.get("metadata") or {}).get("name"))
    _latest[name] = str(obj["metadata"].get("resourceVersion"))
    await _handle(str(event.get("type")), name, obj, attempt=0)


async def _handle(event_type: str, name: str, obj: dict[str, Any], *, attempt: int) -> None:
    """Apply or forget; on an error try again later unless a newer event came."""
    try:
        if event_type == "DELETED" or obj["metadata"].get("deletionTimestamp"):
            await forget(name)
        else:
            await apply(name, obj)
    except asyncio.CancelledError:
        raise
    except Exception as error:
        delay = min(30.0, 0.5 * 2**attempt)
        logger.warning(
            "Guardrail handling failed, retrying: guardrail=%s delay=%.1fs error=%s",
            name,
            delay,
            error,
        )
        # A failed first audit must run again even though the generation is unchanged.
        if name in _audits:
            _audits[name].generation = -1
        _background(_retry_later(event_type, name, obj, attempt + 1, delay))


def _background(work: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
    """A task the runtime cancels at shutdown, forgotten when it ends."""
    rt = runtime.get()
    task = asyncio.create_task(work)
    rt.background.append(task)
    task.add_done_callback(lambda t: rt.background.remove(t) if t in rt.background else None)
    return task


async def _retry_later(
    event_type: str, name: str, obj: dict[str, Any], attempt: int, delay: float
) -> None:
    await asyncio.sleep(delay)
    if _latest.get(name) == str(obj["metadata"].get("resourceVersion")):
        await _handle(event_type, name, obj, attempt=attempt)


async def apply(name: str, obj: dict[str, Any]) -> None:
    generation = int(obj["metadata"].get("generation") or 0)
    existing = _audits.get(name)
    if existing is not None and existing.generation == generation:
        return
    try:
        compiled = convert.guardrail(obj)
        model = models.Guardrail.model_validate(obj)
    except convert.InvalidPolicy as error:
        await forget(name)
        logger.warning("Guardrail invalid: guardrail=%s error=%s", name, error)
        await _patch_status(name, {"conditions": [_valid(False, str(error))]})
        return
    rt = runtime.get()
    registry.current.put_guardrail(name, obj, compiled)
    keys = await _watch_keys(model)
    audit = Audit(compiled, model.spec.remediation, generation, keys)
    old = _audits.get(name)
    _audits[name] = audit
    _changed()
    for key in keys:
        await rt.watches.ensure(key)
    if old is not None:
        for key in old.keys:
            await rt.watches.release(key)
    audit_all(name, audit)


async def forget(name: str) -> None:
    registry.current.pop_guardrail(name)
    audit = _audits.pop(name, None)
    _changed()
    if audit is None:
        return
    rt = runtime.get()
    for key in audit.keys:
        await rt.watches.release(key)
    logger.info("Guardrail deleted, watches released: guardrail=%s", name)


def _changed() -> None:
    global _index  # noqa: PLW0603 - a cache of `_audits`
    _index = None


async def _watch_keys(model: models.Guardrail) -> tuple[watches_.WatchKey, ...]:
    """One stream per concrete (group, kind) the Guardrail names (per watched namespace).

    Wildcards are not watched at run time (admission still covers them): a
    cluster-wide stream of every kind would cost more than it finds.
    """
    rt = runtime.get()
    keys = []
    for resource in model.spec.match.resources:
        for group in resource.api_groups or [""]:
            for kind in resource.kinds:
                if group == "*" or kind == "*":
                    continue
                api_version = await _api_version(rt.kube, group, kind)
                if api_version is None:
                    continue
                # An operator limited to namespaces (--namespace) audits only those.
                for namespace in rt.settings.namespaces or (None,):
                    keys.append(watches_.WatchKey(api_version, kind, namespace))
    return tuple(dict.fromkeys(keys))


async def _api_version(client: kube_.Kube, group: str, kind: str) -> str | None:
    """The first served version of `group` that serves `kind` (v1 first), via discovery."""
    if not group:
        return "v1"
    for version in ("v1", "v2", "v1beta1", "v1beta2", "v1alpha1"):
        try:
            await client.resource_for(f"{group}/{version}", kind)
        except kube_.UnknownKind:
            continue
        return f"{group}/{version}"
    return None


def audit_all(name: str, audit: Audit) -> None:
    """Queue a full audit of every object of the Guardrail's kinds (on create and change).

    The status is written when the last of its kinds has been listed; a
    Guardrail without watched kinds gets its status at once.
    """
    audit.violating.clear()
    audit.unaudited = set(audit.keys)
    if not audit.keys:
        _schedule_status(name, audit)
    for key in audit.keys:
        _pending.setdefault(key, set()).add(name)
        running = _auditors.get(key)
        if running is None or running.done():
            _auditors[key] = _background(_audit_key(key))


async def _audit_key(key: watches_.WatchKey) -> None:
    """Audit one kind for every Guardrail waiting for it, one LIST per batch, until none wait."""
    rt = runtime.get()
    failures = 0
    while _pending.get(key):
        await asyncio.sleep(AUDIT_BATCH_DELAY)
        names = _pending.pop(key, set())
        batch = {n: a for n in names if (a := _audits.get(n)) is not None and key in a.unaudited}
        if not batch:
            continue
        try:
            await _list_and_check(rt, key, batch)
        except asyncio.CancelledError:
            raise
        except Exception as error:
            failures += 1
            delay = min(30.0, 0.5 * 2**failures)
            logger.warning(
                "Guardrail audit failed, retrying: kind=%s guardrails=%d delay=%.1fs error=%s",
                key.kind,
                len(batch),
                delay,
                error,
            )
            _pending.setdefault(key, set()).update(batch)
            await asyncio.sleep(delay)
            continue
        failures = 0
        for name, audit in batch.items():
            audit.unaudited.discard(key)
            if not audit.unaudited and _audits.get(name) is audit:
                _schedule_status(name, audit)


async def _list_and_check(
    rt: runtime.Runtime, key: watches_.WatchKey, batch: dict[str, Audit]
) -> None:
    resource = await rt.kube.resource_for(key.api_version, key.kind)
    namespace = key.namespace if resource.namespaced else None
    while True:
        try:
            async for page, _ in rt.kube.list_pages(
                resource, namespace=namespace, page_size=AUDIT_PAGE_SIZE
            ):
                for item in page:
                    for name, audit in batch.items():
                        if _audits.get(name) is audit:
                            await check(name, audit, item)
        except kube_.Gone:
            continue  # the continue token expired: list again (checks are idempotent)
        return


#: The Guardrails to check per (watch key, namespace): those naming the namespace, and
#: under `*` those naming none; under "" every Guardrail of the key (cluster-scoped
#: objects, which rules.matches does not filter by namespace). Rebuilt when `_audits` changes.
_index: dict[tuple[watches_.WatchKey, str], list[tuple[str, Audit]]] | None = None


def _candidates(key: watches_.WatchKey, namespace: str) -> list[tuple[str, Audit]]:
    """The Guardrails an object of this stream and namespace may violate."""
    global _index  # noqa: PLW0603 - a cache of `_audits`
    if _index is None:
        _index = {}
        for name, audit in _audits.items():
            for k in audit.keys:
                _index.setdefault((k, ""), []).append((name, audit))
                for ns in audit.compiled.match.namespaces or (rules.WILDCARD,):
                    _index.setdefault((k, ns), []).append((name, audit))
    if not namespace:
        return _index.get((key, ""), [])
    return [*_index.get((key, namespace), ()), *_index.get((key, rules.WILDCARD), ())]


async def on_event(event: watches_.WatchEvent) -> None:
    """A watched object changed: check it against every Guardrail that matches its kind."""
    namespace = str((event.object.get("metadata") or {}).get("namespace") or "")
    for name, audit in _candidates(event.key, namespace):
        if _audits.get(name) is not audit:
            continue
        uid = str(event.object.get("metadata", {}).get("uid"))
        if event.type == "DELETED":
            if audit.violating.pop(uid, None) is not None:
                _schedule_status(name, audit)
            continue
        if await check(name, audit, event.object):
            _schedule_status(name, audit)


async def check(name: str, audit: Audit, obj: dict[str, Any]) -> bool:
    """Evaluate one object; True when its violations changed."""
    meta = obj.get("metadata") or {}
    uid = str(meta.get("uid"))
    before = audit.violating.get(uid)
    found: list[rules.Violation] = []
    if rules.matches(audit.compiled.match, obj):
        found = list(rules.evaluate(audit.compiled.rules, obj))
    if found and audit.remediation == "Rollback":
        found = await _remediate(audit, obj, found)
    sample = [_sample(obj, v) for v in found]
    if sample:
        audit.violating[uid] = sample
    else:
        audit.violating.pop(uid, None)
    if found and sample != before:
        await _violation_event(name, audit, obj, found)
    return sample != (before or [])


async def _remediate(
    audit: Audit, obj: dict[str, Any], found: list[rules.Violation]
) -> list[rules.Violation]:
    """Put back the fields whose rule is `equals`; the violations left.

    A 409/422 (the object changed since this event) re-reads it and plans again,
    so an event older than the object never counts as a violation.
    """
    rt = runtime.get()
    meta = obj["metadata"]
    resource = await rt.kube.resource_for(str(obj["apiVersion"]), str(obj["kind"]))
    for _ in range(rt.settings.rollback_retries):
        drifts = _equals_drifts(audit, obj, found)
        if not drifts:
            return found
        try:
            plan = rollback.plan(drifts, obj)
            patched = await rt.kube.json_patch(
                resource, namespace=meta.get("namespace"), name=meta["name"], ops=plan.patch
            )
        except kube_.ApiError as error:
            if not error.replannable:
                logger.warning(
                    "Guardrail remediation failed: object=%s error=%s", meta["name"], error
                )
                return found
            live = await rt.kube.get(resource, namespace=meta.get("namespace"), name=meta["name"])
            if live is None:
                return []
            obj = {**live, "apiVersion": obj["apiVersion"], "kind": obj["kind"]}
            found = list(rules.evaluate(audit.compiled.rules, obj))
            continue
        except rollback.RollbackError as error:
            logger.warning("Guardrail remediation failed: object=%s error=%s", meta["name"], error)
            return found
        rt.metrics.rollbacks.labels("Succeeded").inc()
        logger.info("Guardrail remediated: object=%s/%s", meta.get("namespace"), meta["name"])
        patched = {**patched, "apiVersion": obj["apiVersion"], "kind": obj["kind"]}
        return list(rules.evaluate(audit.compiled.rules, patched))
    return found


def _equals_drifts(
    audit: Audit, obj: dict[str, Any], found: list[rules.Violation]
) -> list[diff.Drift]:
    by_name = {r.name: r for r in audit.compiled.rules}
    drifts: list[diff.Drift] = []
    for v in found:
        rule = by_name.get(v.rule)
        if rule is not None and rule.constraint.op == "equals":
            drifts.extend(diff.diff((diff.ProtectedField(v.path, rule.constraint.operand),), obj))
    return drifts


def _sample(obj: dict[str, Any], v: rules.Violation) -> dict[str, Any]:
    meta = obj.get("metadata") or {}
    item: dict[str, Any] = {
        "apiVersion": obj.get("apiVersion"),
        "kind": obj.get("kind"),
        "name": meta.get("name"),
        "rule": v.rule,
        "path": v.path,
    }
    if meta.get("namespace"):
        item["namespace"] = meta["namespace"]
    if v.message:
        item["message"] = v.message[:500]
    return item


async def _violation_event(
    name: str, audit: Audit, obj: dict[str, Any], found: list[rules.Violation]
) -> None:
    rt = runtime.get()
    level = audit.compiled.level.label
    details = "; ".join(f"rule {v.rule}: {v.path}" for v in found)
    await rt.recorder.record(
        regarding=obj,
        related={
            "apiVersion": conventions.API_VERSION,
            "kind": conventions.KIND_GUARDRAIL,
            "name": name,
        },
        type="Warning",
        reason=conventions.REASON_GUARDRAIL_VIOLATION,
        action="Audit",
        note=f"Guardrail {name} ({level}) violated: {details}",
        note_key=name,
    )


def _schedule_status(name: str, audit: Audit) -> None:
    """Write the status soon; a change during a write makes one more write."""
    audit.dirty = True
    running = _status_tasks.get(name)
    if running is not None and not running.done():
        return
    _status_tasks[name] = asyncio.create_task(_write_status(name, audit))


async def _write_status(name: str, audit: Audit) -> None:
    while audit.dirty:
        audit.dirty = False
        await asyncio.sleep(0.05)
        if _audits.get(name) is not audit:
            return
        sample = [s for items in audit.violating.values() for s in items][: models.MAX_SAMPLE]
        await _patch_status(
            name,
            {
                "violations": len(audit.violating),
                "sample": sample,
                "observedGeneration": audit.generation,
                "conditions": [_valid(True, "The spec is valid")],
            },
        )


async def _patch_status(name: str, status: dict[str, Any]) -> None:
    try:
        await runtime.get().kube.patch_status(
            GUARDRAILS, namespace=None, name=name, merge_patch={"status": status}
        )
    except kube_.ApiError as error:
        logger.warning("Guardrail status failed: guardrail=%s error=%s", name, error)


def _valid(ok: bool, message: str) -> dict[str, Any]:
    from keepfix.handlers import regressions

    return {
        "type": conventions.CONDITION_VALID,
        "status": "True" if ok else "False",
        "reason": "Valid" if ok else "InvalidSpec",
        "message": message[:4000],
        "lastTransitionTime": regressions.rfc3339(regressions.now()),
    }
