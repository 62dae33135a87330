"""The bad-input table: every hostile or broken producer line is rejected with a reason that
names the field and the problem; strings that merely look dangerous are valid and kept exact."""

from __future__ import annotations

import json
from typing import Any

import pytest

from ledger.domain.errors import InvalidEvent
from ledger.domain.intake import MAX_LINE_BYTES, Intake
from ledger.domain.timeutil import parse_timestamp
from tests.conftest import BODIES, make_event

NOW = parse_timestamp("2026-03-05T12:00:00Z")


def line(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False).encode()


def without(key: str, event_type: str = "LoggedIn") -> bytes:
    event = make_event(event_type)
    del event[key]
    return line(event)


DEEP = b"[" * 100_000 + b"]" * 100_000

# (id, raw line, substring the reason must contain)
BAD_LINES: list[tuple[str, bytes, str]] = [
    ("not json", b"not json", "malformed JSON"),
    ("truncated json", line(make_event())[:-5], "malformed JSON"),
    ("json array", b"[1, 2, 3]", "must be a JSON object"),
    ("json string", b'"LoggedIn"', "must be a JSON object"),
    ("json null", b"null", "must be a JSON object"),
    ("NaN literal", line(make_event())[:-1] + b', "x": NaN}', "NaN is not valid JSON"),
    ("duplicate key", b'{"type": "LoggedIn", "type": "ServiceUsed"}', "duplicate key"),
    ("nested too deep", DEEP, "nested too deeply"),
    ("huge integer", b'{"type": "InvoiceUsageRecorded", "units": ' + b"9" * 5000 + b"}", "malformed JSON"),
    ("non-utf8", b'{"type": "LoggedIn", "source": "\xff\xfe"}', "not UTF-8"),
    ("latin-1 bytes", "{\"type\": \"LoggedIn\", \"app\": \"Göteborg\"}".encode("latin-1"), "not UTF-8"),
    ("oversize line", b'{"type": "LoggedIn", "pad": "' + b"x" * MAX_LINE_BYTES + b'"}', "over the 1 MiB limit"),
    ("missing type", without("type"), "type: missing"),
    ("type not a string", line(make_event(type=7)), "type: expected a string"),
    ("unknown type", line({**make_event(), "type": "Teleported"}), "type: unknown event type"),
    ("sweep type from producer", line({**make_event(), "type": "SubjectErased"}), "emitted by the retention sweep"),
    ("outbox delivery from producer", line({**make_event(), "type": "NoticeDelivered"}),
     "NoticeDelivered is recorded by the ledger's outbox"),
    ("outbox failure from producer", line({**make_event(), "type": "NoticeFailed"}),
     "NoticeFailed is recorded by the ledger's outbox"),
    ("missing event_id", without("event_id"), "event_id: missing"),
    ("event_id not a uuid", line(make_event(event_id="12345")), "event_id: not a UUID"),
    ("event_id a number", line(make_event(event_id=12345)), "event_id: expected a UUID"),
    ("missing controller", without("controller"), "controller: missing"),
    ("unknown controller", line(make_event(controller="acme")), "controller: unknown controller"),
    ("missing subject", without("subject"), "subject: missing"),
    ("subject a string", line(make_event(subject="anna@example.se")), "subject: expected an object"),
    ("subject two identifiers", line(make_event(subject={"email": "a@example.se", "account": "x"})), "exactly one"),
    ("subject bad email", line(make_event(subject={"email": "not-an-address"})), "subject.email: not an e-mail"),
    ("subject bad pseudonym", line(make_event(subject={"id": "ABC"})), "subject.id: expected a pseudonym"),
    ("subject account with spaces", line(make_event(subject={"account": "a b"})), "subject.account"),
    ("missing occurred_at", without("occurred_at"), "occurred_at: missing"),
    ("occurred_at not iso", line(make_event(occurred_at="01/03/2026")), "occurred_at: not an ISO-8601"),
    ("occurred_at a number", line(make_event(occurred_at=1772357400)), "occurred_at: expected an ISO-8601"),
    ("occurred_at impossible date", line(make_event(occurred_at="2026-02-30T10:00:00Z")), "not a valid calendar"),
    ("occurred_at year 9999", line(make_event(occurred_at="9999-01-01T00:00:00Z")), "plausible range"),
    ("occurred_at before 1970", line(make_event(occurred_at="1969-12-31T23:59:59Z")), "plausible range"),
    ("occurred_at in the future", line(make_event(occurred_at="2026-03-09T00:00:00Z")), "after the ledger clock"),
    ("recorded_at sent", line(make_event(recorded_at="2026-03-01T00:00:00Z")), "stamped by the ledger"),
    ("unknown field", line(make_event(purpse="x")), "purpse: unknown field"),
    ("missing body field", without("method"), "method: missing"),
    ("body wrong type", line(make_event(app=["cowrite"])), "app: expected a string, got an array"),
    ("body nested garbage", line(make_event(app={"$gt": {"$ne": None}})), "app: expected a string, got an object"),
    ("vocabulary violation", line(make_event("NewsletterSubscribed", channel="pigeon")), "channel: must be one of"),
    ("integer as string", line(make_event("InvoiceUsageRecorded", units="3")), "units: expected an integer"),
    ("boolean as integer", line(make_event("InvoiceUsageRecorded", units=True)), "units: expected an integer"),
    ("int64 overflow", line(make_event("InvoiceUsageRecorded", amount_minor=2**70)), "64-bit"),
    ("negative units", line(make_event("InvoiceUsageRecorded", units=-2)), "units: must not be negative"),
    ("bad currency", line(make_event("InvoiceUsageRecorded", currency="kronor")), "currency"),
    ("bad notice hash", line(make_event("ConsentGiven", notice_sha256="xyz")), "notice_sha256"),
    ("purpose with spaces", line(make_event("ConsentGiven", purpose="news letter")), "purpose"),
    ("email in a body field", line(make_event("DataShared", recipient="coach@example.se")), "personal data belongs in pii"),
    ("array field not array", line(make_event("PersonalDataUpdated", fields="address")), "fields: expected an array"),
    ("pii not an object", line(make_event(pii="Anna")), "pii: expected an object"),
    ("pii nested", line(make_event(pii={"name": {"first": "Anna"}})), "pii.name: expected a string"),
    ("pii oversize", line(make_event(pii={"bio": "x" * 70_000})), "over the 64 KiB limit"),
    ("lone surrogate", line(make_event(app="@@")).replace(b'"@@"', b'"\\ud800"'), "app: not valid Unicode"),
    ("empty body string", line(make_event(app="")), "app: must not be empty"),
    ("actor malformed", line(make_event(actor="root; rm -rf /")), "actor: expected"),
    ("source with spaces", line(make_event(source="web form")), "source: may only contain"),
    ("body string too long", line(make_event(app="x" * 5000)), "longer than"),
]


@pytest.mark.parametrize(("raw", "reason"), [c[1:] for c in BAD_LINES], ids=[c[0] for c in BAD_LINES])
def test_bad_input_is_rejected_with_a_clear_reason(intake: Intake, raw: bytes, reason: str) -> None:
    with pytest.raises(InvalidEvent) as caught:
        intake.parse_line(raw, NOW)
    assert reason in str(caught.value)


# Every part of a producer line a rejection can be about (None: the line itself).
ENVELOPE_FIELDS = {None, "type", "event_id", "controller", "subject", "subject.email", "subject.id",
                   "subject.account", "occurred_at", "recorded_at", "source", "actor", "pii",
                   "pii.name"}


def test_the_table_reaches_every_envelope_field_once_per_distinct_line(intake: Intake) -> None:
    """The table's worth is its reach, not its length: some case is rejected on each envelope
    field, and no line is in it twice."""
    fields = set()
    for _, raw, _ in BAD_LINES:
        with pytest.raises(InvalidEvent) as caught:
            intake.parse_line(raw, NOW)
        fields.add(caught.value.field)
    assert ENVELOPE_FIELDS <= fields, ENVELOPE_FIELDS - fields
    assert len({raw for _, raw, _ in BAD_LINES}) == len(BAD_LINES)


def test_reasons_never_quote_personal_data(intake: Intake) -> None:
    for raw in (line(make_event(subject={"email": "anna.secret@@example.se"})),
                line(make_event(occurred_at="anna.secret@example.se")),
                line(make_event("DataShared", recipient="anna.secret@example.se"))):
        with pytest.raises(InvalidEvent) as caught:
            intake.parse_line(raw, NOW)
        assert "anna.secret" not in str(caught.value)


@pytest.mark.parametrize("event_type", sorted(BODIES))
def test_a_valid_event_of_every_producer_type_is_accepted(intake: Intake, event_type: str) -> None:
    draft = intake.parse_line(line(make_event(event_type)), NOW)
    assert draft.type == event_type


HOSTILE_BUT_VALID = [
    "Robert'); DROP TABLE stored_events;--",
    "$(rm -rf /) `reboot` && echo pwned | sh",
    'quotes "double" \'single\' \\ backslash',
    "Åsa Öberg, Jörgen Ängström — smörgåsbord",
    "emoji 🎉🙂👩‍💻 and CJK 漢字",
    "tab\tand newline\ninside",
    "<script>alert(1)</script>",
    "%s %n {0} ${jndi:ldap://x}",
]


@pytest.mark.parametrize("text", HOSTILE_BUT_VALID)
def test_dangerous_looking_strings_are_valid_and_exact(intake: Intake, text: str) -> None:
    draft = intake.parse_line(line(make_event(app=text, pii={"name": text})), NOW)
    assert draft.body["app"] == text
    assert draft.pii == {"name": text}


def test_timestamps_are_normalised_to_utc_micros(intake: Intake) -> None:
    a = intake.parse_line(line(make_event(occurred_at="2026-03-01T10:30:00+01:00")), NOW)
    b = intake.parse_line(line(make_event(occurred_at="2026-03-01T09:30:00.000000Z")), NOW)
    c = intake.parse_line(line(make_event(occurred_at="2026-03-01")), NOW)
    assert a.occurred_at == b.occurred_at == parse_timestamp("2026-03-01T09:30:00Z")
    assert c.occurred_at == parse_timestamp("2026-03-01T00:00:00Z")


def test_account_ref_is_moved_out_of_the_body(intake: Intake) -> None:
    draft = intake.parse_line(line(make_event("SubjectRegistered")), NOW)
    assert draft.account_ref == "cw-000042"
    assert draft.body["account_ref"] is None
