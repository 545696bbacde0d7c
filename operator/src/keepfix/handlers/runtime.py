"""The operator's process-wide parts, made at start-up and closed at shutdown.

Kopf handlers are module-level functions; they find the Kubernetes client,
the WatchManager, the event recorder, the metrics and the drift pipeline
here. `start` builds them from `OperatorSettings`; `stop` closes them in
reverse order. Nothing here decides anything.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import logging
import os
import socket
from collections.abc import Awaitable, Callable, Iterator

from prometheus_client.core import GaugeMetricFamily, Metric

from keepfix.adapters import events, kube, watches
from keepfix.adapters import metrics as metrics_
from keepfix.api import settings as settings_
from keepfix.handlers import drift, registry

logger = logging.getLogger(__name__)

#: A WatchManager subscriber: the drift pipeline, the Guardrail audit.
Listener = Callable[[watches.WatchEvent], Awaitable[None]]


@dataclasses.dataclass
class Runtime:
    """Everything the handlers share."""

    settings: settings_.OperatorSettings
    kube: kube.Kube
    metrics: metrics_.Metrics
    recorder: events.EventRecorder
    watches: watches.WatchManager
    pipeline: drift.Pipeline
    listeners: list[Listener] = dataclasses.field(default_factory=list)
    server: metrics_.Server | None = None
    ready: bool = False
    background: list[asyncio.Task[None]] = dataclasses.field(default_factory=list)


_current: Runtime | None = None


def get() -> Runtime:
    """The running Runtime; RuntimeError before start-up finished."""
    if _current is None:
        raise RuntimeError("The keepfix runtime is not started")
    return _current


def healthy() -> bool:
    """/healthz: started, not stopping, and no watch task has died."""
    return _current is not None and _current.ready


async def start(settings: settings_.OperatorSettings) -> Runtime:
    """Connect, serve /metrics and /healthz, and make the pipeline and WatchManager."""
    global _current  # noqa: PLW0603 - one runtime per process
    registry.reset()
    client = await kube.connect()
    meters = metrics_.Metrics()
    recorder = events.EventRecorder(
        client,
        reporting_instance=os.environ.get("POD_NAME") or socket.gethostname(),
        series_window=datetime.timedelta(seconds=settings.event_series_window),
        metrics=meters,
    )
    pipeline = drift.Pipeline(
        kube=client,
        recorder=recorder,
        metrics=meters,
        settings=settings,
        registry=registry.current,
    )
    listeners: list[Listener] = [pipeline.on_event]

    async def fan_out(event: watches.WatchEvent) -> None:
        for listener in listeners:
            await listener(event)

    manager = watches.WatchManager(
        client, on_event=fan_out, metrics=meters, backoff_max=settings.watch_backoff_cap
    )
    rt = Runtime(settings, client, meters, recorder, manager, pipeline, listeners=listeners)
    rt.server = await metrics_.serve(
        host=settings.metrics_host,
        port=settings.metrics_port,
        registry=meters.registry,
        health=healthy,
    )
    open_watches = _WatchesGauge(meters, manager)
    open_watches.register()
    logger.info("Serving /metrics and /healthz: port=%d", rt.server.port)
    _current = rt
    return rt


async def stop() -> None:
    """Stop background work, watches, the server and the client; safe to call twice."""
    global _current
    rt, _current = _current, None
    if rt is None:
        return
    rt.ready = False
    for task in rt.background:
        task.cancel()
    await asyncio.gather(*rt.background, return_exceptions=True)
    await rt.watches.close()
    await rt.pipeline.close()
    if rt.server is not None:
        await rt.server.close()
    await rt.kube.close()


class _WatchesGauge:
    """keepfix_open_watches{api_version,kind,namespace,scope}: the streams open right now.

    Tests and people check that deleting the last Mitigation of a kind stops
    its watch, and that untargeted kinds are never watched.
    """

    def __init__(self, meters: metrics_.Metrics, manager: watches.WatchManager) -> None:
        self._meters = meters
        self._manager = manager

    def register(self) -> None:
        self._meters.registry.register(self)

    def collect(self) -> Iterator[Metric]:

        family = GaugeMetricFamily(
            "keepfix_open_watches",
            "Watch streams open now, by target kind and scope.",
            labels=["api_version", "kind", "namespace", "scope"],
        )
        counts: dict[tuple[str, str, str, str], int] = {}
        for key in self._manager.open_watches():
            scope = "name" if key.name else ("selector" if key.label_selector else "all")
            label = (key.api_version, key.kind, key.namespace or "", scope)
            counts[label] = counts.get(label, 0) + 1
        for label, count in counts.items():
            family.add_metric(list(label), count)
        yield family
