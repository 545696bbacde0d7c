"""Drift.rollback against an in-memory Kube: re-read and re-plan on 422, report refusals."""

from __future__ import annotations

import copy
import datetime
from typing import Any

import jsonpatch

from keepfix.adapters import kube, metrics
from keepfix.api import models, settings
from keepfix.core import diff
from keepfix.handlers import drift, registry

RESOURCE = kube.Resource("", "v1", "ConfigMap", "configmaps", True)


class FakeKube:
    """The Kube methods rollback uses; `writes` are applied between read and patch."""

    def __init__(self, obj: dict[str, Any], *, writes: list[dict[str, str]], refuse: bool = False):
        self.obj = obj
        self.writes = writes
        self.refuse = refuse
        self.patches: list[list[dict[str, Any]]] = []

    async def resource_for(self, api_version: str, kind: str) -> kube.Resource:
        return RESOURCE

    async def get(self, resource: kube.Resource, *, namespace: str | None, name: str) -> Any:
        return copy.deepcopy(self.obj)

    async def json_patch(self, resource: kube.Resource, *, ops: Any, **_: Any) -> dict[str, Any]:
        self.patches.append(list(ops))
        if self.refuse:
            raise kube.Invalid(422, "Invalid", 'data.a: Invalid value: "c2VjcmV0"')
        if self.writes:  # someone else writes between our read and our patch
            self.obj["data"].update(self.writes.pop(0))
        try:
            self.obj = jsonpatch.apply_patch(self.obj, list(ops))
        except jsonpatch.JsonPatchTestFailed:
            raise kube.Invalid(422, "Invalid", "the test operation failed") from None
        return copy.deepcopy(self.obj)


def pipeline(fake: FakeKube) -> drift.Pipeline:
    return drift.Pipeline(
        kube=fake,  # type: ignore[arg-type]
        recorder=None,  # type: ignore[arg-type]
        metrics=metrics.Metrics(),
        settings=settings.OperatorSettings(),
        registry=registry.Registry(),
    )


def entry(kind: str = "ConfigMap") -> registry.MitigationEntry:
    model = models.Mitigation.model_validate(
        {
            "metadata": {"name": "m", "namespace": "ns"},
            "spec": {
                "target": {"apiVersion": "v1", "kind": kind, "name": "c"},
                "fields": [{"path": "data.a", "value": "good"}],
            },
        }
    )
    return registry.MitigationEntry(
        namespace="ns", name="m", uid="u", generation=1, body={}, model=model,
        fields=(diff.ProtectedField("data.a", "good"),), to_capture=(), stable=[],
        watch_key=registry.watch_key(model, "ns"),
        mitigated_at=datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC),
        window=datetime.timedelta(days=30),
    )  # fmt: skip


def live(**data: str) -> dict[str, Any]:
    meta = {"name": "c", "namespace": "ns"}
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": data}


async def test_a_concurrent_change_is_replanned_and_kept() -> None:
    """422 from a changed protected field: read again, plan again; other fields stay."""
    obj = live(a="bad", b="x")
    fake = FakeKube(copy.deepcopy(obj), writes=[{"a": "worse", "b": "newer"}])
    e = entry()
    outcome = await pipeline(fake).rollback(e, obj, diff.diff(e.fields, obj), arrived=0.0)
    assert outcome.action == "RolledBack"
    assert fake.obj["data"] == {"a": "good", "b": "newer"}
    assert len(fake.patches) == 2
    assert all(op["path"] == "/data/a" for ops in fake.patches for op in ops)
    assert e.rollbacks == 1


async def test_a_refused_rollback_reports_the_api_reason() -> None:
    """Retries end in RollbackFailed carrying the API's reason and message."""
    obj = live(a="bad")
    fake = FakeKube(copy.deepcopy(obj), writes=[], refuse=True)
    e = entry()
    outcome = await pipeline(fake).rollback(e, obj, diff.diff(e.fields, obj), arrived=0.0)
    assert outcome.action == "RollbackFailed"
    assert outcome.reason.startswith("Invalid: data.a: Invalid value")
    assert len(fake.patches) == settings.OperatorSettings().rollback_retries


async def test_a_refused_secret_rollback_keeps_the_message_out() -> None:
    """For a Secret only the reason is kept: the API's message may quote the value."""
    obj = {**live(a="bad"), "kind": "Secret"}
    fake = FakeKube(copy.deepcopy(obj), writes=[], refuse=True)
    e = entry("Secret")
    outcome = await pipeline(fake).rollback(e, obj, diff.diff(e.fields, obj), arrived=0.0)
    assert outcome.reason == "Invalid"
    assert "c2VjcmV0" not in outcome.reason
