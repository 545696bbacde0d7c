"""Durations and watch windows.

A Mitigation's ``watchWindow`` is written ``Nd``, ``Nh`` or ``Nm`` (the CRD
enforces ``^[0-9]+[dhm]$``; this module checks again so the CLI gate and the
tests get the same answer without a cluster). A window starts when the fix
was made (``mitigatedAt``) and ends ``watch_until``; a time is inside it when
``start <= now < start + window``. Time is always a parameter: nothing here
reads a clock. Datetimes must be timezone-aware, so a naive value cannot
silently mean local time.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Final

#: The default watch window of a Mitigation.
DEFAULT_WINDOW: Final = "30d"

_DURATION: Final = re.compile(r"([0-9]+)([dhm])")
_UNITS: Final = {"d": timedelta(days=1), "h": timedelta(hours=1), "m": timedelta(minutes=1)}


class DurationError(ValueError):
    """A duration not written as a whole number of days, hours or minutes."""


def parse_duration(text: str) -> timedelta:
    """``"30d"``, ``"36h"`` or ``"90m"`` as a timedelta."""
    found = _DURATION.fullmatch(text) if isinstance(text, str) else None
    if found is None:
        raise DurationError(
            f"bad duration {text!r}: write a whole number followed by d, h or m (30d, 36h, 90m)"
        )
    return int(found[1]) * _UNITS[found[2]]


def watch_until(start: datetime, window: timedelta | str) -> datetime:
    """When a watch window that began at ``start`` ends."""
    _require_aware(start, "start")
    return start + _as_timedelta(window)


def within(start: datetime, window: timedelta | str, now: datetime) -> bool:
    """Whether ``now`` falls inside the window that began at ``start``."""
    until = watch_until(start, window)
    _require_aware(now, "now")
    return start <= now < until


def _as_timedelta(window: timedelta | str) -> timedelta:
    return window if isinstance(window, timedelta) else parse_duration(window)


def _require_aware(moment: datetime, name: str) -> None:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{name} {moment.isoformat()} has no time zone; pass an aware UTC time")
