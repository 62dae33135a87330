"""The ledger clock (SPEC §3): what ``recorded_at`` is stamped from."""

from __future__ import annotations

import time
from typing import Protocol

from ledger.domain.timeutil import parse_time_input


class Clock(Protocol):
    def now(self) -> int:
        """UTC microseconds since the Unix epoch."""


class SystemClock:
    wall = True  # stamps are taken again under the writer lock, never behind the log

    def now(self) -> int:
        return time.time_ns() // 1000


class FixedClock:
    """A clock set by ``--now`` / ``LEDGER_NOW`` (simulation, back-filling history); the demo
    moves it forward as its history unfolds. Behind the log, it is refused."""

    wall = False

    def __init__(self, micros: int) -> None:
        self.micros = micros

    def now(self) -> int:
        return self.micros

    def set(self, micros: int) -> None:
        self.micros = micros


def ledger_clock(now: str | None) -> Clock:
    """The clock the settings' ``now`` names (``--now`` / ``LEDGER_NOW``, ISO-8601, a bare
    date is 00:00 UTC): fixed at that time, else the wall clock."""
    return FixedClock(parse_time_input(now, "now")) if now else SystemClock()
