"""Fight detection and backoff.

Another writer (a GitOps controller, a script) that keeps reverting a fix
shows up as many drifts of one object in a short time. `FightWindow` is the
sliding window of one object's drift times; `record` adds one and forgets the
ones older than `span`; `is_fighting` says the window holds `limit` drifts
(DESIGN.md: 5 within 60 s).

During a fight keepfix stops rolling back and waits. `FightState` is the
schedule of that wait: `begin` starts it, `rolled_back` notes a retry,
`drifted` notes another revert, `may_retry` says when the next rollback may be
tried, and `is_over` says the last retry held for a whole backoff period, so
normal rollbacks resume. The waits follow `backoff`: 2 s, x3, at most 300 s.

Times are monotonic float seconds passed in by the caller (the core reads no
clock); every number is a parameter so tests can shorten them.
"""

from __future__ import annotations

import dataclasses

DEFAULT_LIMIT = 5
DEFAULT_SPAN = 60.0
DEFAULT_BASE = 2.0
DEFAULT_FACTOR = 3.0
DEFAULT_CAP = 300.0


@dataclasses.dataclass(frozen=True)
class FightWindow:
    """The drift times (monotonic seconds, oldest first) of one object."""

    timestamps: tuple[float, ...] = ()


def record(
    window: FightWindow, now: float, *, limit: int = DEFAULT_LIMIT, span: float = DEFAULT_SPAN
) -> FightWindow:
    """The window with a drift at `now`, keeping at most `limit` drifts newer than `span`."""
    if limit < 1:
        raise ValueError(f"fight limit must be at least 1 drift, got {limit}")
    if span <= 0:
        raise ValueError(f"fight span must be a positive number of seconds, got {span}")
    kept = tuple(t for t in window.timestamps if now - t < span)
    return FightWindow(timestamps=(*kept, now)[-limit:])


def is_fighting(window: FightWindow, *, limit: int = DEFAULT_LIMIT) -> bool:
    """True when the window (as `record` left it) holds `limit` or more drifts."""
    return len(window.timestamps) >= limit


def backoff(
    attempt: int,
    *,
    base: float = DEFAULT_BASE,
    factor: float = DEFAULT_FACTOR,
    cap: float = DEFAULT_CAP,
) -> float:
    """Seconds to wait before retry number `attempt` (0 first): base * factor**attempt, capped."""
    if attempt < 0:
        raise ValueError(f"backoff attempt counts from 0, got {attempt}")
    if base <= 0 or factor < 1 or cap < base:
        raise ValueError(
            f"backoff needs base > 0, factor >= 1 and cap >= base; got base={base}, "
            f"factor={factor}, cap={cap}"
        )
    delay = base
    for _ in range(attempt):
        delay *= factor
        if delay >= cap:
            return cap
    return delay


@dataclasses.dataclass(frozen=True)
class FightState:
    """The backoff schedule of one object while keepfix stands back from a fight.

    `attempt` counts keepfix's retries so far, `delay` is the current wait,
    `retry_at` the time the next rollback may be tried, `last_drift` the latest
    revert seen and `last_rollback` the latest retry (None before the first).
    """

    attempt: int
    delay: float
    retry_at: float
    last_drift: float
    last_rollback: float | None = None


def begin(
    now: float,
    *,
    base: float = DEFAULT_BASE,
    factor: float = DEFAULT_FACTOR,
    cap: float = DEFAULT_CAP,
) -> FightState:
    """A fight detected at `now`: wait `backoff(0)` before the first retry."""
    delay = backoff(0, base=base, factor=factor, cap=cap)
    return FightState(attempt=0, delay=delay, retry_at=now + delay, last_drift=now)


def drifted(state: FightState, now: float) -> FightState:
    """The other writer reverted the fix again at `now`."""
    return dataclasses.replace(state, last_drift=max(state.last_drift, now))


def rolled_back(
    state: FightState,
    now: float,
    *,
    base: float = DEFAULT_BASE,
    factor: float = DEFAULT_FACTOR,
    cap: float = DEFAULT_CAP,
) -> FightState:
    """keepfix retried a rollback at `now`; the next wait is one backoff step longer."""
    attempt = state.attempt + 1
    delay = backoff(attempt, base=base, factor=factor, cap=cap)
    return dataclasses.replace(
        state, attempt=attempt, delay=delay, retry_at=now + delay, last_rollback=now
    )


def held(state: FightState) -> bool:
    """True while keepfix's last retry has not been reverted."""
    return state.last_rollback is not None and state.last_drift < state.last_rollback


def may_retry(state: FightState, now: float) -> bool:
    """True when a rollback may be tried again: the wait is over and the fix is reverted."""
    return now >= state.retry_at and not held(state)


def is_over(state: FightState, now: float) -> bool:
    """True when the last retry held for the whole current backoff period: resume."""
    return held(state) and now >= state.retry_at
