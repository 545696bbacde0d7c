"""The HTTPS server the API server calls for admission reviews.

A small aiohttp application: `POST /validate/<webhook>` with an
AdmissionReview v1 body, answered by the `review` callable it is given, and
`GET /healthz`. The review callable is synchronous on purpose: it must not
await anything (no API calls on the request path), and it is timed here.

Certificate rotation without a restart: the listening socket's SSLContext has
an `sni_callback`, which OpenSSL calls on every handshake (with or without a
server name). It checks the files' mtimes and, when they changed, builds a
new context from them and hands it to the connection, so new connections get
the new certificate while open ones keep theirs. A pair that fails to load
(cert-manager mid-write) keeps the previous context and is retried on the
next handshake.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import logging
import os
import socket
import ssl
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import aiohttp.web

from keepfix.adapters.webhook import certs

logger = logging.getLogger(__name__)

#: Review callable: (webhook name from the URL path, AdmissionReview) -> AdmissionReview.
Review = Callable[[str, Mapping[str, Any]], Mapping[str, Any]]
#: Observer called with the seconds each review took (for a histogram).
Observe = Callable[[float], None]

VALIDATE_PREFIX = "/validate"
#: An AdmissionReview is small; refuse anything absurd before parsing it.
MAX_BODY_BYTES = 8 * 1024 * 1024


class ReloadingContext:
    """An SSLContext for a server that picks up new certificate files on handshake."""

    def __init__(self, paths: certs.Paths) -> None:
        self._paths = paths
        self._stamp = self._read_stamp()
        self._current = self._load()
        self.listening = self._load()
        self.listening.sni_callback = self._on_handshake
        self.reloads = 0

    @property
    def current(self) -> ssl.SSLContext:
        """The context new connections get."""
        return self._current

    def refresh(self) -> bool:
        """Rebuild the context when the files changed; True when it was rebuilt."""
        stamp = self._read_stamp()
        if stamp == self._stamp:
            return False
        try:
            context = self._load()
        except (OSError, ssl.SSLError, ValueError) as error:
            logger.warning("Webhook certificate reload failed, keeping the old one: %s", error)
            return False
        self._current, self._stamp = context, stamp
        self.reloads += 1
        logger.info("Webhook certificate reloaded: cert=%s", self._paths.cert)
        return True

    def _on_handshake(
        self, connection: ssl.SSLObject | ssl.SSLSocket, _name: str | None, _ctx: ssl.SSLContext
    ) -> None:
        self.refresh()
        connection.context = self._current

    def _load(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(certfile=self._paths.cert, keyfile=self._paths.key)
        return context

    def _read_stamp(self) -> tuple[int, int]:
        try:
            return (os.stat(self._paths.cert).st_mtime_ns, os.stat(self._paths.key).st_mtime_ns)
        except OSError:
            return (-1, -1)


class Server:
    """The webhook's HTTPS listener; `start` binds, `stop` closes."""

    def __init__(
        self,
        *,
        host: str,
        port: int,
        paths: certs.Paths,
        review: Review,
        observe: Observe | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.tls = ReloadingContext(paths)
        self._review = review
        self._observe = observe
        self._runner: aiohttp.web.AppRunner | None = None

    async def start(self) -> None:
        """Bind and serve; `port=0` picks a free port, readable from `.port` afterwards."""
        app = aiohttp.web.Application(client_max_size=MAX_BODY_BYTES)
        app.router.add_post(VALIDATE_PREFIX + "/{webhook}", self._handle)
        app.router.add_get("/healthz", _healthz)
        self._runner = aiohttp.web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        sock = socket.create_server((self.host, self.port), backlog=1024, reuse_port=False)
        self.port = sock.getsockname()[1]
        site = aiohttp.web.SockSite(self._runner, sock, ssl_context=self.tls.listening)
        await site.start()
        logger.info("Webhook server started: address=https://%s:%d", self.host, self.port)

    async def stop(self) -> None:
        """Close the listener and open connections; safe to call twice."""
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
            logger.info("Webhook server stopped: port=%d", self.port)

    async def _handle(self, request: aiohttp.web.Request) -> aiohttp.web.Response:
        try:
            body = await request.json(loads=json.loads)
        except (ValueError, UnicodeDecodeError):
            return aiohttp.web.json_response({"error": "the body is not JSON"}, status=400)
        if not isinstance(body, dict):
            return aiohttp.web.json_response({"error": "the body is not an object"}, status=400)
        started = time.perf_counter()
        answer = self._review(request.match_info["webhook"], body)
        if self._observe is not None:
            self._observe(time.perf_counter() - started)
        return aiohttp.web.json_response(answer, dumps=_dumps)


async def _healthz(_request: aiohttp.web.Request) -> aiohttp.web.Response:
    return aiohttp.web.Response(text="ok")


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


class Threaded:
    """Runs a `Server` on its own thread and event loop.

    The operator's event loop is busy with watches, the drift pipeline and
    status writes; a review queued behind that work would wait for it. On its
    own loop a review waits at most for the interpreter to switch threads.
    The review callable must therefore be thread-safe: `review.Reviewer` reads
    one published reference and hands side effects to callbacks that cross
    back with `call_soon_threadsafe`.
    """

    def __init__(self, server: Server) -> None:
        self.server = server
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def start(self) -> None:
        """Start the thread and wait until the server listens (raises what start raised)."""
        ready: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._thread = threading.Thread(
            target=self._run, args=(ready,), name="keepfix-webhook", daemon=True
        )
        self._thread.start()
        await asyncio.wrap_future(ready)

    async def stop(self) -> None:
        """Stop the server and its loop, and wait for the thread; safe to call twice."""
        loop, thread = self._loop, self._thread
        self._loop = self._thread = None
        if loop is not None and loop.is_running():
            loop.call_soon_threadsafe(loop.stop)
        if thread is not None:
            await asyncio.to_thread(thread.join)

    def _run(self, ready: concurrent.futures.Future[None]) -> None:
        loop = asyncio.new_event_loop()
        try:
            loop.run_until_complete(self.server.start())
        except BaseException as error:
            ready.set_exception(error)
            loop.close()
            return
        self._loop = loop
        ready.set_result(None)
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(self.server.stop())
            loop.close()
