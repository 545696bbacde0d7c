"""keepfix.core.windows: durations and watch windows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from keepfix.core import windows

START = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30d", timedelta(days=30)),
        ("36h", timedelta(hours=36)),
        ("90m", timedelta(minutes=90)),
        ("0m", timedelta(0)),
        (windows.DEFAULT_WINDOW, timedelta(days=30)),
    ],
)
def test_parse_duration(text: str, expected: timedelta) -> None:
    """Nd, Nh and Nm are days, hours and minutes."""
    assert windows.parse_duration(text) == expected


@pytest.mark.parametrize(
    "text", ["", "30", "d", "1.5d", "30s", "1w", "-1d", " 30d", "30D", "1h30m"]
)
def test_parse_duration_rejects(text: str) -> None:
    """Anything but a whole number and d/h/m raises DurationError with an example."""
    with pytest.raises(windows.DurationError, match=r"write a whole number followed by d, h or m"):
        windows.parse_duration(text)


def test_parse_duration_rejects_non_strings() -> None:
    """A number without a unit is refused, not guessed."""
    bad: Any = 30
    with pytest.raises(windows.DurationError, match="bad duration 30"):
        windows.parse_duration(bad)


def test_watch_until() -> None:
    """The window ends start + duration, with a string or a timedelta."""
    assert windows.watch_until(START, "30d") == datetime(2026, 1, 31, tzinfo=UTC)
    assert windows.watch_until(START, timedelta(hours=1)) == START + timedelta(hours=1)


@pytest.mark.parametrize(
    ("now", "inside"),
    [
        (START, True),
        (START + timedelta(days=29, hours=23, minutes=59), True),
        (START + timedelta(days=30), False),
        (START + timedelta(days=45), False),
        (START - timedelta(seconds=1), False),
    ],
)
def test_within(now: datetime, inside: bool) -> None:
    """Inside means start <= now < start + window."""
    assert windows.within(START, "30d", now) is inside


def test_within_compares_across_time_zones() -> None:
    """An aware time in another zone is the same instant."""
    plus_two = timezone(timedelta(hours=2))
    assert windows.within(START, "1h", datetime(2026, 1, 1, 2, 30, tzinfo=plus_two))
    assert not windows.within(START, "1h", datetime(2026, 1, 1, 3, 0, tzinfo=plus_two))


@pytest.mark.parametrize(
    ("start", "now", "name"),
    [
        (datetime(2026, 1, 1), START, "start"),
        (START, datetime(2026, 1, 1), "now"),
    ],
)
def test_naive_times_are_refused(start: datetime, now: datetime, name: str) -> None:
    """A naive datetime raises instead of silently meaning local time."""
    with pytest.raises(ValueError, match=f"{name} .* has no time zone"):
        windows.within(start, "1d", now)
