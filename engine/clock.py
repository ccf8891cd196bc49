"""One clock for the whole engine.

Everything that asks "what time is it" (the service, the timer worker, and
SpiffWorkflow's timer events) reads `clock.now()`. Tests and scenarios replace
it with a `FrozenClock` and move it forward; production uses `SystemClock`.

SpiffWorkflow reads `datetime.now(timezone.utc)` inside
`SpiffWorkflow/bpmn/specs/event_definitions/timer.py`; `install()` points the
`datetime` name of that module at a subclass whose `now()` asks our clock, so a
moved clock moves BPMN timers too.
"""
from __future__ import annotations

import threading
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone

from SpiffWorkflow.bpmn.specs.event_definitions import timer as _spiff_timer

# the officials' time (China Standard Time): what pages, exports and messages show
CHINA = timezone(timedelta(hours=8), "CST")


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(timezone.utc)


class FrozenClock:
    """A clock that only moves when told to (tests, scenarios, demo history)."""

    def __init__(self, start: datetime | None = None):
        start = start or datetime(2026, 1, 5, 9, 0, tzinfo=timezone.utc)
        if start.tzinfo is None:
            start = start.replace(tzinfo=timezone.utc)
        self._now = start
        self._lock = threading.Lock()

    def now(self) -> datetime:
        with self._lock:
            return self._now

    def advance(self, delta: timedelta | None = None, **kwargs) -> datetime:
        delta = delta if delta is not None else timedelta(**kwargs)
        with self._lock:
            self._now = self._now + delta
            return self._now

    def set(self, moment: datetime) -> None:
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=timezone.utc)
        with self._lock:
            self._now = moment


_current = SystemClock()


def get_clock():
    return _current


def set_clock(clock) -> None:
    global _current
    _current = clock


def now() -> datetime:
    return _current.now()


# A moment SpiffWorkflow's timers take for now, in this thread only (`timers_at`)
_timers = threading.local()


class _ClockDatetime(datetime):
    """`datetime` as seen by SpiffWorkflow's timer module: `now()` is ours."""

    @classmethod
    def now(cls, tz=None):
        moment = getattr(_timers, "at", None) or _current.now()
        # naive: UTC's wall time, as SpiffWorkflow compares naive dates (a stepped moment
        # may carry +08:00)
        return moment.astimezone(tz) if tz is not None else moment.astimezone(timezone.utc).replace(tzinfo=None)


@contextmanager
def timers_at(moment: datetime):
    """SpiffWorkflow's timers see `moment` as now, in this thread, inside the block: a
    timer fired late (the worker was down) fires as at the moment it was due, so what it
    starts (the next cycle, a duration timer on the task it creates) counts from then.
    Everything else (scripts, the audit trail, the rows' times) keeps the real time."""
    earlier = getattr(_timers, "at", None)
    _timers.at = moment
    try:
        yield
    finally:
        _timers.at = earlier


def install() -> None:
    """Route SpiffWorkflow's timer arithmetic through our clock (idempotent)."""
    _spiff_timer.datetime = _ClockDatetime


install()
