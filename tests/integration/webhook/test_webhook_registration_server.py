"""The Registrar against the real API server: conditions applied, refused, and removed."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from webhook_helpers import webhook_configuration

from keepfix.adapters import kube
from keepfix.adapters.webhook import registration
from keepfix.api import conventions

pytestmark = pytest.mark.integration

MIT = conventions.WEBHOOK_MITIGATIONS
WANTED = {MIT: frozenset({("", "ConfigMap")})}
GOOD = {MIT: ({"name": "protected", "expression": 'request.name == "flags"'},)}


@pytest.fixture
async def registrar(cluster: Any) -> AsyncIterator[registration.Registrar]:
    async with await kube.connect(kubeconfig=str(cluster.kubeconfig)) as api:
        options = registration.Options(
            endpoint=registration.Endpoint(url="https://127.0.0.1:1"),
            ca_bundle=b"unused",
            operator_namespace="keepfix",
        )
        yield registration.Registrar(kube=api, options=options)
    cluster.kubectl(
        "delete",
        "validatingwebhookconfiguration",
        conventions.WEBHOOK_CONFIGURATION_NAME,
        "--ignore-not-found",
    )


def conditions_of(cluster: Any) -> list[dict[str, Any]] | None:
    body = webhook_configuration(cluster)
    assert body is not None
    [hook] = body["webhooks"]
    found: list[dict[str, Any]] | None = hook.get("matchConditions")
    return found


async def test_conditions_are_applied_then_removed(
    cluster: Any, registrar: registration.Registrar
) -> None:
    """A condition reaches the configuration; applying none later removes it."""
    assert await registrar.sync(WANTED, GOOD)
    assert conditions_of(cluster) == list(GOOD[MIT])
    assert await registrar.sync(WANTED, {})
    assert conditions_of(cluster) is None


async def test_refused_conditions_fall_back_to_reviewing_everything(
    cluster: Any, registrar: registration.Registrar
) -> None:
    """CEL the API server will not compile: the webhook is registered without a condition."""
    broken = {MIT: ({"name": "protected", "expression": "request.name ==="},)}
    assert await registrar.sync(WANTED, broken)
    assert conditions_of(cluster) is None
