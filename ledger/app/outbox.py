"""The outbox: messages the ledger owes people — deletion notices (``DeletionNoticeSent``) and
the answers to rights requests (an erasure carried out, a register extract ready) — and the
mailer's reports on them, recorded as ``NoticeDelivered`` / ``NoticeFailed`` events.

Event-sourced: what is owed and what was reported are both in the log, so the pending list is
derived, never a side table that could disagree with it. A message's id is the id of the event
that owes it. Reports go through the normal append path under the writer lock; their ids are
derived from what they report, so reporting the same delivery (or the same failed attempt)
twice is a duplicate, not a second event. The contact address is decrypted from the subject's
own events only for the ``pending`` answer: it is never logged, projected or put in an error.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Final

from ledger.adapters import killpoints
from ledger.app.decisions import controller_policies
from ledger.app.opened import OpenLedger
from ledger.app.sweep import sweep_clock
from ledger.domain.errors import ClockError, KeyUnavailable, LedgerError, UsageError
from ledger.domain.events import Event
from ledger.domain.retention.policy import Policy
from ledger.domain.retention.rules import SubjectFacts
from ledger.domain.timeutil import format_micros, to_micros
from ledger.domain.vocabulary import OUTBOX_KINDS
from projections.store.opener import open_read_model
from projections.store.outbox_queries import OwedRow, ReportRow, owed_rows, report_rows
from projections.store.read_model import ReadConnection
from projections.store.retention_queries import noticed_facts
from projections.store.subject_queries import personal_events, relationship

OUTBOX_NAMESPACE: Final = uuid.UUID("0b8e3c7a-93d4-4f0e-a2f5-6d1c3b9e7a40")
SOURCE: Final = "ledger"
ACTOR: Final = "system:outbox"
MAX_REASON_CHARS: Final = 500
_UNPRINTABLE: Final = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
# A bounce often quotes the address ("550 <anna@…> unknown"): the log keeps the reason, never it.
_ADDRESS: Final = re.compile(r"[^\s@<>\"']+@[^\s@<>\"']+")


class UnknownMessage(UsageError):
    """No message of the outbox has this id (exit 2; HTTP answers 404)."""

    def __init__(self, message_id: str) -> None:
        super().__init__("no message of the outbox has this id", parameter="message_id",
                         value=message_id)


class MessageClosed(UsageError):
    """The message is no longer pending: delivered, or finally failed (exit 2; HTTP 409)."""

    def __init__(self, message_id: str, why: str) -> None:
        super().__init__(f"the message is {why}; nothing more can be reported on it",
                         parameter="message_id", value=message_id)


@dataclass(frozen=True, slots=True)
class OutboxMessage:
    """One message owed to a person. ``contact`` is the decrypted address: kept out of
    ``repr`` so that logging a message never writes it."""

    message_id: str
    kind: str  # deletion_notice | erasure_done | extract_ready
    controller: str
    subject: str  # the pseudonym
    contact: str | None = field(repr=False)
    contact_note: str | None  # why there is no address, when there is none
    due_at: int  # when the message fell due (the owing event's time)
    erase_from: int | None  # deletion notices: the earliest erasure if delivered now
    clause: str | None  # the policy text to quote
    policy: str
    attempts_failed: int
    attempts_allowed: int
    request_id: str | None

    def as_dict(self) -> dict[str, Any]:
        return {"message_id": self.message_id, "kind": self.kind, "controller": self.controller,
                "subject": self.subject, "contact": self.contact, "contact_note": self.contact_note,
                "due_at": format_micros(self.due_at),
                "erase_from": None if self.erase_from is None else format_micros(self.erase_from),
                "clause": self.clause, "policy": self.policy,
                "attempts_failed": self.attempts_failed, "attempts_allowed": self.attempts_allowed,
                "request_id": self.request_id}


@dataclass(frozen=True, slots=True)
class ReportOutcome:
    """What recording a report did: ``accepted`` (appended at ``position``) or ``duplicate``
    (the same report is already in the log)."""

    message_id: str
    kind: str
    report: str  # delivered | failed
    status: str  # accepted | duplicate
    event_id: str
    position: int | None
    at: int
    final: bool  # the message is no longer pending after this report

    def as_dict(self) -> dict[str, Any]:
        return {"message_id": self.message_id, "kind": self.kind, "report": self.report,
                "status": self.status, "event_id": self.event_id, "position": self.position,
                "at": format_micros(self.at), "final": self.final}


@dataclass(frozen=True, slots=True)
class _State:
    """A message's reports, folded."""

    delivered: ReportRow | None
    failures: tuple[ReportRow, ...]

    def closed(self, policy: Policy) -> str | None:
        if self.delivered is not None:
            return "already delivered"
        if len(self.failures) >= policy.notice_retries + 1:
            return f"finally failed (after {len(self.failures)} attempts)"
        return None


def _states(reports: Iterable[ReportRow]) -> dict[str, _State]:
    delivered: dict[str, ReportRow] = {}
    failures: dict[str, list[ReportRow]] = {}
    for r in reports:
        if r.type == "NoticeDelivered":
            delivered.setdefault(r.message_id, r)
        else:
            failures.setdefault(r.message_id, []).append(r)
    return {m: _State(delivered.get(m), tuple(failures.get(m, ())))
            for m in set(delivered) | set(failures)}


_NOTHING = _State(None, ())


def check_message_id(message_id: object) -> str:
    """A message id as the outbox gives it out (a UUID, lower case); else a UsageError that
    does not echo the input."""
    if not isinstance(message_id, str) or len(message_id) != 36:
        raise UsageError("not a message id (a UUID such as 6f1c…-…)", parameter="message_id")
    try:
        parsed = uuid.UUID(message_id)
    except ValueError:
        raise UsageError("not a message id (a UUID such as 6f1c…-…)", parameter="message_id") from None
    return str(parsed)


def check_reason(reason: object) -> str:
    """The mailer's reason as the log keeps it: one printable line of at most
    MAX_REASON_CHARS, any e-mail address in it replaced by ``<address>``."""
    if not isinstance(reason, str) or not reason.strip():
        raise UsageError("give the mailer's reason (printable text)", parameter="reason")
    if len(reason) > MAX_REASON_CHARS:
        raise UsageError(f"longer than {MAX_REASON_CHARS} characters", parameter="reason")
    if _UNPRINTABLE.search(reason):
        raise UsageError("control characters are not allowed", parameter="reason")
    return _ADDRESS.sub("<address>", reason)


def check_kind(kind: str | None) -> str | None:
    if kind is not None and kind not in OUTBOX_KINDS:
        raise UsageError(f"must be one of {', '.join(OUTBOX_KINDS)}", parameter="kind",
                         value=kind[:40])
    return kind


# --- the pending list -----------------------------------------------------------------------


def pending(ledger: OpenLedger, kind: str | None = None) -> list[OutboxMessage]:
    """The messages owed and not yet delivered nor finally failed, oldest first, with the
    subject's decrypted contact address. A deletion notice is owed only while it is in force:
    the subject's latest notice, not voided by later activity, the subject not pseudonymised
    or erased since."""
    check_kind(kind)
    policies = controller_policies(ledger)
    now = ledger.clock.now()
    out: list[OutboxMessage] = []
    with open_read_model(ledger) as con:
        owed = [r for r in owed_rows(con) if kind is None or r.kind == kind]
        owed = [r for r in owed if r.controller in policies]
        states = _states(report_rows(con))
        facts = _notice_facts(con, policies, owed)
        for row in owed:
            policy = policies[row.controller]
            state = states.get(row.message_id, _NOTHING)
            if state.closed(policy) is not None:
                continue
            if row.kind == "deletion_notice" and not _in_force(row, facts):
                continue
            contact, note = _contact(ledger, con, row)
            out.append(_message(row, policy, state, contact, note, now))
    return out


def _notice_facts(con: ReadConnection, policies: dict[str, Policy],
                  owed: list[OwedRow]) -> dict[tuple[str, str], SubjectFacts]:
    """The retention facts of each subject with a deletion notice owed."""
    wanted = {(r.controller, r.subject) for r in owed if r.kind == "deletion_notice"}
    facts: dict[tuple[str, str], SubjectFacts] = {}
    for controller in sorted({c for c, _ in wanted}):
        for f in noticed_facts(con, policies[controller], controller):
            if (controller, f.subject) in wanted:
                facts[(controller, f.subject)] = f
    return facts


def _in_force(row: OwedRow, facts: dict[tuple[str, str], SubjectFacts]) -> bool:
    f = facts.get((row.controller, row.subject))
    if f is None or f.status != "active" or f.notice_event != row.message_id:
        return False
    start = f.last_activity_at if f.last_activity_at is not None else f.first_seen_at
    return f.notice_at is not None and f.notice_at > start


def _message(row: OwedRow, policy: Policy, state: _State, contact: str | None,
             note: str | None, now: int) -> OutboxMessage:
    erase_from = None
    if row.kind == "deletion_notice" and row.erase_from is not None:
        announced = to_micros(row.erase_from)
        # Counted from delivery: delivered now, the earliest erasure is now + the notice period.
        erase_from = (max(announced, policy.notice_before.add(now))
                      if policy.notice_before is not None else announced)
    return OutboxMessage(
        row.message_id, row.kind, row.controller, row.subject, contact, note,
        to_micros(row.owed_at), erase_from, policy.clause(row.kind), policy.name,
        len(state.failures), policy.notice_retries + 1, row.request_id)


def _contact(ledger: OpenLedger, con: ReadConnection, row: OwedRow) -> tuple[str | None, str | None]:
    """The subject's latest e-mail address, decrypted from its own events of the current
    relationship; or None and why. An erasure answer may use sealed keys (the subject is
    pseudonymised by the erasure it answers): the person is owed that answer."""
    rel = relationship(con, row.controller, row.subject)
    address: str | None = None
    unreadable = False
    for held in personal_events(con, row.controller, row.subject, rel):
        if held.earlier:
            continue
        event = _event_at(ledger, held.position)
        try:
            data = ledger.personal_data(event, include_sealed=row.kind == "erasure_done") or {}
        except KeyUnavailable:
            unreadable = True
            continue
        found = data.get("subject", {}).get("email") or data.get("pii", {}).get("email")
        if isinstance(found, str) and found:
            address = found  # later events rectify earlier values
    if address is not None:
        return address, None
    if unreadable:
        return None, "the subject's keys are destroyed or sealed: no address can be decrypted"
    return None, "no e-mail address is recorded for the subject"


def _event_at(ledger: OpenLedger, position: int) -> Event:
    for record in ledger.log.read(position, limit=1):
        return ledger.codec.decode(record.payload)
    raise LedgerError(f"log position {position} is missing: re-project with {{rebuild}}")


# --- reports ---------------------------------------------------------------------------------


def delivered(ledger: OpenLedger, message_id: str, at: int | None = None) -> ReportOutcome:
    """Records that the message was delivered at ``at`` (default: the ledger clock). The same
    delivery reported again is a duplicate. Raises UnknownMessage, MessageClosed (finally
    failed), or UsageError for a malformed id or a time before the message was owed or after
    the ledger clock."""
    return _report(ledger, check_message_id(message_id), "delivered", None, at)


def failed(ledger: OpenLedger, message_id: str, reason: str, at: int | None = None) -> ReportOutcome:
    """Records one failed attempt at ``at`` with the mailer's ``reason``. After the first
    attempt and the policy's ``notice_retries`` retries have failed the message finally fails:
    it leaves the pending list and a deletion notice's period counts from the last attempt."""
    return _report(ledger, check_message_id(message_id), "failed", check_reason(reason), at)


def _report(ledger: OpenLedger, message_id: str, report: str, reason: str | None,
            at: int | None) -> ReportOutcome:
    policies = controller_policies(ledger)
    with ledger.writer_lock:  # the check and the append see the same log
        try:
            now = sweep_clock(ledger)
        except ClockError as e:  # an explicit --now behind the log
            raise ClockError(str(e).replace("the sweep did nothing", "nothing was recorded")) from None
        when = now if at is None else at
        with open_read_model(ledger) as con:
            rows = owed_rows(con, message_id)
            if not rows or rows[0].controller not in policies:
                raise UnknownMessage(message_id)
            row = rows[0]
            state = _states(report_rows(con, [message_id])).get(message_id, _NOTHING)
        policy = policies[row.controller]
        owed_at = to_micros(row.owed_at)
        if when < owed_at:
            raise UsageError(f"{format_micros(when)} is before the message was owed "
                             f"({format_micros(owed_at)})", parameter="at")
        if when > now:
            raise UsageError(f"{format_micros(when)} is after the ledger clock "
                             f"({format_micros(now)})", parameter="at")
        event = _report_event(row, report, reason, when, now)
        earlier = state.delivered if report == "delivered" else next(
            (f for f in state.failures if f.event_id == event.event_id), None)
        if earlier is not None:  # the same report again: nothing to record
            return ReportOutcome(message_id, row.kind, report, "duplicate", earlier.event_id, None,
                                 to_micros(earlier.occurred_at), state.closed(policy) is not None)
        closed = state.closed(policy)
        if closed is not None:
            raise MessageClosed(message_id, closed)
        killpoints.reached("outbox:locked")
        (outcome,) = ledger.append_events([event])
        killpoints.reached("outbox:appended")
    final = report == "delivered" or len(state.failures) + 1 >= policy.notice_retries + 1
    return ReportOutcome(message_id, row.kind, report, outcome.status, event.event_id,
                         outcome.position, when, final)


def _report_event(row: OwedRow, report: str, reason: str | None, at: int, now: int) -> Event:
    if report == "delivered":
        # One delivery per message: its id names the message only.
        event_id = uuid.uuid5(OUTBOX_NAMESPACE, f"NoticeDelivered|{row.message_id}")
        return Event("NoticeDelivered", str(event_id), row.controller, row.subject, at, now,
                     SOURCE, ACTOR, {"message_id": row.message_id, "kind": row.kind})
    assert reason is not None
    event_id = uuid.uuid5(OUTBOX_NAMESPACE, f"NoticeFailed|{row.message_id}|{at}|{reason}")
    return Event("NoticeFailed", str(event_id), row.controller, row.subject, at, now, SOURCE,
                 ACTOR, {"message_id": row.message_id, "kind": row.kind, "reason": reason})
