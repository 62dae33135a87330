"""The fold: what each event type does to the projected state (SPEC §4). Pure domain code, no I/O.

Events arrive in batches, one ``EventColumns`` per event type (columns, not objects, so that a
batch of 100,000 events costs a few list comprehensions). Each event type has one handler in
``FOLDS`` that turns its events into ``Rows`` for a table; how rows combine with what a table
already holds is the table's ``MergeRule``:

- ``LatestWins``: per key, the row of the event with the later event time (``occurred_at``)
  wins, ties broken by log position. A ConsentGiven that occurred before an already projected
  ConsentWithdrawn therefore does not re-grant; both stay in ``events``.
- ``Append``: one row per event (disclosures).

Because both rules are commutative and associative, the tables do not depend on how the log
was cut into batches or where a projector was restarted; the determinism that the fingerprint
(SPEC §4) relies on.

Two tables depend on several events of a subject at once (a restriction is lifted by the close
of *that* request; erasure outranks everything): ``pseudonymisation_status`` and
``rights_requests`` are refolded per touched subject from its history of ``HISTORY_TYPES``
events by ``subject_status`` and ``request_rows``. The activity clocks are per-subject
minima/maxima of event time, declared in ``CLOCKS``.

Relationships (SPEC §5, the rule in ``ledger.vocabulary.RELATIONSHIP_STARTS``): a sign-up,
subscription or consent after an erasure starts a new relationship. ``subject_status`` numbers
them and names the erasure that closed the previous one (``Relationship.after``); every event up
to it (event time, then position) belongs to an erased relationship, and the store drops its
rows from consent_state, subscriptions and activity_clock. Adding events, in any event-time
order, only ever moves that boundary later (the current relationship begins after the last
erasure of all), so what is dropped stays dropped and the tables stay order-independent.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Final

from ledger.domain.retention.policy import Duration
from ledger.domain.vocabulary import ACTIVITY_TYPES, RELATIONSHIP_STARTS

# --- the input: a batch of events of one type ---------------------------------------------


# A column: a list, or an Arrow array from the columnar decoder. The fold only routes
# columns to tables; it never needs to look inside them.
Column = Any


@dataclass(frozen=True, slots=True)
class EventColumns:
    """Events of one type (one schema version) from one batch, as parallel columns in log
    order. Times are UTC microseconds; ``body`` maps each body field to its column."""

    type: str
    version: int
    position: Column
    event_id: Column
    controller: Column
    subject: Column
    occurred_at: Column
    recorded_at: Column
    source: Column
    actor: Column
    has_pii: Column
    body: dict[str, Column] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.position)


# --- the output: rows for a table, and how they merge -------------------------------------


@dataclass(frozen=True, slots=True)
class Rows:
    """Rows for one table: column -> values, or one value for every row."""

    table: str
    columns: dict[str, Column]  # a scalar (str, None, ...) is the value of every row


@dataclass(frozen=True, slots=True)
class LatestWins:
    """Per key, the row with the greatest ``order`` (event time, then log position) wins."""

    key: tuple[str, ...]
    order: tuple[str, ...] = ("since", "position")


@dataclass(frozen=True, slots=True)
class Append:
    """Every row is kept (one per event)."""


MergeRule = LatestWins | Append

MERGE_RULES: Final[dict[str, MergeRule]] = {
    "consent_state": LatestWins(("controller", "subject", "purpose")),
    "subscriptions": LatestWins(("controller", "subject", "list", "channel")),
    "disclosures": Append(),
    "subject_history": Append(),
    "notices": Append(),
}

# Activity clocks (table activity_clock): column -> the event types whose latest event time it
# holds. first_seen_at / last_event_at span every event of the subject.
CLOCKS: Final[dict[str, frozenset[str]]] = {
    "last_activity_at": frozenset(ACTIVITY_TYPES),
    "last_login_at": frozenset({"LoggedIn"}),
    "last_usage_at": frozenset({"ServiceUsed"}),
    "last_invoice_at": frozenset({"InvoiceUsageRecorded"}),
    "last_notice_at": frozenset({"DeletionNoticeSent"}),
}

# --- one handler per event type -----------------------------------------------------------

Handler = Callable[[EventColumns], list[Rows]]
FOLDS: dict[str, Handler] = {}


def folds(*event_types: str) -> Callable[[Handler], Handler]:
    def register(handler: Handler) -> Handler:
        for t in event_types:
            FOLDS[t] = handler
        return handler

    return register


def fold(batch: Iterable[EventColumns]) -> list[Rows]:
    """The state changes of a batch, in order. Types without a handler (profile updates, the
    sweep's notices and reviews) change only the event log and the activity clocks."""
    changes: list[Rows] = []
    for events in batch:
        handler = FOLDS.get(events.type)
        if handler is not None and len(events):
            changes.extend(handler(events))
    return changes


def _evidence(e: EventColumns) -> dict[str, Any]:
    """The columns every latest-wins row carries: who, when, and which event proves it."""
    return {
        "controller": e.controller,
        "subject": e.subject,
        "since": e.occurred_at,
        "recorded_at": e.recorded_at,
        "event_id": e.event_id,
        "position": e.position,
    }


@folds("ConsentGiven")
def consent_given(e: EventColumns) -> list[Rows]:
    b = e.body
    return [*subject_history(e), Rows("consent_state", {
        **_evidence(e), "purpose": b["purpose"], "status": "granted",
        "notice_id": b["notice_id"], "notice_version": b["notice_version"],
        "notice_sha256": b["notice_sha256"], "language": b["language"],
        "ui_action": b["ui_action"], "channel": b["channel"], "via": None,
    })]


@folds("ConsentWithdrawn")
def consent_withdrawn(e: EventColumns) -> list[Rows]:
    return [_consent_ended(e, "withdrawn")]


@folds("ObjectionRaised")
def objection_raised(e: EventColumns) -> list[Rows]:
    # Art. 21: an objection ends processing of the purpose, like a withdrawn consent.
    return [_consent_ended(e, "objected")]


def _consent_ended(e: EventColumns, status: str) -> Rows:
    return Rows("consent_state", {
        **_evidence(e), "purpose": e.body["purpose"], "status": status,
        "notice_id": None, "notice_version": None, "notice_sha256": None, "language": None,
        "ui_action": None, "channel": None, "via": e.body["via"],
    })


@folds("NewsletterSubscribed")
def newsletter_subscribed(e: EventColumns) -> list[Rows]:
    return [*subject_history(e), Rows("subscriptions", {
        **_evidence(e), "list": e.body["list"], "channel": e.body["channel"],
        "status": "subscribed", "via": None,
        "double_opt_in": e.body.get("double_opt_in", None),  # v1 events predate the field
    })]


@folds("Unsubscribed")
def unsubscribed(e: EventColumns) -> list[Rows]:
    # A '*' list or channel is kept as such: it covers every list/channel, including ones
    # subscribed to later in log order but earlier in event time, which expanding it here
    # could not.
    return [Rows("subscriptions", {
        **_evidence(e), "list": e.body["list"], "channel": e.body["channel"],
        "status": "unsubscribed", "via": e.body["via"], "double_opt_in": None,
    })]


@folds("DataShared")
def data_shared(e: EventColumns) -> list[Rows]:
    return [Rows("disclosures", {
        "position": e.position, "event_id": e.event_id, "controller": e.controller,
        "subject": e.subject, "recipient_kind": e.body["recipient_kind"],
        "recipient": e.body["recipient"], "basis": e.body["basis"], "shared_at": e.occurred_at,
    })]


@folds("NoticePublished")
def notice_published(e: EventColumns) -> list[Rows]:
    b = e.body
    return [Rows("notices", {
        "position": e.position, "event_id": e.event_id, "controller": e.controller,
        "notice_id": b["notice_id"], "version": b["version"], "language": b["language"],
        "title": b["title"], "sha256": b["sha256"], "published_at": b["published_at"],
        "recorded_at": e.recorded_at, "text": b["text"],
    })]


# --- per-subject refolds: pseudonymisation status and rights requests ----------------------

SUBJECT_TYPES: Final = frozenset(
    {"RightsRequested", "RightsRequestClosed", "SubjectPseudonymised", "SubjectErased"}
)
# What the refolds read: the rights and sweep events, and the events that can start a new
# relationship (a refold runs for those only when the subject has an erasure).
HISTORY_TYPES: Final = SUBJECT_TYPES | RELATIONSHIP_STARTS


@folds(*sorted(SUBJECT_TYPES), "SubjectRegistered")
def subject_history(e: EventColumns) -> list[Rows]:
    """Kept in the small subject_history table, which the refolds read (scanning every event
    of the log for a few subjects per page would not scale). ConsentGiven and
    NewsletterSubscribed add their row here besides their own table's."""
    b = e.body
    return [Rows("subject_history", {
        "controller": e.controller, "subject": e.subject, "position": e.position,
        "type": e.type, "occurred_at": e.occurred_at, "event_id": e.event_id,
        "request_id": b.get("request_id"), "requested_right": b.get("right"),
        "scope": b.get("scope"), "outcome": b.get("outcome"), "reason": b.get("reason"),
        "erase_due_at": b.get("erase_due_at"),
    })]
# Closing a restriction request with these outcomes lifts the restriction; a fulfilled
# restriction stays in force (there is no event that lifts it later yet).
LIFTING_OUTCOMES: Final = frozenset({"refused", "withdrawn"})


@dataclass(frozen=True, slots=True)
class HistoryEvent:
    """One of a subject's SUBJECT_TYPES events, as the refolds need it."""

    type: str
    position: int
    occurred_at: int
    event_id: str
    body: dict[str, Any]

    @property
    def order(self) -> tuple[int, int]:
        return (self.occurred_at, self.position)


@dataclass(frozen=True, slots=True)
class Relationship:
    """The subject's current relationship: 1 for the first; each sign-up, subscription or
    consent after an erasure starts the next (``ledger.vocabulary.RELATIONSHIP_STARTS``)."""

    number: int = 1
    since: int | None = None  # event time of the event that started it; None: the first
    event_id: str | None = None
    # The SubjectErased that closed the previous relationship, as (occurred_at, position):
    # events ordered at or before it belong to erased relationships and count for nothing.
    after: tuple[int, int] | None = None

    def includes(self, occurred_at: int, position: int) -> bool:
        return self.after is None or (occurred_at, position) > self.after


@dataclass(frozen=True, slots=True)
class SubjectStatus:
    status: str  # active | restricted | pseudonymised | erased
    since: int | None = None  # None: active since first seen, never changed
    erase_due_at: int | None = None
    reason: str | None = None
    request_id: str | None = None
    event_id: str | None = None
    relationship: Relationship = Relationship()


ACTIVE: Final = SubjectStatus("active")


def subject_status(history: Sequence[HistoryEvent]) -> SubjectStatus:
    """The subject's pseudonymisation status after these events, taken in event-time order.
    Erasure is final for the relationship: afterwards only an event of RELATIONSHIP_STARTS
    counts, and it starts a new relationship (``active`` again, nothing earlier carried over);
    pseudonymisation outranks a restriction; a restriction request restricts at once and is
    lifted only when that request is closed as refused or withdrawn."""
    state = ACTIVE
    relationship = Relationship()
    last_erasure: HistoryEvent | None = None
    restrictions: dict[str, HistoryEvent] = {}  # open restriction requests
    for e in sorted(history, key=lambda h: h.order):
        if state.status == "erased":
            if e.type == "SubjectErased":  # e.g. the end of a legal hold: keys of the same one
                last_erasure = e
            elif e.type in RELATIONSHIP_STARTS:
                assert last_erasure is not None
                relationship = Relationship(relationship.number + 1, e.occurred_at, e.event_id,
                                            last_erasure.order)
                restrictions = {}
                state = SubjectStatus("active", e.occurred_at, None, "new relationship", None,
                                      e.event_id)
            continue
        match e.type:
            case "RightsRequested" if e.body.get("right") == "restriction":
                restrictions[e.body["request_id"]] = e
                if state.status in ("active", "restricted"):
                    state = SubjectStatus("restricted", e.occurred_at, None,
                                          "restriction requested", e.body["request_id"], e.event_id)
            case "RightsRequestClosed" if e.body.get("request_id") in restrictions:
                if e.body.get("outcome") in LIFTING_OUTCOMES:
                    del restrictions[e.body["request_id"]]
                    if state.status == "restricted" and not restrictions:
                        state = SubjectStatus("active", e.occurred_at, None,
                                              f"restriction {e.body['outcome']}",
                                              e.body["request_id"], e.event_id)
            case "SubjectPseudonymised":
                state = SubjectStatus("pseudonymised", e.occurred_at, e.body.get("erase_due_at"),
                                      e.body.get("reason"), None, e.event_id)
            case "SubjectErased":
                state = SubjectStatus("erased", e.occurred_at, None, e.body.get("reason"), None,
                                      e.event_id)
                last_erasure = e
    return replace(state, relationship=relationship)


@dataclass(frozen=True, slots=True)
class RightsRequest:
    request_id: str
    requested_right: str | None  # None: a close whose request is not (yet) in the log
    scope: str | None
    received_at: int | None
    due_at: int | None
    closed_at: int | None
    outcome: str | None
    request_event_id: str | None
    close_event_id: str | None


def request_rows(history: Sequence[HistoryEvent]) -> list[RightsRequest]:
    """One row per request id: the earliest RightsRequested (the clock starts at receipt)
    and the latest RightsRequestClosed."""
    opened: dict[str, HistoryEvent] = {}
    closed: dict[str, HistoryEvent] = {}
    for e in sorted(history, key=lambda h: h.order):
        rid = e.body.get("request_id")
        if rid is None:
            continue
        if e.type == "RightsRequested":
            opened.setdefault(rid, e)
        elif e.type == "RightsRequestClosed":
            closed[rid] = e
    rows = []
    for rid in sorted(opened.keys() | closed.keys()):
        o, c = opened.get(rid), closed.get(rid)
        rows.append(RightsRequest(
            request_id=rid,
            requested_right=o.body.get("right") if o else None,
            scope=o.body.get("scope") if o else None,
            received_at=o.occurred_at if o else None,
            due_at=answer_due(o.occurred_at) if o else None,
            closed_at=c.occurred_at if c else None,
            outcome=c.body.get("outcome") if c else None,
            request_event_id=o.event_id if o else None,
            close_event_id=c.event_id if c else None,
        ))
    return rows


def answer_due(received_at: int) -> int:
    """GDPR Art. 12(3): a request is answered within one month of receipt (a calendar month:
    the 31st of January is due on the last day of February)."""
    return ONE_MONTH.add(received_at)


ONE_MONTH: Final = Duration(months=1)
