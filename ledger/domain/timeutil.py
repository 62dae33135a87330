"""Timestamps: ISO-8601 text <-> integer microseconds since the Unix epoch (UTC).

The ledger works in integer microseconds internally: they are what Avro's timestamp-micros
stores, they compare fast, and they cannot carry a wrong time zone. This module is the one home
of the conversions: microseconds <-> datetimes (aware, or naive UTC as DuckDB's TIMESTAMP
reads and returns them) and <-> ISO-8601 text. (The projection store converts whole Arrow
columns itself, vectorised.)"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from typing import Any

from ledger.domain.errors import UsageError

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MICROS = 1_000_000
# Events before 1970 or after 2200 are not plausible ledger events (typos, unit mix-ups).
MIN_MICROS = 0
MAX_MICROS = int((datetime(2200, 1, 1, tzinfo=UTC) - EPOCH).total_seconds()) * MICROS

_ISO = re.compile(
    r"\d{4}-\d{2}-\d{2}"  # date
    r"(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d{1,6})?)?"  # optional time
    r"(?:Z|z|[+-]\d{2}:?\d{2})?)?"  # optional offset
)


def parse_timestamp(text: str) -> int:
    """Parses ISO-8601 to UTC microseconds. A bare date means 00:00 UTC, and so does a time
    without an offset. Raises ValueError with a short reason."""
    if not isinstance(text, str):
        raise ValueError("expected an ISO-8601 timestamp string")
    s = text.strip()
    if len(s) > 40 or not _ISO.fullmatch(s):
        raise ValueError("not an ISO-8601 timestamp (e.g. 2026-03-01T09:30:00Z)")
    if s[-1] in "Zz":
        s = s[:-1] + "+00:00"
    try:
        if len(s) == 10:
            dt = datetime.combine(date.fromisoformat(s), datetime.min.time(), tzinfo=UTC)
        else:
            dt = datetime.fromisoformat(s)
    except ValueError:
        raise ValueError("not a valid calendar date/time") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    micros = to_micros(dt)
    if not MIN_MICROS <= micros < MAX_MICROS:
        raise ValueError("outside the plausible range 1970-01-01..2200-01-01")
    return micros


_ONE_MICRO = timedelta(microseconds=1)


def to_micros(dt: datetime) -> int:
    """A datetime as UTC microseconds; a naive one is UTC (as DuckDB returns a TIMESTAMP)."""
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return (dt - EPOCH) // _ONE_MICRO


def from_micros(micros: int) -> datetime:
    """UTC microseconds as an aware UTC datetime."""
    return EPOCH + timedelta(microseconds=micros)


def micros_or_none(value: datetime | int | None) -> int | None:
    """A nullable time as microseconds: a datetime (naive: UTC) converted, microseconds as
    they are, None as None (a NULL TIMESTAMP, an absent body field)."""
    if value is None or isinstance(value, int):
        return value
    return to_micros(value)


def to_naive_utc(micros: int) -> datetime:
    """UTC microseconds as a naive UTC datetime: the form to bind to a DuckDB TIMESTAMP
    parameter (an aware datetime would bind as TIMESTAMPTZ, read in the session's zone)."""
    return from_micros(micros).replace(tzinfo=None)


def format_micros(micros: int) -> str:
    """UTC ISO-8601 with microseconds and a Z, the form the ledger writes everywhere."""
    return from_micros(micros).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def format_day(micros: int | None) -> str:
    """The UTC day (YYYY-MM-DD) of a time, for sentences and tables; "-" for None."""
    return "-" if micros is None else format_micros(micros)[:10]


def day_of_iso(text: str | None) -> str:
    """The day (YYYY-MM-DD) of ISO-8601 text as the ledger writes it; "-" for None or ""."""
    return text[:10] if text else "-"


def format_if_datetime(value: Any) -> Any:
    """A datetime (naive: UTC, e.g. a TIMESTAMP from DuckDB) as the ledger's ISO-8601 text;
    any other value (None, a number, text) as it is: for rows turned into JSON."""
    return format_micros(to_micros(value)) if isinstance(value, datetime) else value


def parse_time_input(text: str, parameter: str) -> int:
    """Parses a timestamp a caller typed (an argument, a setting); a UsageError about
    ``parameter`` (its domain name: ``now``, ``as_of``) if it is not one."""
    try:
        return parse_timestamp(text)
    except ValueError as e:
        raise UsageError(f"{e}: {text[:40]!r}", parameter=parameter) from None
