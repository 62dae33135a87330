"""ledger.domain.timeutil, the one home of the time conversions: microseconds <-> datetimes (aware,
and naive UTC as DuckDB's TIMESTAMP) <-> ISO-8601 text."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import duckdb
import pytest

from ledger.domain.timeutil import (
    day_of_iso,
    format_day,
    format_if_datetime,
    format_micros,
    from_micros,
    micros_or_none,
    parse_timestamp,
    to_micros,
    to_naive_utc,
)

CET = timezone(timedelta(hours=1))

# (micros, the ledger's ISO text): the epoch, a microsecond either side, a recent and a far time.
TIMES = [
    (0, "1970-01-01T00:00:00.000000Z"),
    (1, "1970-01-01T00:00:00.000001Z"),
    (-1, "1969-12-31T23:59:59.999999Z"),
    (-86_400_000_000, "1969-12-31T00:00:00.000000Z"),
    (1_772_357_400_123_456, "2026-03-01T09:30:00.123456Z"),
    (7_258_118_399_999_999, "2199-12-31T23:59:59.999999Z"),
]
MICROS = [m for m, _ in TIMES]


@pytest.mark.parametrize(("micros", "iso"), TIMES)
def test_format_micros_is_utc_with_microseconds_and_a_z(micros: int, iso: str) -> None:
    assert format_micros(micros) == iso
    assert format_day(micros) == iso[:10]
    assert day_of_iso(iso) == iso[:10]


@pytest.mark.parametrize("micros", MICROS)
def test_micros_round_trip_through_aware_and_naive_datetimes(micros: int) -> None:
    aware = from_micros(micros)
    naive = to_naive_utc(micros)
    assert aware.tzinfo is UTC and naive.tzinfo is None
    assert naive == aware.replace(tzinfo=None)
    assert to_micros(aware) == to_micros(naive) == micros
    assert micros_or_none(aware) == micros_or_none(naive) == micros


@pytest.mark.parametrize(("micros", "iso"), [t for t in TIMES if t[0] >= 0])
def test_parse_timestamp_reads_what_format_micros_writes(micros: int, iso: str) -> None:
    assert parse_timestamp(iso) == micros


def test_the_epoch() -> None:
    assert to_micros(datetime(1970, 1, 1)) == to_micros(datetime(1970, 1, 1, tzinfo=UTC)) == 0
    assert from_micros(0) == datetime(1970, 1, 1, tzinfo=UTC)
    assert to_naive_utc(0) == datetime(1970, 1, 1)
    assert format_day(0) == "1970-01-01"


def test_a_naive_datetime_is_utc_an_aware_one_is_converted() -> None:
    assert to_micros(datetime(2026, 3, 1, 10, 30, tzinfo=CET)) == to_micros(datetime(2026, 3, 1, 9, 30))
    assert micros_or_none(datetime(2026, 3, 1, 1, 0, tzinfo=CET)) == parse_timestamp("2026-03-01")
    assert format_if_datetime(datetime(2026, 3, 1, 0, 30, tzinfo=CET)) == "2026-02-28T23:30:00.000000Z"
    assert format_if_datetime(datetime(2026, 3, 1)) == "2026-03-01T00:00:00.000000Z"


def test_none_and_what_is_not_a_datetime_pass_through() -> None:
    assert micros_or_none(None) is None
    assert micros_or_none(0) == 0 and micros_or_none(-5) == -5  # already microseconds
    assert format_day(None) == "-"
    assert day_of_iso(None) == day_of_iso("") == "-"
    for value in (None, 0, 1.5, "2026-03-01", ["x"]):
        assert format_if_datetime(value) == value


@pytest.mark.parametrize("micros", MICROS)
def test_to_naive_utc_binds_to_duckdb_timestamp_exactly(micros: int) -> None:
    con = duckdb.connect()
    try:
        row = con.execute("SELECT epoch_us(?::TIMESTAMP), ?::TIMESTAMP",
                          [to_naive_utc(micros), to_naive_utc(micros)]).fetchone()
    finally:
        con.close()
    assert row is not None
    assert row[0] == micros
    assert micros_or_none(row[1]) == micros  # and a TIMESTAMP read back is the same time
