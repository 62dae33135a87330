"""The ledger clock named by the settings (``--now`` / ``LEDGER_NOW``)."""

from __future__ import annotations

import time

import pytest

from ledger.domain.clock import FixedClock, SystemClock, ledger_clock
from ledger.domain.errors import UsageError
from ledger.domain.timeutil import parse_timestamp


def test_no_setting_is_the_wall_clock() -> None:
    clock = ledger_clock(None)
    assert isinstance(clock, SystemClock)
    assert abs(clock.now() - time.time_ns() // 1000) < 60_000_000
    assert isinstance(ledger_clock(""), SystemClock)


def test_a_setting_fixes_the_clock_and_a_bare_date_is_midnight_utc() -> None:
    clock = ledger_clock("2026-03-05")
    assert isinstance(clock, FixedClock)
    assert clock.now() == parse_timestamp("2026-03-05T00:00:00Z")
    assert ledger_clock("2026-03-05T12:30:00Z").now() == parse_timestamp("2026-03-05T12:30:00Z")


def test_a_bad_setting_is_a_usage_error() -> None:
    with pytest.raises(UsageError):
        ledger_clock("yesterday")
