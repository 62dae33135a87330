"""One subject's rows in the projections: what ``permits``, the register extract, ``explain``
and the audit report read. Plain rows and small frozen records; the rules and the wording stay
with their callers in the application layer."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from ledger.domain.timeutil import format_if_datetime
from projections.store.read_model import ReadConnection

_OF_SUBJECT: Final = "WHERE controller = ? AND subject = ?"
CONSENT_TYPES: Final = ("ConsentGiven", "ConsentWithdrawn", "ObjectionRaised")


# --- which subject -----------------------------------------------------------------------


def controllers_knowing(con: ReadConnection, subject: str) -> list[str]:
    """The controllers with events of this pseudonym, sorted."""
    rows = con.execute("SELECT DISTINCT controller FROM activity_clock WHERE subject = ? "
                       "ORDER BY 1", [subject]).fetchall()
    return [r[0] for r in rows]


def is_known(con: ReadConnection, controller: str, subject: str) -> bool:
    """Whether the controller has any event of the subject."""
    return con.execute(f"SELECT 1 FROM activity_clock {_OF_SUBJECT}",
                       [controller, subject]).fetchone() is not None


def subjects_recorded(con: ReadConnection, after: int, through: int, limit: int
                      ) -> list[tuple[str, str]] | None:
    """(controller, subject) of the events at positions after ``after`` through ``through``
    (the embedded log's positions): whose rows those records can have changed. None when
    there are more than ``limit`` of them, or a record without a subject."""
    rows = con.execute("SELECT DISTINCT controller, subject FROM events WHERE position > ? "
                       "AND position <= ? LIMIT ?", [after, through, limit + 1]).fetchall()
    if len(rows) > limit or any(c is None or s is None or s == "*" for c, s in rows):
        return None
    return [(str(c), str(s)) for c, s in rows]


# --- the facts permits need ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EventRow:
    """An event a fact rests on, as the projections hold it (event time naive UTC)."""

    at: datetime
    position: int | None
    event_id: str | None
    type: str | None


@dataclass(frozen=True, slots=True)
class StatusRow:
    """The subject's pseudonymisation_status row, with the event that set it (if projected)."""

    status: str
    since: EventRow | None
    previous_erased_at: datetime | None  # where the current relationship begins (SPEC §5)
    previous_erased_position: int | None


def subject_status(con: ReadConnection, controller: str, subject: str) -> StatusRow | None:
    row = con.execute(
        "SELECT s.status, s.since, s.event_id, e.position, e.type, s.previous_erased_at, "
        "s.previous_erased_position FROM pseudonymisation_status s "
        "LEFT JOIN events e ON e.event_id = s.event_id WHERE s.controller = ? AND s.subject = ?",
        [controller, subject]).fetchone()
    if row is None:
        return None
    since = EventRow(row[1], row[3], row[2], row[4]) if row[1] is not None else None
    return StatusRow(row[0], since, row[5], row[6])


def latest_registration(con: ReadConnection, controller: str, subject: str,
                        after_at: datetime | None, after_position: int | None) -> EventRow | None:
    """The latest SubjectRegistered after (``after_at``, ``after_position``): only one of the
    current relationship establishes it."""
    row = con.execute(
        "SELECT occurred_at, position, event_id FROM events WHERE controller = ? AND subject = ? "
        "AND type = 'SubjectRegistered' AND (?::TIMESTAMP IS NULL OR occurred_at > ? OR "
        "(occurred_at = ? AND position > ?)) ORDER BY occurred_at DESC, position DESC LIMIT 1",
        [controller, subject, after_at, after_at, after_at, after_position]).fetchone()
    return None if row is None else EventRow(row[0], row[1], row[2], "SubjectRegistered")


def consent_rows(con: ReadConnection, controller: str, subject: str
                 ) -> list[tuple[str, str, EventRow]]:
    """consent_state as (purpose, status, since): granted | withdrawn | objected (the fold
    keeps the current relationship's rows only)."""
    return [(purpose, status, EventRow(since, position, event_id, None))
            for purpose, status, since, position, event_id in con.execute(
                "SELECT purpose, status, since, position, event_id FROM consent_state "
                f"{_OF_SUBJECT}", [controller, subject]).fetchall()]


def subscription_rows(con: ReadConnection, controller: str, subject: str
                      ) -> list[tuple[str, str, str, EventRow]]:
    """subscriptions as (list, channel, status, since): subscribed | unsubscribed, oldest
    first (event time, then position)."""
    return [(list_, channel, status, EventRow(since, position, event_id, None))
            for list_, channel, status, since, position, event_id in con.execute(
                "SELECT list, channel, status, since, position, event_id FROM subscriptions "
                f"{_OF_SUBJECT} ORDER BY since, position", [controller, subject]).fetchall()]


# --- the register extract ------------------------------------------------------------------


def _rows(con: ReadConnection, sql: str, params: list[Any]) -> list[dict[str, Any]]:
    """JSON-ready rows: times as ISO strings."""
    cursor = con.execute(sql, params)
    columns = [d[0] for d in cursor.description or ()]
    return [{c: format_if_datetime(v) for c, v in zip(columns, row, strict=True)}
            for row in cursor.fetchall()]


def subject_row(con: ReadConnection, table: str, controller: str, subject: str
                ) -> dict[str, Any] | None:
    """The subject's row of a per-subject table (activity_clock, pseudonymisation_status),
    JSON-ready, without the key."""
    rows = _rows(con, f"SELECT * EXCLUDE (controller, subject) FROM {table} {_OF_SUBJECT}",
                 [controller, subject])
    return rows[0] if rows else None


@dataclass(frozen=True, slots=True)
class Relationship:
    """The subject's current relationship (SPEC §5): after a sign-up that followed an erasure,
    only what belongs to it; ``after_*`` is the erasure that ended the one before (None for
    the first relationship)."""

    number: int = 1
    after_at: datetime | None = None
    after_position: int | None = None

    def current(self, at: str = "occurred_at") -> tuple[str, list[Any]]:
        """SQL (``AND …``) and its parameters keeping a table's rows of the current relationship."""
        if self.after_at is None:
            return "", []
        return (f" AND ({at} > ? OR ({at} = ? AND position > ?))",
                [self.after_at, self.after_at, self.after_position])


def relationship(con: ReadConnection, controller: str, subject: str) -> Relationship:
    row = con.execute(
        "SELECT relationship, previous_erased_at, previous_erased_position "
        f"FROM pseudonymisation_status {_OF_SUBJECT}", [controller, subject]).fetchone()
    number = int(row[0] or 1) if row else 1
    if row is None or number == 1:
        return Relationship(number)
    return Relationship(number, row[1], row[2])


@dataclass(frozen=True, slots=True)
class PersonalEvent:
    """An event of the subject that carries personal data (``pii``), to be decrypted from the
    log; ``earlier``: it belongs to an earlier relationship."""

    position: int
    event_id: str
    type: str
    occurred_at: datetime
    earlier: bool


def personal_events(con: ReadConnection, controller: str, subject: str,
                    rel: Relationship) -> list[PersonalEvent]:
    """The subject's events with personal data, oldest first (event time, then position)."""
    current, params = rel.current()
    return [PersonalEvent(*r) for r in con.execute(
        f"SELECT position, event_id, type, occurred_at, NOT (true {current}) AS earlier "
        "FROM events WHERE controller = ? AND subject = ? AND has_pii "
        "ORDER BY occurred_at, position", [*params, controller, subject]).fetchall()]


def _with_bodies(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    for row in rows:
        row["body"] = json.loads(row["body"]) if row["body"] else {}
    return rows


def pseudonymous_sections(con: ReadConnection, controller: str, subject: str,
                          rel: Relationship) -> dict[str, list[dict[str, Any]]]:
    """The extract's tables of the current relationship only (consents, subscriptions and
    activity: the fold keeps only its rows), JSON-ready."""
    key = [controller, subject]
    current, params = rel.current()
    shared, shared_params = rel.current("shared_at")
    received = "" if rel.after_at is None else " AND coalesce(received_at, closed_at) > ?"
    return {
        "consents": _rows(con, "SELECT * EXCLUDE (controller, subject) FROM consent_state "
                          f"{_OF_SUBJECT} ORDER BY purpose", key),
        "consent_history": _with_bodies(_rows(
            con, f"SELECT position, event_id, type, occurred_at, recorded_at, body FROM events "
            f"{_OF_SUBJECT} AND type IN {CONSENT_TYPES}{current} ORDER BY occurred_at, position",
            key + params)),
        "subscriptions": _rows(con, "SELECT * EXCLUDE (controller, subject) FROM subscriptions "
                               f"{_OF_SUBJECT} ORDER BY list, channel", key),
        "disclosures": _rows(con, "SELECT * EXCLUDE (controller, subject) FROM disclosures "
                             f"{_OF_SUBJECT}{shared} ORDER BY shared_at, position",
                             key + shared_params),
        "rights_requests": _rows(
            con, f"SELECT * EXCLUDE (controller, subject) FROM rights_requests {_OF_SUBJECT} "
            f"{received} ORDER BY received_at NULLS LAST, request_id",
            key + ([rel.after_at] if received else [])),
        "timeline": _with_bodies(_rows(
            con, "SELECT position, event_id, type, occurred_at, recorded_at, source, actor, "
            f"has_pii, body FROM events {_OF_SUBJECT}{current} ORDER BY occurred_at, position",
            key + params)),
    }


# --- explain and the audit report ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TimelineEvent:
    position: int
    occurred_at: datetime
    recorded_at: datetime
    type: str
    event_id: str
    source: str
    actor: str
    body: str | None  # the JSON body (no personal data: the projections hold no pii)


def timeline(con: ReadConnection, controller: str, subject: str) -> list[TimelineEvent]:
    """Every event of the subject, oldest first (event time, then position)."""
    return [TimelineEvent(*r) for r in con.execute(
        "SELECT position, occurred_at, recorded_at, type, event_id, source, actor, body "
        f"FROM events {_OF_SUBJECT} ORDER BY occurred_at, position",
        [controller, subject]).fetchall()]


def table_rows(con: ReadConnection, table: str, controller: str, subject: str
               ) -> list[dict[str, Any]]:
    """The subject's rows of a table, as they are (times as datetimes), in a stable order."""
    cursor = con.execute(f"SELECT * FROM {table} {_OF_SUBJECT} ORDER BY ALL",
                         [controller, subject])
    names = [d[0] for d in cursor.description or ()]
    return [dict(zip(names, r, strict=True)) for r in cursor.fetchall()]
