"""The admission webhook as one running thing: certificates, server, registration.

`Webhook.start` makes or finds the TLS files, starts the HTTPS server on its
own thread and event loop (`server.Threaded`: a review never queues behind
the operator's work), registers the ValidatingWebhookConfiguration and starts
two background tasks on the operator's loop: the sync loop (publishes a new
PolicySet to the reviewer as soon as the getter returns one, re-registers
when it or the CA file changed, and every `resync_interval` to pick up kinds
whose CRD arrived later) and the `status.prevented` flusher. `stop` ends them
and closes the server, leaving the configuration in place (see
`registration`).

Modes: `dev` registers `https://127.0.0.1:PORT` (the API server runs on this
machine); `service` registers the Service in front of the operator; `auto`
is `dev` when the API server's URL is on loopback.

TLS files: a `cert_dir` that already holds `tls.crt` and `tls.key` (a
cert-manager Secret) is used as it is and reloaded when it changes; otherwise
a CA and serving certificate are generated into `cert_dir` (or a private
temporary folder). The caBundle is `ca.crt`, or `tls.crt` when there is no
CA file (a self-signed certificate).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime
import ipaddress
import logging
import os
import pathlib
import shutil
import sys
import tempfile
import urllib.parse
from collections.abc import Callable
from typing import Final, Literal

from keepfix.adapters import kube as kube_mod
from keepfix.adapters import metrics as metrics_mod
from keepfix.adapters.webhook import certs, prevented, registration, review, server
from keepfix.core import policy

logger = logging.getLogger(__name__)

Mode = Literal["dev", "service"]
DEV_HOSTS: Final = ("127.0.0.1", "localhost")
SYNC_INTERVAL: Final = 0.25
RESYNC_INTERVAL: Final = 60.0
#: Seconds a thread holds the GIL before another may run (Python default 0.005).
SWITCH_INTERVAL: Final = 0.0005


@dataclasses.dataclass(frozen=True)
class Config:
    """How the webhook is served and registered (from `OperatorSettings`)."""

    mode: Mode
    host: str = "0.0.0.0"
    port: int = 9443
    cert_dir: pathlib.Path | None = None
    failure_policy: str = "Ignore"
    timeout_seconds: int = 3
    operator_namespace: str = "keepfix"
    service_name: str = "keepfix-webhook"
    service_namespace: str = "keepfix"
    service_port: int = 443
    sync_interval: float = SYNC_INTERVAL
    resync_interval: float = RESYNC_INTERVAL
    prevented_interval: float = prevented.FLUSH_INTERVAL


def resolve_mode(mode: str, *, api_server: str) -> Mode | None:
    """`dev`, `service`, or None for `off`; `auto` is `dev` for a loopback API server."""
    if mode == "off":
        return None
    if mode in ("dev", "service"):
        return "dev" if mode == "dev" else "service"
    host = urllib.parse.urlsplit(api_server).hostname or ""
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    return "dev" if loopback else "service"


class Webhook:
    """The running webhook; `start` once, `stop` once."""

    def __init__(
        self,
        *,
        config: Config,
        kube: kube_mod.Kube,
        policies: review.PolicyGetter,
        metrics: metrics_mod.Metrics | None = None,
        clock: Callable[[], datetime.datetime] | None = None,
    ) -> None:
        self.config = config
        self._kube = kube
        self._policies = policies
        self._metrics = metrics
        self._clock = clock or (lambda: datetime.datetime.now(datetime.UTC))
        self.prevented = prevented.PreventedCounter(kube=kube, interval=config.prevented_interval)
        self.reviewer = review.Reviewer(on_prevented=self._prevented, on_counted=self._count)
        self.reviewer.publish(policies())
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tmp: pathlib.Path | None = None
        self.paths = self._certificates()
        self.server = server.Server(
            host=config.host,
            port=config.port,
            paths=self.paths,
            review=self.reviewer,
            observe=self._observe,
        )
        self._threaded = server.Threaded(self.server)
        self.registrar: registration.Registrar | None = None
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        """Serve (on the server's own thread), register, and start the background loops."""
        self._loop = asyncio.get_running_loop()
        # The review thread needs the GIL a few times per request and waits up to
        # one switch interval each time while the operator's loop computes; the
        # default 5 ms would add tens of milliseconds to a review under load.
        sys.setswitchinterval(min(sys.getswitchinterval(), SWITCH_INTERVAL))
        await self._threaded.start()
        self.registrar = registration.Registrar(kube=self._kube, options=self._options())
        with contextlib.suppress(kube_mod.ApiError):
            await self.sync()
        self._tasks = [
            asyncio.create_task(self._sync_loop(), name="keepfix-webhook-sync"),
            asyncio.create_task(self.prevented.run(), name="keepfix-webhook-prevented"),
        ]

    async def stop(self) -> None:
        """Stop the loops (writing pending counts once more) and the server."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        try:
            await self.prevented.flush()
        except Exception as error:  # the client may already be closed at shutdown
            logger.warning("Prevented counts not written at shutdown: %s", error)
        await self._threaded.stop()
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)

    async def sync(self, *, force: bool = False) -> bool:
        """Register what the current PolicySet enforces; True when the cluster was written."""
        assert self.registrar is not None, "start() first"
        if force:
            self.registrar = registration.Registrar(kube=self._kube, options=self._options())
        try:
            current = self._publish()
            written = await self.registrar.sync(
                registration.targets(current), registration.conditions(current)
            )
        except kube_mod.ApiError as error:
            logger.warning("ValidatingWebhookConfiguration not applied: %s", error)
            raise
        self.reviewer.scale_kinds = dict(self.registrar.kinds_by_resource)
        return written

    async def _sync_loop(self) -> None:
        seen = (self.reviewer.published, _mtime(self._ca_file()))
        since = 0.0
        while True:
            await asyncio.sleep(self.config.sync_interval)
            since += self.config.sync_interval
            now = (self._publish(), _mtime(self._ca_file()))
            due = since >= self.config.resync_interval
            if now[0] is seen[0] and now[1] == seen[1] and not due:
                continue
            try:
                await self.sync(force=due or now[1] != seen[1])
            except kube_mod.ApiError:
                continue  # logged; the next tick retries
            except Exception:
                logger.exception("ValidatingWebhookConfiguration sync failed")
                continue
            seen, since = now, (0.0 if due else since)

    def _publish(self) -> policy.PolicySet:
        # Reviews see a new PolicySet from here, a sync-loop tick after the registry.
        current = self._policies()
        if current is not self.reviewer.published:
            self.reviewer.publish(current)
        return current

    def _prevented(self, ref: policy.Ref) -> None:
        # Called on the server's thread; the counter lives on the operator's loop.
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self.prevented.add, ref)

    def _options(self) -> registration.Options:
        c = self.config
        if c.mode == "dev":
            endpoint = registration.Endpoint(url=f"https://127.0.0.1:{self.server.port}")
        else:
            endpoint = registration.Endpoint(
                service_namespace=c.service_namespace,
                service_name=c.service_name,
                service_port=c.service_port,
            )
        return registration.Options(
            endpoint=endpoint,
            ca_bundle=self._ca_file().read_bytes(),
            operator_namespace=c.operator_namespace,
            failure_policy=c.failure_policy,
            timeout_seconds=c.timeout_seconds,
        )

    def _certificates(self) -> certs.Paths:
        given = self.config.cert_dir
        if given is not None:
            paths = certs.Paths.in_dir(given)
            if paths.cert.is_file() and paths.key.is_file():
                logger.info("Webhook certificate found: dir=%s", given)
                return paths
        directory = given
        if directory is None:
            self._tmp = directory = pathlib.Path(tempfile.mkdtemp(prefix="keepfix-webhook-"))
        hosts = (
            *DEV_HOSTS,
            *certs.service_names(
                name=self.config.service_name, namespace=self.config.service_namespace
            ),
        )
        logger.info("Webhook certificate generated: dir=%s", directory)
        return certs.write(certs.generate(hosts=hosts, now=self._clock()), directory=directory)

    def _ca_file(self) -> pathlib.Path:
        return self.paths.ca if self.paths.ca.is_file() else self.paths.cert

    def _count(self, kind: str, verdict: str) -> None:
        if self._metrics is not None:
            self._metrics.admission_reviews.labels(kind=kind, verdict=verdict).inc()

    def _observe(self, seconds: float) -> None:
        if self._metrics is not None:
            self._metrics.admission_review_seconds.observe(seconds)


def _mtime(path: pathlib.Path) -> int:
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return -1
