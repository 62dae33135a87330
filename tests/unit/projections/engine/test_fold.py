"""The pure fold: handlers per event type, the per-subject refolds, calendar months."""

from __future__ import annotations

import pytest

from ledger.domain.timeutil import parse_timestamp
from ledger.domain.vocabulary import EVENT_TYPES, RELATIONSHIP_STARTS
from projections.engine.fold import (
    FOLDS,
    HISTORY_TYPES,
    EventColumns,
    HistoryEvent,
    Relationship,
    answer_due,
    fold,
    request_rows,
    subject_status,
)


def columns(event_type: str, n: int = 2, **body: list[object]) -> EventColumns:
    return EventColumns(event_type, 1, list(range(1, n + 1)), [f"e{i}" for i in range(n)],
                        ["cowrite"] * n, ["s"] * n, [10 * i for i in range(n)],
                        [100] * n, ["web"] * n, ["subject"] * n, [False] * n, body)


def test_every_handler_belongs_to_a_known_event_type() -> None:
    assert set(FOLDS) <= set(EVENT_TYPES)


def test_consent_handlers_set_the_status_and_keep_the_columns() -> None:
    given = columns("ConsentGiven", purpose=["a", "b"], notice_id=["n", "n"],
                    notice_version=["1", "2"], notice_sha256=[None, None], language=["sv", "sv"],
                    ui_action=["Skicka", "Skicka"], channel=["web", "app"])
    withdrawn = columns("ConsentWithdrawn", purpose=["a", "b"], via=["link", "settings"])
    history, *rows = fold([given, withdrawn])
    # A consent can start a new relationship after an erasure: the refolds see it too.
    assert history.table == "subject_history" and history.columns["type"] == "ConsentGiven"
    assert [r.table for r in rows] == ["consent_state", "consent_state"]
    assert rows[0].columns["status"] == "granted" and rows[0].columns["purpose"] == ["a", "b"]
    assert rows[1].columns["status"] == "withdrawn" and rows[1].columns["since"] == [0, 10]


def test_types_without_state_of_their_own_fold_to_nothing() -> None:
    assert fold([columns("LoggedIn", app=["x", "x"], method=["y", "y"])]) == []


def h(event_type: str, hour: int, position: int, **body: object) -> HistoryEvent:
    return HistoryEvent(event_type, position, hour * 3_600_000_000, f"e{position}", dict(body))


RESTRICT = {"request_id": "r1", "right": "restriction"}


@pytest.mark.parametrize(("history", "expected"), [
    ([], ("active", None)),
    ([h("RightsRequested", 1, 1, **RESTRICT)], ("restricted", 1)),
    ([h("RightsRequested", 1, 1, **RESTRICT),
      h("RightsRequestClosed", 2, 2, request_id="r1", outcome="refused")], ("active", 2)),
    ([h("RightsRequested", 1, 1, **RESTRICT),
      h("RightsRequestClosed", 2, 2, request_id="r1", outcome="fulfilled")], ("restricted", 1)),
    # two open restrictions: lifting one keeps the other in force
    ([h("RightsRequested", 1, 1, **RESTRICT),
      h("RightsRequested", 2, 2, request_id="r2", right="restriction"),
      h("RightsRequestClosed", 3, 3, request_id="r1", outcome="withdrawn")], ("restricted", 2)),
    # a close that occurred before its request does not lift it
    ([h("RightsRequestClosed", 1, 1, request_id="r1", outcome="refused"),
      h("RightsRequested", 2, 2, **RESTRICT)], ("restricted", 2)),
    # event time, not log order: the pseudonymisation occurred later than the restriction
    ([h("SubjectPseudonymised", 5, 1, reason="x", erase_due_at=99),
      h("RightsRequested", 1, 2, **RESTRICT)], ("pseudonymised", 5)),
    ([h("SubjectErased", 5, 1, reason="x"),
      h("SubjectPseudonymised", 6, 2, reason="x", erase_due_at=99)], ("erased", 5)),
])
def test_subject_status(history: list[HistoryEvent], expected: tuple[str, int | None]) -> None:
    st = subject_status(history)
    since_hour = None if st.since is None else st.since // 3_600_000_000
    assert (st.status, since_hour) == expected


def test_request_rows_pair_requests_with_their_close() -> None:
    rows = request_rows([
        h("RightsRequested", 1, 1, request_id="r1", right="access"),
        h("RightsRequested", 2, 2, request_id="r1", right="access"),  # a resend: earliest counts
        h("RightsRequestClosed", 3, 3, request_id="r1", outcome="fulfilled"),
        h("RightsRequestClosed", 4, 4, request_id="r9", outcome="refused"),
    ])
    assert [(r.request_id, r.requested_right, r.received_at, r.outcome, r.request_event_id)
            for r in rows] == [("r1", "access", 3_600_000_000, "fulfilled", "e1"),
                               ("r9", None, None, "refused", None)]


@pytest.mark.parametrize(("received", "due"), [
    ("2026-01-15T10:00:00Z", "2026-02-15T10:00:00Z"),
    ("2026-01-31T10:00:00Z", "2026-02-28T10:00:00Z"),
    ("2028-01-31T00:00:00Z", "2028-02-29T00:00:00Z"),
    ("2026-12-31T23:59:59Z", "2027-01-31T23:59:59Z"),
])
def test_a_request_is_due_one_calendar_month_after_receipt(received: str, due: str) -> None:
    assert answer_due(parse_timestamp(received)) == parse_timestamp(due)


# --- relationships (issue 9, row 7; SPEC §5) -------------------------------------------------

ERASED = {"reason": "inactivity"}


def relationship(history: list[HistoryEvent]) -> tuple[str, int, int | None, tuple[int, int] | None]:
    st = subject_status(history)
    r = st.relationship
    return (st.status, r.number, None if r.since is None else r.since // 3_600_000_000,
            None if r.after is None else (r.after[0] // 3_600_000_000, r.after[1]))


@pytest.mark.parametrize("start", sorted(RELATIONSHIP_STARTS))
def test_row07_a_start_after_an_erasure_begins_a_new_relationship(start: str) -> None:
    history = [h("SubjectRegistered", 1, 1), h("SubjectErased", 5, 2, **ERASED), h(start, 9, 3)]
    assert relationship(history) == ("active", 2, 9, (5, 2))
    st = subject_status(history)
    assert (st.since, st.event_id, st.reason) == (9 * 3_600_000_000, "e3", "new relationship")


@pytest.mark.parametrize(("history", "expected"), [
    # no erasure: every sign-up belongs to the first relationship
    ([h("SubjectRegistered", 1, 1), h("SubjectRegistered", 2, 2), h("ConsentGiven", 3, 3)],
     ("active", 1, None, None)),
    # activity that needs an account does not revive an erased subject
    ([h("SubjectRegistered", 1, 1), h("SubjectErased", 5, 2, **ERASED)], ("erased", 1, None, None)),
    # event time, not log order: a consent recorded late that occurred before the erasure
    ([h("SubjectErased", 5, 1, **ERASED), h("ConsentGiven", 4, 2)], ("erased", 1, None, None)),
    # ...and a sign-up recorded before an erasure it occurred after
    ([h("SubjectRegistered", 9, 1), h("SubjectErased", 5, 2, **ERASED)], ("active", 2, 9, (5, 2))),
    # a second erasure (the end of a legal hold) before the new sign-up closes the relationship
    ([h("SubjectErased", 5, 1, **ERASED), h("SubjectErased", 7, 2, **ERASED),
      h("SubjectRegistered", 9, 3)], ("active", 2, 9, (7, 2))),
    # the first start after the erasure begins the relationship; later ones change nothing
    ([h("SubjectErased", 5, 1, **ERASED), h("NewsletterSubscribed", 6, 2),
      h("SubjectRegistered", 9, 3)], ("active", 2, 6, (5, 1))),
    # erased again, and back again: the third relationship
    ([h("SubjectErased", 5, 1, **ERASED), h("SubjectRegistered", 6, 2),
      h("SubjectErased", 8, 3, **ERASED), h("SubjectRegistered", 9, 4)], ("active", 3, 9, (8, 3))),
    # erased in the second relationship: the boundary of that relationship stays
    ([h("SubjectErased", 5, 1, **ERASED), h("SubjectRegistered", 6, 2),
      h("SubjectErased", 8, 3, **ERASED)], ("erased", 2, 6, (5, 1))),
    # pseudonymised (an erasure under way): a sign-up does not start a relationship (SPEC §5
    # defines one only after an erasure)
    ([h("SubjectPseudonymised", 5, 1, reason="x", erase_due_at=99),
      h("SubjectRegistered", 6, 2)], ("pseudonymised", 1, None, None)),
    # equal event times: log position orders them
    ([h("SubjectErased", 5, 2, **ERASED), h("SubjectRegistered", 5, 1)], ("erased", 1, None, None)),
    ([h("SubjectErased", 5, 1, **ERASED), h("SubjectRegistered", 5, 2)], ("active", 2, 5, (5, 1))),
])
def test_row07_relationships(history: list[HistoryEvent],
                             expected: tuple[str, int, int | None, tuple[int, int] | None]) -> None:
    assert relationship(history) == expected


def test_row07_a_restriction_of_the_erased_relationship_does_not_carry_over() -> None:
    history = [h("RightsRequested", 1, 1, **RESTRICT), h("SubjectErased", 5, 2, **ERASED),
               h("SubjectRegistered", 9, 3)]
    assert subject_status(history).status == "active"
    later = [*history, h("RightsRequested", 10, 4, request_id="r2", right="restriction")]
    assert subject_status(later).status == "restricted"


def test_row07_relationship_includes() -> None:
    first = Relationship()
    assert first.includes(0, 1)
    second = Relationship(2, 9, "e3", (5, 2))
    assert not second.includes(4, 9) and not second.includes(5, 2)
    assert second.includes(5, 3) and second.includes(6, 1)


def test_row07_sign_ups_and_opt_ins_reach_the_refolds() -> None:
    registered = columns("SubjectRegistered", relation=["user", "user"], account_ref=[None, None])
    subscribed = columns("NewsletterSubscribed", list=["w", "w"], channel=["email", "sms"])
    tables = [(r.table, r.columns.get("type")) for r in fold([registered, subscribed])]
    assert ("subject_history", "SubjectRegistered") in tables
    assert ("subject_history", "NewsletterSubscribed") in tables
    assert HISTORY_TYPES >= RELATIONSHIP_STARTS
    assert fold([columns("LoggedIn", app=["x", "x"], method=["y", "y"])]) == []
