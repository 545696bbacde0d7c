"""keepfix.adapters.events against a real kube-apiserver."""

from __future__ import annotations

import asyncio
import datetime
from collections.abc import AsyncIterator
from typing import Any

import pytest

from keepfix.adapters import events, kube, metrics

pytestmark = pytest.mark.integration

CONFIGMAPS = kube.Resource("", "v1", "ConfigMap", "configmaps", namespaced=True)
NAMESPACES = kube.Resource("", "v1", "Namespace", "namespaces", namespaced=False)


class Clock:
    """A settable UTC clock."""

    def __init__(self) -> None:
        self.now = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)

    def __call__(self) -> datetime.datetime:
        return self.now


@pytest.fixture
async def api(cluster: Any) -> AsyncIterator[kube.Kube]:
    async with await kube.connect(kubeconfig=str(cluster.kubeconfig)) as connection:
        yield connection


@pytest.fixture
async def target(api: kube.Kube, namespace: str) -> dict[str, Any]:
    return await api.create(
        CONFIGMAPS,
        body={
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "web", "namespace": namespace},
            "data": {"limit": "512Mi"},
        },
    )


async def events_in(api: kube.Kube, namespace: str) -> list[dict[str, Any]]:
    items, _ = await api.list(events.EVENTS, namespace=namespace)
    return items


async def test_repeats_become_one_event_with_a_series(
    api: kube.Kube, namespace: str, target: dict[str, Any]
) -> None:
    """Two records of the same thing make one Event whose series.count is 2."""
    recorder = events.EventRecorder(api, reporting_instance="keepfix-0")
    related = {
        "apiVersion": "keepfix.dev/v1alpha1",
        "kind": "Mitigation",
        "namespace": namespace,
        "name": "web-memory-fix",
        "uid": "0f9a1c52-0000-4000-8000-000000000001",
    }
    for _ in range(2):
        await recorder.record(
            regarding=target,
            related=related,
            type="Warning",
            reason="DriftDetected",
            action="Detect",
            note="Deployment web drifted: limits.memory is 128Mi, stable 512Mi",
        )
    [event] = await events_in(api, namespace)
    assert event["series"]["count"] == 2
    assert event["regarding"] == {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "namespace": namespace,
        "name": "web",
        "uid": target["metadata"]["uid"],
    }
    assert event["related"]["name"] == "web-memory-fix"
    assert (event["reason"], event["type"], event["action"]) == (
        "DriftDetected",
        "Warning",
        "Detect",
    )
    assert (event["reportingController"], event["reportingInstance"]) == (
        "keepfix.dev/operator",
        "keepfix-0",
    )
    assert recorder.recorded == 2


async def test_different_notes_or_note_keys_are_different_events(
    api: kube.Kube, namespace: str, target: dict[str, Any]
) -> None:
    """A different note starts another Event; a shared note_key joins the series."""
    recorder = events.EventRecorder(api, reporting_instance="keepfix-0")
    common: dict[str, Any] = {
        "regarding": target,
        "type": "Normal",
        "reason": "DriftRolledBack",
        "action": "Rollback",
    }
    await recorder.record(**common, note="one")
    await recorder.record(**common, note="two")
    await recorder.record(**common, note="three, same key", note_key="k")
    await recorder.record(**common, note="four, same key", note_key="k")
    found = await events_in(api, namespace)
    counts = sorted((e.get("series") or {}).get("count", 1) for e in found)
    assert counts == [1, 1, 2]


async def test_a_repeat_after_the_window_starts_a_new_event(
    api: kube.Kube, namespace: str, target: dict[str, Any]
) -> None:
    """After series_window without a repeat, the next occurrence is a new Event."""
    clock = Clock()
    recorder = events.EventRecorder(
        api,
        reporting_instance="keepfix-0",
        clock=clock,
        series_window=datetime.timedelta(minutes=6),
    )
    say: dict[str, Any] = {
        "regarding": target,
        "type": "Warning",
        "reason": "DriftDetected",
        "action": "Detect",
    }
    await recorder.record(**say, note="n")
    clock.now += datetime.timedelta(minutes=5)
    await recorder.record(**say, note="n")
    clock.now += datetime.timedelta(minutes=7)
    await recorder.record(**say, note="n")
    found = await events_in(api, namespace)
    assert sorted((e.get("series") or {}).get("count", 1) for e in found) == [1, 2]
    series = next(e["series"] for e in found if e.get("series"))
    assert series["lastObservedTime"].startswith("2026-01-01T00:05:00")


async def test_a_deleted_event_is_recreated(
    api: kube.Kube, namespace: str, target: dict[str, Any]
) -> None:
    """When the Event of a series is gone (TTL), the next repeat creates a new one."""
    recorder = events.EventRecorder(api, reporting_instance="keepfix-0")
    say: dict[str, Any] = {
        "regarding": target,
        "type": "Warning",
        "reason": "DriftDetected",
        "action": "Detect",
    }
    first = await recorder.record(**say, note="n")
    assert first is not None
    await api.delete(events.EVENTS, namespace=namespace, name=first["metadata"]["name"])
    second = await recorder.record(**say, note="n")
    assert second is not None
    assert second["metadata"]["name"] != first["metadata"]["name"]
    assert [e["metadata"]["name"] for e in await events_in(api, namespace)] == [
        second["metadata"]["name"]
    ]


async def test_long_notes_are_capped_at_1_kib(
    api: kube.Kube, namespace: str, target: dict[str, Any]
) -> None:
    """A note over 1 KiB is cut (multi-byte safe) and the API server accepts it."""
    recorder = events.EventRecorder(api, reporting_instance="keepfix-0")
    written = await recorder.record(
        regarding=target, type="Warning", reason="DriftDetected", action="Detect", note="é" * 2000
    )
    assert written is not None
    assert len(written["note"].encode()) <= 1024
    assert written["note"].endswith("...")


async def test_cluster_scoped_objects_get_events_in_default(api: kube.Kube, namespace: str) -> None:
    """An Event about a cluster-scoped object lives in the default namespace."""
    regarding = await api.get(NAMESPACES, namespace=None, name=namespace)
    assert regarding is not None
    recorder = events.EventRecorder(api, reporting_instance="keepfix-0")
    written = await recorder.record(
        regarding=regarding | {"apiVersion": "v1", "kind": "Namespace"},
        type="Normal",
        reason="GuardrailViolation",
        action="Audit",
        note=f"probe {namespace}",
    )
    assert written is not None
    assert written["metadata"]["namespace"] == "default"
    await api.delete(events.EVENTS, namespace="default", name=written["metadata"]["name"])


async def test_failures_are_counted_not_raised(api: kube.Kube) -> None:
    """An Event the API refuses returns None, is counted, and never raises."""
    meters = metrics.Metrics()
    recorder = events.EventRecorder(api, reporting_instance="keepfix-0", metrics=meters)
    result = await recorder.record(
        regarding={"apiVersion": "v1", "kind": "ConfigMap", "namespace": "no-such-ns", "name": "x"},
        type="Warning",
        reason="DriftDetected",
        action="Detect",
        note="n",
    )
    assert (result, recorder.failures) == (None, 1)
    assert meters.registry.get_sample_value("keepfix_event_failures_total") == 1.0


async def test_concurrent_repeats_share_one_event(
    api: kube.Kube, namespace: str, target: dict[str, Any]
) -> None:
    """Five repeats recorded at once still make one Event, with series.count 5."""
    recorder = events.EventRecorder(api, reporting_instance="keepfix-0")
    say: dict[str, Any] = {
        "regarding": target,
        "type": "Warning",
        "reason": "FightDetected",
        "action": "Detect",
        "note": "n",
    }
    await asyncio.gather(*(recorder.record(**say) for _ in range(5)))
    [event] = await events_in(api, namespace)
    assert event["series"]["count"] == 5


async def test_series_memory_is_bounded(
    api: kube.Kube, namespace: str, target: dict[str, Any]
) -> None:
    """Past max_series, the oldest series is forgotten: its next repeat starts a new Event."""
    recorder = events.EventRecorder(api, reporting_instance="keepfix-0", max_series=2)
    say: dict[str, Any] = {"regarding": target, "type": "Normal", "reason": "R", "action": "A"}
    for note in ("first", "second", "third", "third", "first"):
        await recorder.record(**say, note=note)
    found = await events_in(api, namespace)
    by_note = sorted((e["note"], (e.get("series") or {}).get("count", 1)) for e in found)
    assert by_note == [("first", 1), ("first", 1), ("second", 1), ("third", 2)]
