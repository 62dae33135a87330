"""The outbox's read side: the messages owed to people, as the log (through the projections)
records them, and the outbox's own reports on them. Pseudonymous rows only: the contact
address is decrypted by the application layer from the log, never projected here."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from projections.store.read_model import ReadConnection

ANSWERED: Final = ("fulfilled", "partially_fulfilled")  # outcomes that owe the person an answer
EXTRACT_RIGHTS: Final = ("access", "portability")


@dataclass(frozen=True, slots=True)
class OwedRow:
    """An event that owes the person a message: a deletion notice or a closed rights request."""

    message_id: str  # the owing event's id
    kind: str  # deletion_notice | erasure_done | extract_ready
    controller: str
    subject: str
    owed_at: datetime  # the owing event's time (naive UTC)
    erase_from: datetime | None  # deletion notices: the erasure date the sweep announced
    request_id: str | None  # answers: the request answered


@dataclass(frozen=True, slots=True)
class ReportRow:
    """One NoticeDelivered or NoticeFailed the outbox recorded."""

    event_id: str
    type: str
    message_id: str
    occurred_at: datetime  # the delivery or the attempt (naive UTC)
    reason: str | None


def owed_rows(con: ReadConnection, message_id: str | None = None) -> list[OwedRow]:
    """Every event that owes a message (or the one with this id), oldest first. Whether it is
    still pending (not delivered, not finally failed, still in force) is the caller's rule."""
    one = " AND e.event_id = $1" if message_id is not None else ""
    params: list[Any] = [message_id] if message_id is not None else []
    rows = con.execute(f"""
        SELECT e.event_id, 'deletion_notice', e.controller, e.subject, e.occurred_at,
               CAST(json_extract_string(e.body, '$.due_at') AS TIMESTAMP), NULL::VARCHAR, e.position
        FROM events e WHERE e.type = 'DeletionNoticeSent' {one}
        UNION ALL
        SELECT e.event_id,
               CASE WHEN r.requested_right = 'erasure' THEN 'erasure_done' ELSE 'extract_ready' END,
               e.controller, e.subject, e.occurred_at, NULL::TIMESTAMP, r.request_id, e.position
        FROM events e
        JOIN rights_requests r ON r.controller = e.controller AND r.subject = e.subject
             AND r.close_event_id = e.event_id
        WHERE e.type = 'RightsRequestClosed' AND r.outcome IN {ANSWERED}
          AND r.requested_right IN ('erasure', {", ".join(repr(r) for r in EXTRACT_RIGHTS)}) {one}
        ORDER BY 8
    """, params).fetchall()
    return [OwedRow(*r[:7]) for r in rows]


def report_rows(con: ReadConnection, message_ids: list[str] | None = None) -> list[ReportRow]:
    """The outbox's reports (on these messages), in log order."""
    where = "" if message_ids is None else "AND json_extract_string(body, '$.message_id') IN (SELECT unnest($1))"
    params: list[Any] = [] if message_ids is None else [message_ids]
    rows = con.execute(f"""
        SELECT event_id, type, json_extract_string(body, '$.message_id'), occurred_at,
               json_extract_string(body, '$.reason')
        FROM events WHERE type IN ('NoticeDelivered', 'NoticeFailed') {where}
        ORDER BY position
    """, params).fetchall()
    return [ReportRow(*r) for r in rows]
