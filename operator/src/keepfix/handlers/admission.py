"""The admission webhook inside the operator process, started and stopped with Kopf.

On start-up, `--webhook=dev|service` (or `auto`) starts
`keepfix.adapters.webhook.service.Webhook`: the HTTPS server answering
AdmissionReviews from `registry.policy_set()` (the PolicySet the registry
swaps on every Mitigation or Guardrail change, so a new Guardrail is
enforced without a restart) and the loop that keeps the
ValidatingWebhookConfiguration listing exactly the enforced kinds.
`--webhook=off` serves nothing and deletes a configuration left by an
earlier run, so that no stale webhook points at a port nobody serves.

The review itself lives in `keepfix.adapters.webhook.review` (pure over the
AdmissionReview wire format); this module only wires settings, the Kube
client, the metrics and the registry to it.
"""

from __future__ import annotations

import logging
import pathlib
from typing import Any

import kopf

from keepfix.adapters import kube as kube_mod
from keepfix.adapters import metrics as metrics_mod
from keepfix.adapters.webhook import registration, service
from keepfix.api import settings as settings_mod
from keepfix.handlers import registry, runtime

logger = logging.getLogger(__name__)

_webhook: service.Webhook | None = None


def config(settings: settings_mod.OperatorSettings, mode: service.Mode) -> service.Config:
    """The webhook's configuration from the operator's settings."""
    return service.Config(
        mode=mode,
        host=settings.webhook_host,
        port=settings.webhook_port,
        cert_dir=pathlib.Path(settings.webhook_cert_dir) if settings.webhook_cert_dir else None,
        failure_policy=settings.webhook_failure_policy,
        timeout_seconds=settings.webhook_timeout_seconds,
        operator_namespace=settings.operator_namespace,
        service_name=settings.webhook_service_name,
        service_namespace=settings.webhook_service_namespace or settings.operator_namespace,
    )


async def start(
    *,
    settings: settings_mod.OperatorSettings,
    kube: kube_mod.Kube,
    metrics: metrics_mod.Metrics | None,
) -> service.Webhook | None:
    """Start the webhook the settings ask for; None for `off` (after removing a stale one)."""
    mode = service.resolve_mode(settings.webhook, api_server=kube.host)
    if mode is None:
        await registration.remove(kube=kube)
        return None
    webhook = service.Webhook(
        config=config(settings, mode),
        kube=kube,
        policies=registry.policy_set,
        metrics=metrics,
    )
    await webhook.start()
    logger.info("Admission webhook started: mode=%s port=%d", mode, webhook.server.port)
    return webhook


@kopf.on.startup()
async def start_webhook(**_: Any) -> None:
    """Serve and register the webhook once the shared runtime is up (Kopf startup hook)."""
    global _webhook  # noqa: PLW0603 - one webhook per operator process
    try:
        rt = runtime.get()
    except RuntimeError:
        raise kopf.TemporaryError("The keepfix runtime is not started yet", delay=0.2) from None
    _webhook = await start(settings=rt.settings, kube=rt.kube, metrics=rt.metrics)


@kopf.on.cleanup()
async def stop_webhook(**_: Any) -> None:
    """Stop serving; the webhook configuration stays (see adapters.webhook.registration)."""
    global _webhook
    webhook, _webhook = _webhook, None
    if webhook is not None:
        await webhook.stop()
