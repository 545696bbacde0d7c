"""The operator's settings: one pydantic model, from flags and environment.

Every setting has a flag and an environment variable with the same name:
field `metrics_port` is `--metrics-port` and `KEEPFIX_METRICS_PORT`; the
Helm chart sets the variables, a person types the flags, and a flag wins over
the variable. `keepfix run` validates the flags, writes the result back into
the environment (`to_env`) and execs `python -m keepfix.handlers`, which reads
it again (`from_env`), so the operator process sees exactly one source.

The timing knobs (fights, backoff, resync, expiry) have production defaults
from DESIGN.md; the integration tests shorten them through the environment
instead of sleeping through the defaults.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import pydantic

ENV_PREFIX = "KEEPFIX_"

LogFormat = Literal["text", "json"]
LogLevel = Literal["debug", "info", "warning", "error"]
#: `auto` is `dev` when the API server is on loopback, else `service`.
WebhookMode = Literal["auto", "dev", "service", "off"]
FailurePolicy = Literal["Ignore", "Fail"]

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


class OperatorSettings(pydantic.BaseModel):
    """What `keepfix run` and `python -m keepfix.handlers` run with."""

    model_config = pydantic.ConfigDict(frozen=True, extra="forbid")

    # Scope and identity.
    namespaces: tuple[str, ...] = pydantic.Field(
        default=(), description="watch only these namespaces (empty: all namespaces)"
    )
    standalone: bool = pydantic.Field(
        default=True, description="run alone, without peering (one replica)"
    )
    peering_name: str | None = pydantic.Field(
        default=None, description="peering object name for an active/standby pair"
    )
    priority: int = pydantic.Field(default=0, description="peering priority of this replica")
    operator_namespace: str = pydantic.Field(
        default="keepfix", description="namespace the operator runs in"
    )

    # Serving.
    metrics_host: str = pydantic.Field(default="0.0.0.0", description="address of /metrics")
    metrics_port: int = pydantic.Field(
        default=8080, ge=0, le=65535, description="port of /metrics and /healthz"
    )
    log_format: LogFormat = pydantic.Field(default="text", description="text or json")
    log_level: LogLevel = pydantic.Field(default="info", description="log level")

    # Admission webhook (served by the operator process).
    webhook: WebhookMode = pydantic.Field(default="auto", description="auto, dev, service or off")
    webhook_host: str = pydantic.Field(default="0.0.0.0", description="webhook listen address")
    webhook_port: int = pydantic.Field(default=9443, ge=0, le=65535, description="webhook port")
    webhook_cert_dir: str | None = pydantic.Field(
        default=None, description="folder with tls.crt/tls.key (generated when empty)"
    )
    webhook_failure_policy: FailurePolicy = pydantic.Field(
        default="Ignore", description="Ignore (fail open) or Fail"
    )
    webhook_timeout_seconds: int = pydantic.Field(
        default=3, ge=1, le=30, description="API server timeout calling the webhook"
    )
    webhook_service_name: str = pydantic.Field(
        default="keepfix-webhook", description="Service in front of the webhook (service mode)"
    )
    webhook_service_namespace: str | None = pydantic.Field(
        default=None, description="namespace of that Service (default: the operator namespace)"
    )

    # Timing knobs (seconds).
    fight_limit: int = pydantic.Field(
        default=5, ge=2, description="drifts of one object within the span that make a fight"
    )
    fight_span: float = pydantic.Field(default=60.0, gt=0, description="fight window, seconds")
    backoff_base: float = pydantic.Field(default=2.0, gt=0, description="first fight backoff, s")
    backoff_factor: float = pydantic.Field(default=3.0, ge=1, description="backoff multiplier")
    backoff_cap: float = pydantic.Field(default=300.0, gt=0, description="longest backoff, s")
    event_series_window: float = pydantic.Field(
        default=600.0, gt=0, description="repeats within this many seconds join one Event series"
    )
    resync_interval: float = pydantic.Field(
        default=300.0, gt=0, description="full re-check of every watched target, seconds"
    )
    expiry_check_interval: float = pydantic.Field(
        default=60.0, gt=0, description="how often watch windows are checked for expiry, s"
    )
    watch_backoff_cap: float = pydantic.Field(
        default=30.0, gt=0, description="longest wait before a failed watch is retried, s"
    )
    rollback_retries: int = pydantic.Field(
        default=5, ge=1, description="re-read and re-plan attempts on a 409/422"
    )

    @pydantic.model_validator(mode="before")
    @classmethod
    def _peering_means_not_standalone(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("peering_name"):
            return {**data, "standalone": False}
        return data

    @property
    def all_namespaces(self) -> bool:
        """True when no namespace is named: the operator watches the whole cluster."""
        return not self.namespaces

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> OperatorSettings:
        """Read `KEEPFIX_*` variables; raise pydantic.ValidationError naming the bad one."""
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for name in cls.model_fields:
            raw = environ.get(env_name(name))
            if raw is not None:
                values[name] = _from_text(name, raw)
        return cls.model_validate(values)

    def to_env(self) -> dict[str, str]:
        """The `KEEPFIX_*` variables that reproduce these settings in another process."""
        env: dict[str, str] = {}
        for name, value in self.model_dump().items():
            if value is None:
                continue
            env[env_name(name)] = _to_text(value)
        return env


def env_name(field: str) -> str:
    """`metrics_port` -> `KEEPFIX_METRICS_PORT`; `namespaces` -> `KEEPFIX_NAMESPACE`."""
    return ENV_PREFIX + _flag_stem(field).upper().replace("-", "_")


def flag_name(field: str) -> str:
    """`metrics_port` -> `--metrics-port`; `namespaces` -> `--namespace`."""
    return "--" + _flag_stem(field)


def _flag_stem(field: str) -> str:
    return "namespace" if field == "namespaces" else field.replace("_", "-")


def _from_text(field: str, raw: str) -> Any:
    if field == "namespaces":
        return tuple(n.strip() for n in raw.split(",") if n.strip())
    annotation = OperatorSettings.model_fields[field].annotation
    if annotation is bool:
        lowered = raw.strip().lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
    if raw == "" and field in _OPTIONAL_TEXT:
        return None
    return raw


def _to_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple | list):
        return ",".join(str(v) for v in value)
    return str(value)


_OPTIONAL_TEXT = {"peering_name", "webhook_cert_dir", "webhook_service_namespace"}


# Flags -----------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add one flag per setting; every default is None so the environment can fill it."""
    scope = parser.add_mutually_exclusive_group()
    scope.add_argument(
        "--namespace",
        dest="namespaces",
        action="append",
        metavar="NS",
        help="watch this namespace (repeatable; env KEEPFIX_NAMESPACE, comma-separated)",
    )
    scope.add_argument(
        "--all-namespaces",
        action="store_true",
        default=None,
        help="watch every namespace (the default; clears KEEPFIX_NAMESPACE)",
    )
    peering = parser.add_mutually_exclusive_group()
    peering.add_argument(
        "--standalone",
        action="store_true",
        default=None,
        help="run without peering: one replica (the default; env KEEPFIX_STANDALONE)",
    )
    peering.add_argument(
        "--peering-name",
        metavar="NAME",
        help="join the peering NAME for an active/standby pair (needs Kopf's peering CRDs; "
        "env KEEPFIX_PEERING_NAME)",
    )
    for name, field in OperatorSettings.model_fields.items():
        if name in {"namespaces", "standalone", "peering_name"}:
            continue
        parser.add_argument(
            flag_name(name),
            dest=name,
            metavar=name.rsplit("_", 1)[-1].upper(),
            help=f"{field.description} (env {env_name(name)}; default {_to_text(field.default)})",
        )


def from_args(
    args: argparse.Namespace, environ: Mapping[str, str] | None = None
) -> OperatorSettings:
    """Settings from the environment, overridden by the flags that were given."""
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = dict(OperatorSettings.from_env(environ).model_dump(exclude_unset=True))
    for name in OperatorSettings.model_fields:
        given = getattr(args, name, None)
        if given is None:
            continue
        values[name] = _from_flag(name, given)
    if getattr(args, "all_namespaces", None):
        values["namespaces"] = ()
    if getattr(args, "standalone", None):
        values["standalone"] = True
        values["peering_name"] = None
    elif getattr(args, "peering_name", None):
        values["standalone"] = False
    return OperatorSettings.model_validate(values)


def _from_flag(name: str, given: Any) -> Any:
    if name == "namespaces":
        items: Sequence[str] = given
        return tuple(n.strip() for item in items for n in item.split(",") if n.strip())
    return _from_text(name, given) if isinstance(given, str) else given
