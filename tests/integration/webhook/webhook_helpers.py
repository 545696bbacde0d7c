"""Helpers shared by the webhook integration tests (importable, unlike conftest.py)."""

from __future__ import annotations

import json
from typing import Any

from keepfix.api import conventions


def webhook_configuration(cluster: Any) -> dict[str, Any] | None:
    """keepfix's ValidatingWebhookConfiguration as the API server has it; None if absent."""
    proc = cluster.kubectl(
        "get",
        "validatingwebhookconfiguration",
        conventions.WEBHOOK_CONFIGURATION_NAME,
        "-o",
        "json",
        check=False,
    )
    if proc.returncode != 0:
        return None
    body: dict[str, Any] = json.loads(proc.stdout)
    return body
