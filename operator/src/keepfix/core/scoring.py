"""Severity and signature of a regression.

`severity` follows DESIGN.md exactly: inside the watch window a drift is
Critical when every drifted field is back at one of its `knownBad` values (the
incident itself is back), High when some are, Medium when none are; after the
window it is Low. A mitigation that has regressed before bumps the result one
level, never above Critical (a Low becomes a Medium too).

`signature` names a recurrence so that the same drift maps to the same
Regression object: the sha256 of canonical JSON of the target kind and the
sorted (path, actual value) pairs. Paths are the concrete paths `core.diff`
reports (list items by merge key, `containers[name=web]`), so reordering
containers does not change it; values go through `values.canonical`, so key
order and quantity spelling (`512Mi` / `0.5Gi`) do not either. An absent field
is told apart from an explicit `null`.

The kind is a group-qualified kind without the version, `apps/Deployment` or
`Pod` for the core group (see `kind_key`), so an API version bump of the
target does not start a new series of Regressions.
"""

from __future__ import annotations

import enum
import hashlib
import json
from collections.abc import Iterable
from typing import Any, Protocol

from keepfix.core import paths, values

SIGNATURE_PREFIX = "sha256:"


class DriftLike(Protocol):
    """The attributes of `keepfix.core.diff.Drift` that scoring reads."""

    @property
    def path(self) -> str: ...
    @property
    def actual(self) -> Any: ...
    @property
    def present(self) -> bool: ...
    @property
    def known_bad(self) -> bool: ...


class Severity(enum.IntEnum):
    """Regression severity; the integer order is the order of concern."""

    LOW = 0
    MEDIUM = 1
    HIGH = 2
    CRITICAL = 3

    @property
    def label(self) -> str:
        """The name used in the API and in labels: `Low`, `Medium`, `High`, `Critical`."""
        return self.name.capitalize()

    @classmethod
    def from_name(cls, name: str) -> Severity:
        """Parse `Critical`/`high`/... ; raise ValueError naming the accepted values."""
        try:
            return cls[name.strip().upper()]
        except KeyError:
            accepted = ", ".join(s.label for s in cls)
            raise ValueError(f"unknown severity {name!r}: use one of {accepted}") from None

    def bumped(self) -> Severity:
        """One level up, capped at Critical."""
        return Severity(min(self + 1, Severity.CRITICAL))


def severity(drifts: Iterable[DriftLike], *, in_window: bool, repeat: bool) -> Severity:
    """The severity of one recurrence; `repeat` means the mitigation regressed before."""
    drifts = tuple(drifts)
    if not drifts:
        raise ValueError(
            "severity needs at least one drifted field: an object at its stable state has none"
        )
    if not in_window:
        base = Severity.LOW
    else:
        bad = sum(1 for d in drifts if d.known_bad)
        if bad == len(drifts):
            base = Severity.CRITICAL
        elif bad:
            base = Severity.HIGH
        else:
            base = Severity.MEDIUM
    return base.bumped() if repeat else base


def kind_key(api_version: str, kind: str) -> str:
    """`apps/v1`, `Deployment` -> `apps/Deployment`; `v1`, `Pod` -> `Pod` (core group)."""
    group, sep, _version = api_version.rpartition("/")
    return f"{group}/{kind}" if sep else kind


def signature(kind: str, drifts: Iterable[DriftLike]) -> str:
    """`sha256:<hex>` naming this drift of this kind; see the module docstring."""
    pairs = sorted(
        json.dumps(_drift_item(d), sort_keys=True, separators=(",", ":"), ensure_ascii=True)
        for d in drifts
    )
    body = json.dumps({"kind": kind, "drifts": pairs}, sort_keys=True, separators=(",", ":"))
    return SIGNATURE_PREFIX + hashlib.sha256(body.encode()).hexdigest()


def _drift_item(drift: DriftLike) -> list[Any]:
    if not drift.present:
        return [drift.path, "absent"]
    return [drift.path, "value", values.canonical(drift.actual, field=_field(drift.path))]


def _field(path: str) -> str | None:
    """The key the value sits under, which decides how a list is ordered canonically."""
    try:
        segments = paths.parse(path).segments
    except paths.PathError:
        return None
    last = segments[-1] if segments else None
    return last.name if isinstance(last, paths.Key) else None
