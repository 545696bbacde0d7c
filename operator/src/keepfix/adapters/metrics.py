"""Prometheus metrics and the /metrics + /healthz server.

Every metric of DESIGN.md lives on one `Metrics` object with its own
`CollectorRegistry` (never the global default), so tests and a second
operator in one process each get fresh counters.

Label values are names only: a kind, a verdict, a result, a severity, a
category, a team. Callers never pass object contents, field values or
anything read from a Secret as a label value (a label value is public to
anyone who can scrape the endpoint, and each distinct value is a new series).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from typing import Final

import prometheus_client
from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

logger = logging.getLogger(__name__)

#: drift-to-rollback: 1 ms .. 10 s (the target is p99 under 1 s).
ROLLBACK_BUCKETS: Final = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)
#: regression resolution: 1 minute .. 4 weeks.
RESOLUTION_BUCKETS: Final = (
    60.0,
    300.0,
    900.0,
    1800.0,
    3600.0,
    3 * 3600.0,
    6 * 3600.0,
    12 * 3600.0,
    86400.0,
    2 * 86400.0,
    7 * 86400.0,
    14 * 86400.0,
    28 * 86400.0,
)
#: admission review latency: 0.5 ms .. 3 s (the webhook timeout).
ADMISSION_BUCKETS: Final = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    3.0,
)


class Metrics:
    """All of keepfix's metrics, registered on `registry` (a fresh one if None).

    Attributes (use `.inc()`, `.labels(...).inc()`, `.observe()`, `.set()`):

    - drift_detected: keepfix_drift_detected_total
    - rollbacks: keepfix_rollbacks_total{result} (result: Succeeded | Failed | Skipped)
    - regressions: keepfix_regressions_total{severity,category,team}
    - admission_reviews: keepfix_admission_reviews_total{kind,verdict}
      (verdict: Allowed | Denied | Warned | Audited)
    - admission_review_seconds: keepfix_admission_review_seconds (histogram)
    - drift_to_rollback_seconds: keepfix_drift_to_rollback_seconds (histogram)
    - regression_resolution_seconds: keepfix_regression_resolution_seconds (histogram)
    - watched_objects: keepfix_watched_objects (gauge, set by the WatchManager)
    - fights: keepfix_fights_total
    - event_failures: keepfix_event_failures_total (Events the API refused)
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.drift_detected = Counter(
            "keepfix_drift_detected_total", "Drifts of protected fields detected.", registry=r
        )
        self.rollbacks = Counter(
            "keepfix_rollbacks_total",
            "Rollbacks of drifted fields, by result.",
            ["result"],
            registry=r,
        )
        self.regressions = Counter(
            "keepfix_regressions_total",
            "Regressions recorded (new or recurring), by severity, category and team.",
            ["severity", "category", "team"],
            registry=r,
        )
        self.admission_reviews = Counter(
            "keepfix_admission_reviews_total",
            "Admission reviews answered, by kind and verdict.",
            ["kind", "verdict"],
            registry=r,
        )
        self.admission_review_seconds = Histogram(
            "keepfix_admission_review_seconds",
            "Time to answer one admission review.",
            buckets=ADMISSION_BUCKETS,
            registry=r,
        )
        self.drift_to_rollback_seconds = Histogram(
            "keepfix_drift_to_rollback_seconds",
            "Time from seeing a drift to the rollback being accepted by the API server.",
            buckets=ROLLBACK_BUCKETS,
            registry=r,
        )
        self.regression_resolution_seconds = Histogram(
            "keepfix_regression_resolution_seconds",
            "Time from a regression being opened to its resolution (regression MTTR).",
            buckets=RESOLUTION_BUCKETS,
            registry=r,
        )
        self.watched_objects = Gauge(
            "keepfix_watched_objects", "Objects currently watched for drift.", registry=r
        )
        self.fights = Counter(
            "keepfix_fights_total", "Fights with another writer detected.", registry=r
        )
        self.event_failures = Counter(
            "keepfix_event_failures_total",
            "Kubernetes Events that could not be written.",
            registry=r,
        )

    def exposition(self) -> bytes:
        """The metrics in the Prometheus text format."""
        return bytes(prometheus_client.generate_latest(self.registry))


@dataclasses.dataclass
class Server:
    """A running /metrics + /healthz server; `port` is the bound port (useful with port=0)."""

    runner: web.AppRunner
    host: str
    port: int

    async def close(self) -> None:
        """Stop serving; safe to call twice."""
        await self.runner.cleanup()


async def serve(
    *,
    host: str,
    port: int,
    registry: CollectorRegistry,
    health: Callable[[], bool],
) -> Server:
    """Serve GET /metrics (Prometheus text) and GET /healthz (200 `ok` or 503).

    `health` is called on each /healthz request and must be quick; an
    exception from it counts as unhealthy. port=0 binds a free port; a port
    in use raises OSError (nothing is left running).
    """

    async def metrics_handler(_: web.Request) -> web.Response:
        body = prometheus_client.generate_latest(registry)
        return web.Response(
            body=body, headers={"Content-Type": prometheus_client.CONTENT_TYPE_LATEST}
        )

    async def health_handler(_: web.Request) -> web.Response:
        try:
            healthy = bool(health())
        except Exception:
            logger.exception("Health check raised")
            healthy = False
        if healthy:
            return web.Response(text="ok")
        return web.Response(text="unhealthy", status=503)

    app = web.Application()
    app.router.add_get("/metrics", metrics_handler)
    app.router.add_get("/healthz", health_handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    try:
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    bound = port
    for address in runner.addresses:
        bound = int(address[1])
        break
    return Server(runner=runner, host=host, port=bound)
