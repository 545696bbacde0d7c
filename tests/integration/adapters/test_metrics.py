"""keepfix.adapters.metrics: the /metrics and /healthz server, scraped over HTTP."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest
from prometheus_client import parser

from keepfix.adapters import metrics

DESIGN_METRICS = {
    "keepfix_drift_detected": "counter",
    "keepfix_rollbacks": "counter",
    "keepfix_regressions": "counter",
    "keepfix_admission_reviews": "counter",
    "keepfix_admission_review_seconds": "histogram",
    "keepfix_drift_to_rollback_seconds": "histogram",
    "keepfix_regression_resolution_seconds": "histogram",
    "keepfix_watched_objects": "gauge",
    "keepfix_fights": "counter",
}


class Health:
    def __init__(self) -> None:
        self.value = True

    def __call__(self) -> bool:
        return self.value


@pytest.fixture
def meters() -> metrics.Metrics:
    return metrics.Metrics()


@pytest.fixture
def health() -> Health:
    return Health()


@pytest.fixture
async def server(meters: metrics.Metrics, health: Health) -> AsyncIterator[metrics.Server]:
    running = await metrics.serve(host="127.0.0.1", port=0, registry=meters.registry, health=health)
    yield running
    await running.close()


async def fetch(server: metrics.Server, path: str) -> tuple[int, str, str]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://{server.host}:{server.port}{path}") as response,
    ):
        return response.status, response.headers["Content-Type"], await response.text()


async def test_metrics_endpoint_serves_every_design_metric(
    server: metrics.Server, meters: metrics.Metrics
) -> None:
    """A scrape parses as Prometheus text and holds every metric of DESIGN.md with its labels."""
    meters.drift_detected.inc()
    meters.rollbacks.labels(result="Succeeded").inc()
    meters.regressions.labels(severity="Critical", category="ConfigDrift", team="shop-sre").inc()
    meters.admission_reviews.labels(kind="Deployment", verdict="Denied").inc()
    meters.admission_review_seconds.observe(0.002)
    meters.drift_to_rollback_seconds.observe(0.05)
    meters.regression_resolution_seconds.observe(3600)
    meters.watched_objects.set(7)
    meters.fights.inc()
    status, content_type, text = await fetch(server, "/metrics")
    assert (status, content_type.split(";")[0]) == (200, "text/plain")
    families = {f.name: f for f in parser.text_string_to_metric_families(text)}
    assert {name: families[name].type for name in DESIGN_METRICS} == DESIGN_METRICS
    regression = next(
        s for s in families["keepfix_regressions"].samples if s.name.endswith("_total")
    )
    assert (regression.labels, regression.value) == (
        {"severity": "Critical", "category": "ConfigDrift", "team": "shop-sre"},
        1.0,
    )
    review = next(s for s in families["keepfix_admission_reviews"].samples)
    assert review.labels == {"kind": "Deployment", "verdict": "Denied"}
    assert families["keepfix_watched_objects"].samples[0].value == 7.0


@pytest.mark.parametrize(
    ("name", "smallest", "largest"),
    [
        ("keepfix_drift_to_rollback_seconds", 0.001, 10.0),
        ("keepfix_regression_resolution_seconds", 60.0, 28 * 86400.0),
    ],
)
async def test_histogram_buckets_span_their_range(
    server: metrics.Server, name: str, smallest: float, largest: float
) -> None:
    """Latency buckets run from 1 ms to 10 s; resolution buckets from a minute to weeks."""
    _, _, text = await fetch(server, "/metrics")
    family = next(f for f in parser.text_string_to_metric_families(text) if f.name == name)
    bounds = sorted(float(s.labels["le"]) for s in family.samples if s.name.endswith("_bucket"))
    assert (bounds[0], bounds[-2], bounds[-1]) == (smallest, largest, float("inf"))


async def test_fresh_registries_do_not_share_counts() -> None:
    """Each Metrics has its own registry, so two instances never see each other's counts."""
    first, second = metrics.Metrics(), metrics.Metrics()
    first.fights.inc()
    assert first.registry.get_sample_value("keepfix_fights_total") == 1.0
    assert second.registry.get_sample_value("keepfix_fights_total") == 0.0


async def test_healthz_follows_the_health_callback(server: metrics.Server, health: Health) -> None:
    """/healthz answers 200 ok while healthy and 503 when not."""
    assert (await fetch(server, "/healthz"))[::2] == (200, "ok")
    health.value = False
    assert (await fetch(server, "/healthz"))[0] == 503


async def test_healthz_is_503_when_the_callback_raises(meters: metrics.Metrics) -> None:
    """A health callback that raises counts as unhealthy instead of a 500."""

    def broken() -> bool:
        raise RuntimeError("boom")

    running = await metrics.serve(host="127.0.0.1", port=0, registry=meters.registry, health=broken)
    try:
        assert (await fetch(running, "/healthz"))[0] == 503
    finally:
        await running.close()


async def test_close_frees_the_port(meters: metrics.Metrics) -> None:
    """After close() the same port can be bound again."""
    first = await metrics.serve(host="127.0.0.1", port=0, registry=meters.registry, health=Health())
    await first.close()
    second = await metrics.serve(
        host="127.0.0.1", port=first.port, registry=meters.registry, health=Health()
    )
    try:
        assert (await fetch(second, "/healthz"))[0] == 200
    finally:
        await second.close()


async def test_a_port_in_use_raises_oserror(
    server: metrics.Server, meters: metrics.Metrics
) -> None:
    """Serving on a port already taken raises OSError and the first server keeps serving."""
    with pytest.raises(OSError, match="in use"):
        await metrics.serve(
            host="127.0.0.1", port=server.port, registry=meters.registry, health=Health()
        )
    assert (await fetch(server, "/healthz"))[0] == 200
