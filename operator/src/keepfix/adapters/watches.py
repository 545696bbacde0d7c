"""Dynamic list+watch of any kind, started and stopped at run time.

Kopf fixes its watched kinds at start-up; Mitigations and Guardrails can
target any kind, built-in or custom, at any time. `WatchManager` runs one
list+watch task per distinct `WatchKey` (the narrowest stream for what is
targeted: a single name becomes a `metadata.name` field selector, a selector
target a label selector), reference-counted by `ensure`/`release`.

Semantics of one watch (client-go's reflector, minus its object cache):

- LIST first; every listed object is delivered as ADDED, so drift made while
  the operator was down is found at start-up.
- WATCH from the list's resourceVersion with bookmarks; after a disconnect
  or a server-side timeout, resume from the last resourceVersion seen
  (bookmarks advance it).
- 410 Gone (the resourceVersion was compacted): LIST again and deliver only
  what changed: ADDED for new objects, MODIFIED for objects whose
  resourceVersion moved, DELETED for objects that vanished (their DELETED
  event carries a stub: apiVersion, kind and metadata name/namespace/uid/
  resourceVersion, since the object itself is gone).
- `resync_seconds`: a periodic LIST that re-delivers every object as
  MODIFIED (a backstop for anything missed), off by default.
- Errors (the API server down, RBAC, a kind not served yet) back off
  exponentially up to a cap and retry; discovery is retried too, so a CRD
  installed after the Mitigation starts being watched when it appears.

Memory: per watched object only (uid -> namespace, name, resourceVersion) is
kept, to find deletions on a relist; the objects themselves are handed to
`on_event` and not kept.

Delivery: `on_event` is awaited in the watch's own task, one event at a
time and in order per key (backpressure: a slow callback slows only its
watch). An exception from it is logged and the watch goes on. Two keys that
overlap (a name watch and a namespace-wide watch of the same kind) both
deliver the object, each with its own key. The manager never writes to a
watched object.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import random
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any, Final, Literal, NamedTuple

import aiohttp

from keepfix.adapters import kube as kube_
from keepfix.adapters import metrics as metrics_

logger = logging.getLogger(__name__)

EventType = Literal["ADDED", "MODIFIED", "DELETED"]

#: Grace on top of the server-side watch timeout before the client gives up reading.
_READ_GRACE: Final = 30.0


class WatchKey(NamedTuple):
    """What to watch: a kind, optionally narrowed to a namespace, a name or a selector.

    `name` becomes the field selector `metadata.name=NAME` (in `namespace`
    when set, in every namespace or for a cluster-scoped kind when None).
    `label_selector` is passed as is (`app=web,tier in (a,b)`).
    """

    api_version: str
    kind: str
    namespace: str | None = None
    name: str | None = None
    label_selector: str | None = None


@dataclasses.dataclass(frozen=True)
class WatchEvent:
    """One change of one watched object, as delivered to `on_event`."""

    type: EventType
    object: dict[str, Any]
    key: WatchKey


@dataclasses.dataclass(slots=True)
class _Known:
    """The little kept per object: enough to notice a change or a deletion on a relist."""

    namespace: str | None
    name: str
    resource_version: str


@dataclasses.dataclass
class _Watch:
    key: WatchKey
    refs: int = 1
    task: asyncio.Task[None] | None = None
    resource_version: str | None = None
    known: dict[str, _Known] = dataclasses.field(default_factory=dict)
    synced: asyncio.Event = dataclasses.field(default_factory=asyncio.Event)
    listed_at: float = 0.0
    relists: int = 0
    resync_due: bool = False


class _Expired(Exception):
    """The watch's resourceVersion is too old (410): list again."""


class WatchManager:
    """Reference-counted list+watch streams, one per distinct WatchKey.

    Timing knobs are parameters so tests can shorten them:
    `watch_timeout_seconds` (server-side timeout of one WATCH request; the
    watch then resumes from its last resourceVersion), `resync_seconds`
    (None: never), `backoff_initial`/`backoff_factor`/`backoff_max` for
    retries after errors, `list_page_size` for LIST pages. Call `close()`
    (or use `async with`) to stop every task.
    """

    def __init__(
        self,
        kube: kube_.Kube,
        *,
        on_event: Callable[[WatchEvent], Awaitable[None]],
        metrics: metrics_.Metrics | None = None,
        resync_seconds: float | None = None,
        watch_timeout_seconds: float = 290.0,
        backoff_initial: float = 0.5,
        backoff_factor: float = 2.0,
        backoff_max: float = 30.0,
        list_page_size: int = kube_.LIST_PAGE_SIZE,
    ) -> None:
        self._kube = kube
        self._on_event = on_event
        self._metrics = metrics
        self._resync = resync_seconds
        self._watch_timeout = watch_timeout_seconds
        self._backoff = (backoff_initial, backoff_factor, backoff_max)
        self._page_size = list_page_size
        self._watches: dict[WatchKey, _Watch] = {}
        self._objects = 0
        self._closed = False

    async def __aenter__(self) -> WatchManager:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    # ------------------------------------------------------------------ public

    async def ensure(self, key: WatchKey) -> None:
        """Start watching `key`, or add one reference to a watch already running.

        Returns at once; the first LIST runs in the background (see
        `wait_synced`). Raises RuntimeError after `close()`.
        """
        if self._closed:
            raise RuntimeError("WatchManager is closed")
        watch = self._watches.get(key)
        if watch is not None:
            watch.refs += 1
            return
        watch = _Watch(key=key)
        self._watches[key] = watch
        self._start(watch)
        logger.info("Started watch: %s", _describe(key))

    async def release(self, key: WatchKey) -> None:
        """Drop one reference; the last one stops the watch and waits for its task.

        Releasing a key that is not watched does nothing. A callback running
        for that key when the last reference goes is cancelled.
        """
        watch = self._watches.get(key)
        if watch is None:
            return
        watch.refs -= 1
        if watch.refs > 0:
            return
        del self._watches[key]
        await self._stop(watch)
        self._count(-len(watch.known))
        logger.info("Stopped watch: %s", _describe(key))

    def open_watches(self) -> list[WatchKey]:
        """The keys being watched now."""
        return list(self._watches)

    def references(self, key: WatchKey) -> int:
        """How many `ensure` calls are not yet released for `key` (0: not watched)."""
        watch = self._watches.get(key)
        return watch.refs if watch else 0

    def synced(self, key: WatchKey) -> bool:
        """True once the first LIST of `key` has been delivered."""
        watch = self._watches.get(key)
        return watch is not None and watch.synced.is_set()

    async def wait_synced(self, key: WatchKey) -> None:
        """Wait until the first LIST of `key` has been delivered (KeyError if not watched).

        Waits for as long as the kind is unknown or the API server refuses
        the list: wrap in `asyncio.wait_for` for a bound.
        """
        await self._watches[key].synced.wait()

    def healthy(self) -> bool:
        """False when a watch task has ended on its own (a bug: the loop retries every error)."""
        return all(w.task is not None and not w.task.done() for w in self._watches.values())

    @property
    def watched_objects(self) -> int:
        """Objects currently known across all watches (the keepfix_watched_objects gauge)."""
        return self._objects

    async def close(self) -> None:
        """Stop every watch and wait for the tasks to end; safe to call twice."""
        self._closed = True
        watches = list(self._watches.values())
        self._watches.clear()
        await asyncio.gather(*(self._stop(w) for w in watches))
        self._count(-self._objects)

    # ------------------------------------------------------------------ test hooks

    async def _suspend(self, key: WatchKey) -> None:
        """Tests: stop the stream of `key` but keep its state (as a lost connection does)."""
        await self._stop(self._watches[key])

    def _resume(self, key: WatchKey, *, resource_version: str | None = None) -> None:
        """Tests: start the stream of `key` again, optionally from another resourceVersion."""
        watch = self._watches[key]
        if resource_version is not None:
            watch.resource_version = resource_version
        self._start(watch)

    # ------------------------------------------------------------------ the loop

    def _start(self, watch: _Watch) -> None:
        watch.task = asyncio.create_task(self._run(watch), name=f"keepfix-watch {watch.key}")

    async def _stop(self, watch: _Watch) -> None:
        task, watch.task = watch.task, None
        if task is None:
            return
        task.cancel()
        if task is asyncio.current_task():
            return  # released from its own callback: the cancellation ends it
        try:
            await task
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise

    async def _run(self, watch: _Watch) -> None:
        attempt = 0
        while True:
            try:
                resource = await self._kube.resource_for(watch.key.api_version, watch.key.kind)
                if watch.resource_version is None or watch.resync_due:
                    await self._relist(watch, resource)
                await self._stream(watch, resource)
                attempt = 0
            except (_Expired, kube_.Gone):
                logger.info(
                    "Watch resourceVersion expired, listing again: %s", _describe(watch.key)
                )
                watch.resource_version = None
                attempt = 0
            except asyncio.CancelledError:
                raise
            except Exception as error:
                delay = self._delay(attempt)
                attempt += 1
                logger.warning(
                    "Watch failed, retrying: %s delay=%.1fs error=%s",
                    _describe(watch.key),
                    delay,
                    error,
                )
                await asyncio.sleep(delay)

    def _delay(self, attempt: int) -> float:
        initial, factor, cap = self._backoff
        delay: float = min(cap, initial * factor**attempt)
        return delay * random.uniform(0.5, 1.0)

    async def _relist(self, watch: _Watch, resource: kube_.Resource) -> None:
        """LIST page by page, delivering what is new or changed; then what vanished.

        Pages are delivered as they arrive so a big list never sits in memory
        whole. If the continue token expires (Gone), the caller lists again
        and objects already delivered from this list come again.
        """
        key = watch.key
        resync, watch.resync_due = watch.resync_due, False
        previous: dict[str, _Known] = watch.known
        current: dict[str, _Known] = {}
        resource_version = ""
        pages = self._kube.list_pages(
            resource,
            namespace=key.namespace if resource.namespaced else None,
            label_selector=key.label_selector,
            field_selector=_field_selector(key),
            page_size=self._page_size,
        )
        async for page, page_version in pages:
            resource_version = page_version
            for item in page:
                metadata = item.get("metadata", {})
                uid = metadata.get("uid", "")
                current[uid] = _known(metadata)
                before = previous.get(uid)
                if before is None:
                    await self._deliver(watch, "ADDED", item)
                elif resync or before.resource_version != current[uid].resource_version:
                    await self._deliver(watch, "MODIFIED", item)
        vanished = [(uid, gone) for uid, gone in previous.items() if uid not in current]
        self._count(len(current) - len(previous))
        watch.known = current
        watch.resource_version = resource_version
        watch.listed_at = time.monotonic()
        watch.relists += 1
        for uid, gone in vanished:
            await self._deliver(watch, "DELETED", _stub(resource, uid, gone))
        watch.synced.set()

    async def _stream(self, watch: _Watch, resource: kube_.Resource) -> None:
        key = watch.key
        timeout = self._watch_timeout
        if self._resync is not None:
            timeout = max(1.0, min(timeout, watch.listed_at + self._resync - time.monotonic()))
        query = [
            ("watch", "true"),
            ("allowWatchBookmarks", "true"),
            ("resourceVersion", watch.resource_version or ""),
            ("timeoutSeconds", str(max(1, int(timeout)))),
        ]
        if key.label_selector:
            query.append(("labelSelector", key.label_selector))
        field_selector = _field_selector(key)
        if field_selector:
            query.append(("fieldSelector", field_selector))
        path = resource.path(namespace=key.namespace if resource.namespaced else None)
        client_timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=kube_.REQUEST_TIMEOUT, sock_read=timeout + _READ_GRACE
        )
        async with self._kube.stream("GET", path, query=query, timeout=client_timeout) as response:
            while line := await response.content.readline():
                if line.strip():
                    await self._handle(watch, resource, json.loads(line))
        if self._resync is not None and time.monotonic() >= watch.listed_at + self._resync:
            watch.resync_due = True

    async def _handle(self, watch: _Watch, resource: kube_.Resource, event: dict[str, Any]) -> None:
        event_type = event.get("type")
        obj: dict[str, Any] = event.get("object") or {}
        metadata = obj.get("metadata") or {}
        if event_type == "ERROR":
            code = obj.get("code")
            if code == 410:
                raise _Expired(obj.get("message", ""))
            raise kube_.ApiError.from_response(int(code or 500), json.dumps(obj).encode())
        if event_type == "BOOKMARK":
            watch.resource_version = metadata.get("resourceVersion") or watch.resource_version
            return
        if event_type not in ("ADDED", "MODIFIED", "DELETED"):
            return
        obj.setdefault("apiVersion", resource.api_version)
        obj.setdefault("kind", resource.kind)
        uid = metadata.get("uid", "")
        if event_type == "DELETED":
            if watch.known.pop(uid, None) is not None:
                self._count(-1)
        else:
            if uid not in watch.known:
                self._count(1)
            watch.known[uid] = _known(metadata)
        watch.resource_version = metadata.get("resourceVersion") or watch.resource_version
        await self._deliver(watch, event_type, obj)

    async def _deliver(self, watch: _Watch, event_type: EventType, obj: dict[str, Any]) -> None:
        try:
            await self._on_event(WatchEvent(type=event_type, object=obj, key=watch.key))
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception(
                "Watch callback failed: %s object=%s",
                _describe(watch.key),
                obj.get("metadata", {}).get("name"),
            )

    def _count(self, delta: int) -> None:
        self._objects += delta
        if self._metrics is not None:
            self._metrics.watched_objects.set(self._objects)


def _field_selector(key: WatchKey) -> str | None:
    return f"metadata.name={key.name}" if key.name else None


def _known(metadata: dict[str, Any]) -> _Known:
    namespace = metadata.get("namespace")
    return _Known(
        namespace=sys.intern(namespace) if namespace else None,
        name=metadata.get("name", ""),
        resource_version=metadata.get("resourceVersion", ""),
    )


def _stub(resource: kube_.Resource, uid: str, gone: _Known) -> dict[str, Any]:
    metadata: dict[str, Any] = {
        "name": gone.name,
        "uid": uid,
        "resourceVersion": gone.resource_version,
    }
    if gone.namespace:
        metadata["namespace"] = gone.namespace
    return {"apiVersion": resource.api_version, "kind": resource.kind, "metadata": metadata}


def _describe(key: WatchKey) -> str:
    parts = [f"kind={key.kind}", f"apiVersion={key.api_version}"]
    if key.namespace:
        parts.append(f"namespace={key.namespace}")
    if key.name:
        parts.append(f"name={key.name}")
    if key.label_selector:
        parts.append(f"selector={key.label_selector}")
    return " ".join(parts)
