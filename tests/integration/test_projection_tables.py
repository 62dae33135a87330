"""The state each event type leaves in the DuckDB tables, including out-of-order event time
within a subject (the later occurred_at wins for state; every event stays in ``events``)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest

from ledger.app.service import Ledger
from ledger.domain.vocabulary import EVENT_TYPES, NOTICE_TYPES, SWEEP_TYPES
from tests.conftest import make_event


def ts(text: str) -> datetime:
    return datetime.fromisoformat(text)


def one(con: Any, sql: str) -> tuple[Any, ...]:
    rows = con.execute(sql).fetchall()
    assert len(rows) == 1, rows
    return tuple(rows[0])


def test_every_event_type_is_in_events_without_pii(ledger: Ledger, projected, sweep_event) -> None:
    ledger.record_many([make_event(t) for t in EVENT_TYPES if t in _PRODUCER_TYPES])
    sweep_event("DeletionNoticeSent", "2026-03-02", due_at=parse("2026-03-16"), policy="cowrite",
                policy_hash="h", rule="inactive", evidence=["e1"])
    sweep_event("RetentionReviewed", "2026-03-02", policy="coegi", policy_hash="h",
                as_of=parse("2026-03-02"), counts={"erase": 2, "keep": 5})
    con = projected()
    types = {r[0] for r in con.execute("SELECT type FROM events").fetchall()}
    assert types == set(_PRODUCER_TYPES) | {"DeletionNoticeSent", "RetentionReviewed"}
    columns = {r[0] for r in con.execute("DESCRIBE events").fetchall()}
    assert "pii" not in columns and "has_pii" in columns
    # no plaintext personal data anywhere in the file's event rows
    dump = str(con.execute("SELECT * FROM events").fetchall())
    assert "Anna" not in dump and "example.se" not in dump and "+46" not in dump
    assert one(con, "SELECT body->>'counts' FROM events WHERE type = 'RetentionReviewed'") == (
        '{"erase":2,"keep":5}',)


# Everything but what the ledger records itself (the sweep's and the outbox's events).
_PRODUCER_TYPES = [t for t in EVENT_TYPES if t not in SWEEP_TYPES and t not in NOTICE_TYPES]


def parse(text: str) -> int:
    from ledger.domain.timeutil import parse_timestamp

    return parse_timestamp(text)


def test_subject_registered_starts_the_clocks(ledger: Ledger, projected) -> None:
    ledger.record_many([make_event("SubjectRegistered", occurred_at="2026-01-10T08:00:00Z")])
    con = projected()
    assert one(con, "SELECT first_seen_at, last_activity_at, last_login_at, last_event_at, "
                    "event_count FROM activity_clock") == (
        ts("2026-01-10 08:00"), ts("2026-01-10 08:00"), None, ts("2026-01-10 08:00"), 1)
    assert one(con, "SELECT status, since FROM pseudonymisation_status") == ("active", None)


def test_personal_data_updated_is_not_activity(ledger: Ledger, projected) -> None:
    ledger.record_many([
        make_event("LoggedIn", occurred_at="2026-01-10T08:00:00Z"),
        make_event("PersonalDataUpdated", occurred_at="2026-02-01T08:00:00Z"),
    ])
    assert one(projected(), "SELECT last_activity_at, last_event_at FROM activity_clock") == (
        ts("2026-01-10 08:00"), ts("2026-02-01 08:00"))


@pytest.mark.parametrize(("event_type", "column"), [
    ("LoggedIn", "last_login_at"), ("ServiceUsed", "last_usage_at"),
    ("InvoiceUsageRecorded", "last_invoice_at"),
])
def test_activity_clocks_keep_the_latest_event_time(ledger: Ledger, projected, event_type: str,
                                                    column: str) -> None:
    ledger.record_many([
        make_event(event_type, occurred_at="2026-02-10T08:00:00Z"),
        make_event(event_type, occurred_at="2026-01-10T08:00:00Z"),  # late arrival
    ])
    assert one(projected(), f"SELECT {column}, last_activity_at, first_seen_at FROM activity_clock") == (
        ts("2026-02-10 08:00"), ts("2026-02-10 08:00"), ts("2026-01-10 08:00"))


def test_consent_given_records_the_proof(ledger: Ledger, projected) -> None:
    e = make_event("ConsentGiven", occurred_at="2026-02-01T10:00:00Z")
    ledger.record_many([e])
    assert one(projected(), "SELECT purpose, status, since, event_id, notice_id, notice_version, "
                            "ui_action, channel FROM consent_state") == (
        "newsletter", "granted", ts("2026-02-01 10:00"), e["event_id"], "nl-terms", "3",
        "Skicka", "web")


def test_consent_withdrawn_after_given(ledger: Ledger, projected) -> None:
    ledger.record_many([
        make_event("ConsentGiven", purpose="profiling", occurred_at="2026-02-01T10:00:00Z"),
        make_event("ConsentWithdrawn", purpose="profiling", occurred_at="2026-02-02T10:00:00Z"),
    ])
    assert one(projected(), "SELECT status, since, via, notice_id FROM consent_state") == (
        "withdrawn", ts("2026-02-02 10:00"), "settings", None)


def test_consent_given_that_occurred_before_a_withdrawal_does_not_regrant(
        ledger: Ledger, projected) -> None:
    withdrawn = make_event("ConsentWithdrawn", purpose="profiling", occurred_at="2026-02-02T10:00:00Z")
    ledger.record_many([withdrawn])
    con = projected()
    # projected in a separate page: the older ConsentGiven arrives after the withdrawal
    ledger.record_many([make_event("ConsentGiven", purpose="profiling",
                                   occurred_at="2026-02-01T10:00:00Z")])
    con = projected()
    assert one(con, "SELECT status, event_id FROM consent_state") == ("withdrawn", withdrawn["event_id"])
    assert one(con, "SELECT count(*) FROM events WHERE type LIKE 'Consent%'") == (2,)


def test_same_event_time_breaks_ties_by_log_position(ledger: Ledger, projected) -> None:
    at = "2026-02-01T10:00:00Z"
    ledger.record_many([
        make_event("ConsentWithdrawn", purpose="profiling", occurred_at=at),
        make_event("ConsentGiven", purpose="profiling", occurred_at=at),
    ])
    assert one(projected(), "SELECT status, position FROM consent_state") == ("granted", 2)


def test_objection_raised(ledger: Ledger, projected) -> None:
    ledger.record_many([make_event("ObjectionRaised", occurred_at="2026-02-01T10:00:00Z")])
    assert one(projected(), "SELECT purpose, status, via FROM consent_state") == (
        "marketing", "objected", "email")


def test_newsletter_subscribed_then_unsubscribed_everywhere(ledger: Ledger, projected) -> None:
    ledger.record_many([
        make_event("NewsletterSubscribed", occurred_at="2026-02-01T10:00:00Z"),
        make_event("Unsubscribed", occurred_at="2026-02-05T10:00:00Z"),
    ])
    rows = projected().execute(
        'SELECT list, channel, status, since, via FROM subscriptions ORDER BY list').fetchall()
    assert rows == [("*", "*", "unsubscribed", ts("2026-02-05 10:00"), "link"),
                    ("weekly", "email", "subscribed", ts("2026-02-01 10:00"), None)]


def test_unsubscribe_that_occurred_earlier_does_not_end_a_later_subscription(
        ledger: Ledger, projected) -> None:
    ledger.record_many([
        make_event("NewsletterSubscribed", occurred_at="2026-02-05T10:00:00Z"),
        make_event("Unsubscribed", list="weekly", channel="email",
                   occurred_at="2026-02-01T10:00:00Z"),
    ])
    assert one(projected(), "SELECT status, since FROM subscriptions") == (
        "subscribed", ts("2026-02-05 10:00"))


def test_data_shared_is_a_disclosure(ledger: Ledger, projected, anna: str) -> None:
    ledger.record_many([make_event("DataShared", occurred_at="2026-02-01T10:00:00Z")])
    assert one(projected(), "SELECT subject, recipient_kind, recipient, basis, shared_at FROM disclosures") == (
        anna, "coach", "Matchning Norr AB", "consent", ts("2026-02-01 10:00"))


def test_rights_request_is_due_in_one_calendar_month(ledger: Ledger, projected) -> None:
    ledger.record_many([make_event("RightsRequested", request_id="rq-9", right="access",
                                   occurred_at="2026-01-31T10:00:00Z")])
    con = projected()
    assert one(con, "SELECT request_id, requested_right, received_at, due_at, closed_at, outcome "
                    "FROM rights_requests") == (
        "rq-9", "access", ts("2026-01-31 10:00"), ts("2026-02-28 10:00"), None, None)
    assert one(con, "SELECT status FROM pseudonymisation_status") == ("active",)


def test_rights_request_closed(ledger: Ledger, projected) -> None:
    ledger.record_many([
        make_event("RightsRequested", occurred_at="2026-01-10T10:00:00Z"),
        make_event("RightsRequestClosed", occurred_at="2026-01-20T10:00:00Z"),
    ])
    assert one(projected(), "SELECT requested_right, closed_at, outcome FROM rights_requests") == (
        "erasure", ts("2026-01-20 10:00"), "fulfilled")


def test_restriction_request_restricts_until_refused(ledger: Ledger, projected) -> None:
    ledger.record_many([make_event("RightsRequested", request_id="rq-r", right="restriction",
                                   occurred_at="2026-01-10T10:00:00Z")])
    assert one(projected(), "SELECT status, since, request_id FROM pseudonymisation_status") == (
        "restricted", ts("2026-01-10 10:00"), "rq-r")
    ledger.record_many([make_event("RightsRequestClosed", request_id="rq-r", outcome="refused",
                                   occurred_at="2026-01-12T10:00:00Z")])
    assert one(projected(), "SELECT status, since, reason FROM pseudonymisation_status") == (
        "active", ts("2026-01-12 10:00"), "restriction refused")


def test_fulfilled_restriction_stays_in_force(ledger: Ledger, projected) -> None:
    ledger.record_many([
        make_event("RightsRequested", request_id="rq-r", right="restriction",
                   occurred_at="2026-01-10T10:00:00Z"),
        make_event("RightsRequestClosed", request_id="rq-r", outcome="fulfilled",
                   occurred_at="2026-01-12T10:00:00Z"),
    ])
    assert one(projected(), "SELECT status FROM pseudonymisation_status") == ("restricted",)


def test_subject_pseudonymised_then_erased(ledger: Ledger, projected, sweep_event) -> None:
    ledger.record_many([make_event("LoggedIn", occurred_at="2026-01-01T10:00:00Z")])
    sweep_event("SubjectPseudonymised", "2026-01-05T00:00:00Z", reason="erasure request",
                erase_due_at=parse("2026-03-06"), policy="cowrite", policy_hash="h", evidence=[])
    assert one(projected(), "SELECT status, since, erase_due_at, reason FROM pseudonymisation_status") == (
        "pseudonymised", ts("2026-01-05 00:00"), ts("2026-03-06 00:00"), "erasure request")
    sweep_event("SubjectErased", "2026-03-06T00:00:00Z", reason="pseudonymisation period ended",
                policy="cowrite", policy_hash="h", keys_shredded=["profile"], evidence=[])
    assert one(projected(), "SELECT status, since FROM pseudonymisation_status") == (
        "erased", ts("2026-03-06 00:00"))


def test_erasure_is_final_even_against_later_event_time(ledger: Ledger, projected,
                                                         sweep_event) -> None:
    sweep_event("SubjectErased", "2026-03-06T00:00:00Z", reason="inactive", policy="cowrite",
                policy_hash="h", keys_shredded=["profile"], evidence=[])
    ledger.record_many([make_event("RightsRequested", request_id="rq-late", right="restriction",
                                   occurred_at="2026-04-01T00:00:00Z")])
    assert one(projected(), "SELECT status FROM pseudonymisation_status") == ("erased",)


def test_deletion_notice_sets_the_notice_clock(ledger: Ledger, projected, sweep_event) -> None:
    sweep_event("DeletionNoticeSent", "2026-02-20T00:00:00Z", due_at=parse("2026-03-06"),
                policy="cowrite", policy_hash="h", rule="inactive", evidence=[])
    assert one(projected(), "SELECT last_notice_at, last_activity_at FROM activity_clock") == (
        ts("2026-02-20 00:00"), None)


def test_undecodable_records_go_to_projection_errors(ledger: Ledger, projected) -> None:
    from ledger.domain.chain import PendingRecord

    ledger.record_many([make_event("LoggedIn")])
    ledger.log.append([PendingRecord("00000000-0000-4000-8000-0000000000ff", "FutureType", "s",
                                     ledger.clock.now(), b"\xc3\x01" + bytes(8) + b"\x02")])
    ledger.record_many([make_event("ServiceUsed")])
    con = projected()
    assert one(con, "SELECT position, reason FROM projection_errors") == (
        2, "unknown schema fingerprint 0000000000000000")
    assert one(con, "SELECT count(*) FROM events") == (2,)
    assert one(con, "SELECT position FROM ledger_position") == (3,)
