"""Kopf wiring: logging, Kopf settings, start-up and shutdown, `kopf.run`.

Kopf only watches keepfix's own kinds (Mitigations, Guardrails) and only with
`kopf.on.event` handlers, so it needs no progress or diff-base storage and
writes nothing on any object: no annotations, no finalizers. Target objects
are watched by `adapters.watches`, never by Kopf. Kopf's own Event posting is
off: keepfix writes events.k8s.io/v1 Events itself.
"""

from __future__ import annotations

import asyncio
import datetime
import importlib.util
import json
import logging
from typing import Any

import kopf

from keepfix.api import settings as settings_
from keepfix.handlers import guardrails, mitigations, runtime

logger = logging.getLogger(__name__)

_settings: settings_.OperatorSettings | None = None


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message (and the error, if any)."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.datetime.fromtimestamp(record.created, datetime.UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure_logging(settings: settings_.OperatorSettings) -> None:
    """Root logging to stderr in the chosen format and level."""
    handler = logging.StreamHandler()
    if settings.log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.log_level.upper())
    for noisy in ("aiohttp.access", "kubernetes_asyncio", "kopf.objects"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


@kopf.on.startup()
async def startup(settings: kopf.OperatorSettings, **_: Any) -> None:
    """Kopf settings, then the shared runtime and its background loops."""
    ours = _settings or settings_.OperatorSettings.from_env()
    settings.posting.enabled = False
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="keepfix.dev")
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix="keepfix.dev", key="last-handled-configuration"
    )
    settings.watching.server_timeout = 300
    rt = await runtime.start(ours)
    rt.listeners.append(guardrails.on_event)
    rt.background.append(asyncio.create_task(mitigations.expiry_loop()))
    rt.background.append(asyncio.create_task(mitigations.resync_loop()))
    rt.ready = True
    logger.info(
        "Operator started: namespaces=%s standalone=%s webhook=%s",
        ",".join(ours.namespaces) or "all",
        ours.standalone,
        ours.webhook,
    )


@kopf.on.cleanup()
async def cleanup(**_: Any) -> None:
    """Stop everything started at start-up."""
    await runtime.stop()
    logger.info("Operator stopped")


def run(settings: settings_.OperatorSettings) -> None:
    """Run Kopf until SIGINT/SIGTERM."""
    global _settings  # noqa: PLW0603 - Kopf's startup handler reads it
    _settings = settings
    configure_logging(settings)
    _ = guardrails  # imported for its Kopf handlers
    # The webhook module handles every mode, `off` included (it removes a stale configuration).
    if importlib.util.find_spec("keepfix.handlers.admission"):
        importlib.import_module("keepfix.handlers.admission")
    kopf.run(
        standalone=settings.standalone,
        peering_name=settings.peering_name,
        priority=settings.priority,
        clusterwide=settings.all_namespaces,
        namespaces=list(settings.namespaces),
    )
