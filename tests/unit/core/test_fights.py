"""Fight detection (sliding window) and the backoff schedule."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from keepfix.core import fights


def feed(times: list[float], **kwargs: float) -> fights.FightWindow:
    window = fights.FightWindow()
    for t in times:
        window = fights.record(window, t, **kwargs)  # type: ignore[arg-type]
    return window


def test_five_drifts_within_a_minute_is_a_fight() -> None:
    """Five drifts of one object inside 60 s mean another writer keeps reverting."""
    assert fights.is_fighting(feed([0, 10, 20, 30, 40]))


def test_four_drifts_is_not_a_fight() -> None:
    """Four drifts stay below the default limit."""
    assert not fights.is_fighting(feed([0, 10, 20, 30]))


def test_drifts_spread_over_more_than_the_span_are_not_a_fight() -> None:
    """A drift every 15 s never has five inside one minute."""
    assert not fights.is_fighting(feed([0, 15, 30, 45, 60, 75, 90]))


def test_drift_exactly_span_old_is_forgotten() -> None:
    """The window is half-open: a drift exactly `span` seconds old no longer counts."""
    assert feed([0, 60]).timestamps == (60,)


def test_window_keeps_at_most_limit_timestamps() -> None:
    """Memory stays bounded however fast drifts arrive."""
    window = feed([float(i) / 10 for i in range(100)])
    assert window.timestamps == (9.5, 9.6, 9.7, 9.8, 9.9)


def test_shortened_parameters_for_tests() -> None:
    """limit and span are parameters (the operator lets tests shorten them)."""
    window = feed([0.0, 0.1, 0.2], limit=3, span=0.5)
    assert fights.is_fighting(window, limit=3)
    assert not fights.is_fighting(fights.record(window, 0.65, limit=3, span=0.5), limit=3)


def test_record_does_not_change_the_window_passed_in() -> None:
    """FightWindow is a value: record returns a new one."""
    window = fights.FightWindow((1.0,))
    fights.record(window, 2.0)
    assert window.timestamps == (1.0,)


@pytest.mark.parametrize(("limit", "span"), [(0, 60.0), (5, 0.0), (5, -1.0)])
def test_record_rejects_nonsense_parameters(limit: int, span: float) -> None:
    """A zero limit or a non-positive span is a configuration error, said so."""
    with pytest.raises(ValueError, match="fight"):
        fights.record(fights.FightWindow(), 0.0, limit=limit, span=span)


def test_backoff_schedule() -> None:
    """2 s, x3, at most 300 s."""
    assert [fights.backoff(a) for a in range(8)] == [2, 6, 18, 54, 162, 300, 300, 300]


def test_backoff_huge_attempt_does_not_overflow() -> None:
    """A long fight stays at the cap instead of overflowing a float."""
    assert fights.backoff(100_000) == 300


def test_backoff_shortened() -> None:
    """base, factor and cap are parameters."""
    assert [fights.backoff(a, base=0.01, factor=2, cap=0.05) for a in range(4)] == [
        0.01,
        0.02,
        0.04,
        0.05,
    ]


@pytest.mark.parametrize(
    ("attempt", "kwargs"),
    [(-1, {}), (0, {"base": 0.0}), (0, {"factor": 0.5}), (0, {"base": 10.0, "cap": 5.0})],
)
def test_backoff_rejects_nonsense(attempt: int, kwargs: dict[str, float]) -> None:
    """Negative attempts and a shrinking or inverted schedule are errors."""
    with pytest.raises(ValueError, match="backoff"):
        fights.backoff(attempt, **kwargs)


@given(st.integers(min_value=0, max_value=200))
def test_backoff_is_monotonic_and_capped(attempt: int) -> None:
    """Each wait is at least the previous one and never above the cap."""
    assert fights.backoff(attempt) <= fights.backoff(attempt + 1) <= 300


def test_fight_waits_before_the_first_retry() -> None:
    """After detection keepfix stands back for backoff(0) seconds."""
    state = fights.begin(100.0)
    assert not fights.may_retry(state, 101.9)
    assert fights.may_retry(state, 102.0)
    assert not fights.is_over(state, 1000.0)


def test_retry_that_is_reverted_waits_longer() -> None:
    """A retry the other writer reverts again leads to a three times longer wait."""
    state = fights.rolled_back(fights.begin(0.0), 2.0)
    assert (state.attempt, state.delay, state.retry_at) == (1, 6.0, 8.0)
    state = fights.drifted(state, 3.0)
    assert not fights.may_retry(state, 7.9)
    assert fights.may_retry(state, 8.0)
    assert not fights.is_over(state, 8.0)


def test_retry_that_holds_for_the_backoff_period_ends_the_fight() -> None:
    """No drift for the whole current backoff period after a retry: resume."""
    state = fights.rolled_back(fights.begin(0.0), 2.0)
    assert not fights.is_over(state, 7.9)
    assert fights.is_over(state, 8.0)
    assert not fights.may_retry(state, 8.0)


def test_drift_older_than_the_retry_does_not_unhold_it() -> None:
    """A late-delivered drift from before the retry keeps last_drift monotonic."""
    state = fights.drifted(fights.rolled_back(fights.drifted(fights.begin(0.0), 1.5), 2.0), 1.0)
    assert state.last_drift == 1.5
    assert fights.held(state)


def test_fight_schedule_follows_backoff() -> None:
    """Repeated reverted retries step through 6, 18, 54, 162, 300, 300 s."""
    state, now, waits = fights.begin(0.0), 0.0, []
    for _ in range(6):
        now = state.retry_at
        state = fights.drifted(fights.rolled_back(state, now), now + 0.5)
        waits.append(state.retry_at - now)
    assert waits == [6, 18, 54, 162, 300, 300]


@given(
    st.lists(st.floats(min_value=0, max_value=30, allow_nan=False), max_size=30),
    st.integers(min_value=1, max_value=6),
    st.floats(min_value=0.5, max_value=20, allow_nan=False),
)
def test_window_agrees_with_counting(gaps: list[float], limit: int, span: float) -> None:
    """Property: after each drift, is_fighting iff `limit` drifts fell within the last `span`."""
    window, now, seen = fights.FightWindow(), 0.0, []
    for gap in gaps:
        now += gap
        seen.append(now)
        window = fights.record(window, now, limit=limit, span=span)
        recent = [t for t in seen if now - t < span]
        assert fights.is_fighting(window, limit=limit) is (len(recent) >= limit)
        assert window.timestamps == tuple(recent[-limit:])
