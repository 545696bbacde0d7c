"""Dynamic list+watch of any kind, started and stopped at run time.

Kopf fixes its watched kinds at start-up; Mitigations and Guardrails can
target any kind, built-in or custom, at any time. Callers `ensure` and
`release` a `WatchKey` (reference-counted); the manager opens the narrowest
streams that serve them:

- a key with a label selector, or with no name, gets its own stream;
- a key with a name gets its own stream with the field selector
  `metadata.name=NAME`, until `coalesce_names` names of one kind and
  namespace are watched: from then on they share one stream of the whole
  namespace, routed by name on the client (each open stream holds an HTTPS
  connection, about 130-300 KiB in asyncio's TLS buffers alone, so a
  thousand single-object Mitigations must not mean a thousand connections);
- a name key also joins a stream of its whole namespace that is already open.
A key joining a stream that is already running gets the current state of
its objects as ADDED (read with one LIST narrowed to the key).

Semantics of one stream (client-go's reflector, minus its object cache):

- LIST first, page by page; every listed object is delivered as ADDED, so
  drift made while the operator was down is found at start-up.
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

Memory: per delivered object only (uid -> namespace, name, resourceVersion)
is kept, to find deletions on a relist; objects no key asked for (on a
shared stream) are dropped unread beyond their name. The objects themselves
are handed to `on_event` and not kept.

Delivery: `on_event` is awaited in the stream's own task, one event at a
time and in order per stream (backpressure: a slow callback slows only its
stream). An exception from it is logged and the stream goes on. Two keys that
overlap (a name key on its own stream and a namespace key) both deliver the
object, each with its own key; the same dict may be passed to both, so
callbacks must not mutate it. The manager never writes to a watched object.
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


@dataclasses.dataclass(eq=False)
class _Stream:
    """One list+watch connection and the keys it serves."""

    key: WatchKey  # what is asked of the API server
    whole: WatchKey | None = None  # the key that gets every object of the stream
    by_name: dict[str, WatchKey] = dataclasses.field(default_factory=dict)
    task: asyncio.Task[None] | None = None
    joins: set[asyncio.Task[None]] = dataclasses.field(default_factory=set)
    waiting: set[WatchKey] = dataclasses.field(default_factory=set)  # synced by the next LIST
    resource_version: str | None = None
    known: dict[str, _Known] = dataclasses.field(default_factory=dict)
    listed_at: float = 0.0
    relists: int = 0
    resync_due: bool = False
    check_version: bool = False  # after an error: is resource_version still ahead of etcd?

    def routes(self, name: str) -> list[WatchKey]:
        """The keys an object of this name is delivered to."""
        keys = [self.whole] if self.whole is not None else []
        named = self.by_name.get(name)
        if named is not None:
            keys.append(named)
        return keys

    def empty(self) -> bool:
        return self.whole is None and not self.by_name


@dataclasses.dataclass(eq=False)
class _Sub:
    """One ensured key: its references, its stream, whether its first state arrived."""

    key: WatchKey
    stream: _Stream
    refs: int = 1
    synced: asyncio.Event = dataclasses.field(default_factory=asyncio.Event)


class _Expired(Exception):
    """The watch's resourceVersion is too old (410): list again."""


class WatchManager:
    """Reference-counted list+watch streams serving WatchKeys (see the module docstring).

    Timing knobs are parameters so tests can shorten them:
    `watch_timeout_seconds` (server-side timeout of one WATCH request; the
    watch then resumes from its last resourceVersion), `resync_seconds`
    (None: never), `backoff_initial`/`backoff_factor`/`backoff_max` for
    retries after errors, `list_page_size` for LIST pages, `coalesce_names`
    (how many name keys of one kind and namespace share a stream; None:
    never). Call `close()` (or use `async with`) to stop every task.
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
        coalesce_names: int | None = 8,
    ) -> None:
        self._kube = kube
        self._on_event = on_event
        self._metrics = metrics
        self._resync = resync_seconds
        self._watch_timeout = watch_timeout_seconds
        self._backoff = (backoff_initial, backoff_factor, backoff_max)
        self._page_size = list_page_size
        self._coalesce = coalesce_names
        self._subs: dict[WatchKey, _Sub] = {}
        self._streams: dict[WatchKey, _Stream] = {}
        self._objects = 0
        self._closed = False

    async def __aenter__(self) -> WatchManager:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    # ------------------------------------------------------------------ public

    async def ensure(self, key: WatchKey) -> None:
        """Start watching `key`, or add one reference to a key already watched.

        Returns at once; the first LIST runs in the background (see
        `wait_synced`). Raises RuntimeError after `close()`.
        """
        if self._closed:
            raise RuntimeError("WatchManager is closed")
        sub = self._subs.get(key)
        if sub is not None:
            sub.refs += 1
            return
        if key.name is None or key.label_selector is not None:
            self._attach_whole(key)
        else:
            await self._attach_name(key)
        logger.info("Started watch: %s", _describe(key))

    async def release(self, key: WatchKey) -> None:
        """Drop one reference; the last one stops delivering to `key`.

        A stream no key needs any more is stopped and its task awaited.
        Releasing a key that is not watched does nothing. A callback running
        on that stream when it stops is cancelled.
        """
        sub = self._subs.get(key)
        if sub is None:
            return
        sub.refs -= 1
        if sub.refs > 0:
            return
        del self._subs[key]
        await self._detach(sub)
        logger.info("Stopped watch: %s", _describe(key))

    def open_watches(self) -> list[WatchKey]:
        """The keys being watched now (as ensured, whatever stream serves them)."""
        return list(self._subs)

    def open_streams(self) -> list[WatchKey]:
        """What is asked of the API server now: one entry per open list+watch connection."""
        return list(self._streams)

    def references(self, key: WatchKey) -> int:
        """How many `ensure` calls are not yet released for `key` (0: not watched)."""
        sub = self._subs.get(key)
        return sub.refs if sub else 0

    def synced(self, key: WatchKey) -> bool:
        """True once the current state of `key`'s objects has been delivered."""
        sub = self._subs.get(key)
        return sub is not None and sub.synced.is_set()

    async def wait_synced(self, key: WatchKey) -> None:
        """Wait until the current state of `key` has been delivered (KeyError if not watched).

        Waits for as long as the kind is unknown or the API server refuses
        the list: wrap in `asyncio.wait_for` for a bound.
        """
        await self._subs[key].synced.wait()

    def healthy(self) -> bool:
        """False when a stream task has ended on its own (a bug: the loop retries every error)."""
        return all(s.task is not None and not s.task.done() for s in self._streams.values())

    @property
    def watched_objects(self) -> int:
        """Objects currently delivered to some key (the keepfix_watched_objects gauge)."""
        return self._objects

    async def close(self) -> None:
        """Stop every stream and wait for the tasks to end; safe to call twice."""
        self._closed = True
        streams = list(self._streams.values())
        self._streams.clear()
        self._subs.clear()
        await asyncio.gather(*(self._stop(s) for s in streams))
        self._count(-self._objects)

    # ------------------------------------------------------------------ routing

    def _attach_whole(self, key: WatchKey) -> None:
        stream = self._streams.get(key)
        if stream is None:
            stream = self._new_stream(key)
        stream.whole = key
        self._join(stream, _Sub(key=key, stream=stream))

    async def _attach_name(self, key: WatchKey) -> None:
        assert key.name is not None
        group = key._replace(name=None)
        shared = self._streams.get(group)
        if shared is None and self._coalesce is not None:
            names = [k for k in self._subs if k.name and k._replace(name=None) == group]
            if len(names) + 1 >= self._coalesce:
                shared = self._new_stream(group)
                for moved in names:
                    if moved in self._subs:  # (not released while we awaited)
                        await self._move(self._subs[moved], shared)
                # A concurrent release may have emptied and dropped it meanwhile.
                shared = self._streams.setdefault(group, shared)
        if shared is not None:
            shared.by_name[key.name] = key
            self._join(shared, _Sub(key=key, stream=shared))
            return
        stream = self._new_stream(key)
        stream.whole = key
        self._join(stream, _Sub(key=key, stream=stream))

    async def _move(self, sub: _Sub, shared: _Stream) -> None:
        """Serve a name key from the shared stream and stop its own.

        The shared stream's first LIST delivers the key's objects again, so
        nothing changed in between is lost.
        """
        assert sub.key.name is not None
        shared.by_name[sub.key.name] = sub.key
        own, sub.stream = sub.stream, shared
        if not sub.synced.is_set():
            shared.waiting.add(sub.key)
        await self._drop(own, sub.key)

    def _join(self, stream: _Stream, sub: _Sub) -> None:
        """Register `sub`; a running stream sends it the current state through a narrow LIST.

        (A running stream's LIST may be past the key's objects already, so a
        joining key always gets its own catch-up; duplicates are harmless.)
        """
        self._subs[sub.key] = sub
        if stream.task is None:
            stream.waiting.add(sub.key)
            self._start(stream)
        else:
            task = asyncio.create_task(
                self._catch_up(stream, sub), name=f"keepfix-watch-join {sub.key}"
            )
            stream.joins.add(task)
            task.add_done_callback(stream.joins.discard)

    async def _detach(self, sub: _Sub) -> None:
        await self._drop(sub.stream, sub.key)

    async def _drop(self, stream: _Stream, key: WatchKey) -> None:
        """Stop delivering to `key` from `stream`; stop the stream when nothing needs it."""
        if stream.whole == key:
            stream.whole = None
        elif key.name is not None and stream.by_name.get(key.name) == key:
            del stream.by_name[key.name]
        stream.waiting.discard(key)
        if stream.empty():
            if self._streams.get(stream.key) is stream:
                del self._streams[stream.key]
            await self._stop(stream)
            self._count(-len(stream.known))
            stream.known.clear()
        else:
            self._forget_unrouted(stream)

    def _forget_unrouted(self, stream: _Stream) -> None:
        if stream.whole is not None:
            return
        unrouted = [uid for uid, k in stream.known.items() if k.name not in stream.by_name]
        for uid in unrouted:
            del stream.known[uid]
        self._count(-len(unrouted))

    def _new_stream(self, key: WatchKey) -> _Stream:
        stream = _Stream(key=key)
        self._streams[key] = stream
        return stream

    # ------------------------------------------------------------------ test hooks

    def _stream(self, key: WatchKey) -> _Stream:
        """Tests: the stream serving `key`."""
        return self._subs[key].stream

    async def _suspend(self, key: WatchKey) -> None:
        """Tests: stop the stream of `key` but keep its state (as a lost connection does)."""
        await self._stop(self._stream(key))

    def _resume(
        self, key: WatchKey, *, resource_version: str | None = None, after_error: bool = False
    ) -> None:
        """Tests: start the stream of `key` again, optionally from another resourceVersion.

        `after_error` resumes as after a failed request (the resourceVersion is checked).
        """
        stream = self._stream(key)
        if resource_version is not None:
            stream.resource_version = resource_version
        stream.check_version = after_error
        self._start(stream)

    # ------------------------------------------------------------------ the loop

    def _start(self, stream: _Stream) -> None:
        stream.task = asyncio.create_task(self._run(stream), name=f"keepfix-watch {stream.key}")

    async def _stop(self, stream: _Stream) -> None:
        tasks = [*stream.joins]
        task, stream.task = stream.task, None
        if task is not None:
            tasks.append(task)
        current = asyncio.current_task()
        for each in tasks:
            each.cancel()
        # Released from its own callback: the cancellation ends the current task.
        others = [each for each in tasks if each is not current]
        try:
            await asyncio.gather(*others, return_exceptions=True)
        except asyncio.CancelledError:
            if current is not None and current.cancelling():
                raise

    async def _run(self, stream: _Stream) -> None:
        attempt = 0
        while True:
            try:
                resource = await self._kube.resource_for(stream.key.api_version, stream.key.kind)
                if (
                    stream.check_version
                    and stream.resource_version is not None
                    and await self._version_too_large(stream, resource)
                ):
                    stream.resource_version = None
                stream.check_version = False
                if stream.resource_version is None or stream.resync_due:
                    await self._relist(stream, resource)
                await self._watch(stream, resource)
                attempt = 0
            except (_Expired, kube_.Gone):
                logger.info(
                    "Watch resourceVersion expired, listing again: %s", _describe(stream.key)
                )
                stream.resource_version = None
                attempt = 0
            except asyncio.CancelledError:
                raise
            except Exception as error:
                if isinstance(error, kube_.NotFound):
                    self._kube.forget(stream.key.api_version)  # the CRD may be gone
                stream.check_version = True
                attempt = await self._pause(stream.key, attempt, error)

    async def _version_too_large(self, stream: _Stream, resource: kube_.Resource) -> bool:
        """Whether the API server is behind our resourceVersion (etcd restored or recreated).

        A WATCH from such a version would wait silently; a one-item LIST
        with resourceVersionMatch=NotOlderThan says so at once (504).
        """
        query = [
            ("limit", "1"),
            ("resourceVersion", stream.resource_version or ""),
            ("resourceVersionMatch", "NotOlderThan"),
        ]
        path = resource.path(namespace=stream.key.namespace if resource.namespaced else None)
        try:
            await self._kube.request("GET", path, query=query)
        except kube_.ApiError as error:
            if kube_.too_large_resource_version(error):
                logger.warning(
                    "Watch resourceVersion is ahead of the API server, listing again: %s",
                    _describe(stream.key),
                )
                return True
            raise
        return False

    async def _pause(self, key: WatchKey, attempt: int, error: Exception) -> int:
        """Sleep the backoff for `attempt` and return the next attempt number."""
        initial, factor, cap = self._backoff
        delay: float = min(cap, initial * factor**attempt) * random.uniform(0.5, 1.0)
        logger.warning(
            "Watch failed, retrying: %s delay=%.1fs error=%s", _describe(key), delay, error
        )
        await asyncio.sleep(delay)
        return attempt + 1

    async def _catch_up(self, stream: _Stream, sub: _Sub) -> None:
        """Deliver the current objects of a key that joined a running stream, as ADDED."""
        attempt = 0
        while True:
            try:
                resource = await self._kube.resource_for(sub.key.api_version, sub.key.kind)
                pages = self._kube.list_pages(
                    resource,
                    namespace=sub.key.namespace if resource.namespaced else None,
                    label_selector=sub.key.label_selector,
                    field_selector=_field_selector(sub.key),
                    page_size=self._page_size,
                )
                async for page, _ in pages:
                    for item in page:
                        metadata = item.get("metadata", {})
                        uid = metadata.get("uid", "")
                        if uid not in stream.known:
                            stream.known[uid] = _known(metadata)
                            self._count(1)
                        await self._send(sub.key, "ADDED", item)
                sub.synced.set()
                return
            except asyncio.CancelledError:
                raise
            except Exception as error:
                attempt = await self._pause(sub.key, attempt, error)

    async def _relist(self, stream: _Stream, resource: kube_.Resource) -> None:
        """LIST page by page, delivering what is new or changed; then what vanished.

        Pages are delivered as they arrive so a big list never sits in memory
        whole. If the continue token expires (Gone), the caller lists again
        and objects already delivered from this list come again.
        """
        key = stream.key
        resync, stream.resync_due = stream.resync_due, False
        previous: dict[str, _Known] = stream.known
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
                routes = stream.routes(metadata.get("name", ""))
                if not routes:
                    continue
                uid = metadata.get("uid", "")
                current[uid] = _known(metadata)
                before = previous.get(uid)
                if before is None:
                    await self._send_all(routes, "ADDED", item)
                elif resync or before.resource_version != current[uid].resource_version:
                    await self._send_all(routes, "MODIFIED", item)
        vanished = [(uid, gone) for uid, gone in previous.items() if uid not in current]
        self._count(len(current) - len(previous))
        stream.known = current
        stream.resource_version = resource_version
        stream.listed_at = time.monotonic()
        stream.relists += 1
        for uid, gone in vanished:
            await self._send_all(stream.routes(gone.name), "DELETED", _stub(resource, uid, gone))
        for waiting in stream.waiting:
            sub = self._subs.get(waiting)
            if sub is not None:
                sub.synced.set()
        stream.waiting.clear()

    async def _watch(self, stream: _Stream, resource: kube_.Resource) -> None:
        key = stream.key
        timeout = self._watch_timeout
        if self._resync is not None:
            timeout = max(1.0, min(timeout, stream.listed_at + self._resync - time.monotonic()))
        query = [
            ("watch", "true"),
            ("allowWatchBookmarks", "true"),
            ("resourceVersion", stream.resource_version or ""),
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
                    await self._handle(stream, resource, json.loads(line))
        if self._resync is not None and time.monotonic() >= stream.listed_at + self._resync:
            stream.resync_due = True

    async def _handle(
        self, stream: _Stream, resource: kube_.Resource, event: dict[str, Any]
    ) -> None:
        event_type = event.get("type")
        obj: dict[str, Any] = event.get("object") or {}
        metadata = obj.get("metadata") or {}
        if event_type == "ERROR":
            code = obj.get("code")
            error = kube_.ApiError.from_response(int(code or 500), json.dumps(obj).encode())
            if code == 410 or kube_.too_large_resource_version(error):
                raise _Expired(error.message)
            raise error
        stream.resource_version = metadata.get("resourceVersion") or stream.resource_version
        if event_type not in ("ADDED", "MODIFIED", "DELETED"):
            return  # BOOKMARK: only the resourceVersion moves on
        routes = stream.routes(metadata.get("name", ""))
        if not routes:
            return
        obj.setdefault("apiVersion", resource.api_version)
        obj.setdefault("kind", resource.kind)
        uid = metadata.get("uid", "")
        if event_type == "DELETED":
            if stream.known.pop(uid, None) is not None:
                self._count(-1)
        else:
            if uid not in stream.known:
                self._count(1)
            stream.known[uid] = _known(metadata)
        await self._send_all(routes, event_type, obj)

    async def _send_all(
        self, keys: list[WatchKey], event_type: EventType, obj: dict[str, Any]
    ) -> None:
        for key in keys:
            await self._send(key, event_type, obj)

    async def _send(self, key: WatchKey, event_type: EventType, obj: dict[str, Any]) -> None:
        try:
            await self._on_event(WatchEvent(type=event_type, object=obj, key=key))
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception(
                "Watch callback failed: %s object=%s",
                _describe(key),
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
