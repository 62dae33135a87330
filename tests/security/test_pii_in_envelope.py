"""Issue 9 row 4: personal data and control characters never reach the log in plaintext.

Envelope fields are identifiers; every free-text field rejects values that look like an e-mail
address, a phone number or a Swedish personnummer/samordningsnummer; control characters are
rejected in every string; and a reason names the field and the rule, never the value."""

from __future__ import annotations

import json
from typing import Any

import pytest

from ledger.app.service import Ledger
from ledger.domain.errors import InvalidEvent
from ledger.domain.intake import Intake
from ledger.domain.timeutil import parse_timestamp
from tests.conftest import make_event

NOW = parse_timestamp("2026-03-05T12:00:00Z")


def line(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False).encode()


def reason_of(intake: Intake, raw: bytes) -> str:
    with pytest.raises(InvalidEvent) as caught:
        intake.parse_line(raw, NOW)
    return str(caught.value)


IV = "InvoiceUsageRecorded"
DS = "DataShared"

# (id, event, the sensitive value, the reason's expected start)
PII_TABLE: list[tuple[str, dict[str, Any], str, str]] = [
    # envelope identifiers
    ("actor staff e-mail", make_event(actor="staff:fia@example.se"), "fia@example.se", "actor: "),
    ("actor system e-mail", make_event(actor="system:ops@example.se"), "ops@example.se", "actor: "),
    ("actor staff phone", make_event(actor="staff:0701234567"), "0701234567", "actor: looks like a phone"),
    ("actor staff personnummer", make_event(actor="staff:850101-1234"), "850101-1234", "actor: looks like a personnummer"),
    ("actor free text", make_event(actor="Fia Svensson"), "Fia Svensson", "actor: "),
    ("source e-mail", make_event(source="erik@example.se"), "erik@example.se", "source: "),
    ("source phone", make_event(source="+46701234567"), "+46701234567", "source: "),
    ("source personnummer", make_event(source="19850101-1234"), "19850101-1234", "source: looks like a personnummer"),
    # e-mail in free text
    ("e-mail in billed_party", make_event(IV, billed_party="Bill to kalle.anka@example.se"), "kalle.anka@example.se", "billed_party: looks like an e-mail"),
    ("e-mail with spaces around @", make_event(DS, recipient="kalle @ example.se"), "kalle @ example.se", "recipient: looks like an e-mail"),
    ("fullwidth at sign", make_event(DS, recipient="kalle\uff20example.se"), "kalle\uff20example.se", "recipient: looks like an e-mail"),
    ("e-mail in a list item", make_event("PersonalDataUpdated", fields=["name", "a.b@example.se"]), "a.b@example.se", "fields[1]: looks like an e-mail"),
    ("e-mail as list name", make_event("NewsletterSubscribed", list="anna@example.se"), "anna@example.se", "list: looks like an e-mail"),
    # phone numbers
    ("intl phone in invoice_ref", make_event(IV, invoice_ref="+46 70 123 45 67"), "+46 70 123 45 67", "invoice_ref: looks like a phone number"),
    ("intl phone with (0)", make_event(DS, recipient="ring +46 (0)70-123 45 67"), "+46 (0)70-123 45 67", "recipient: looks like a phone number"),
    ("0046 phone", make_event(DS, recipient="0046 70 123 45 67"), "0046 70 123 45 67", "recipient: looks like a phone number"),
    ("Swedish mobile 07x", make_event(DS, recipient="Coach, 070-123 45 67"), "070-123 45 67", "recipient: looks like a phone number"),
    ("Swedish mobile no separators", make_event("ServiceUsed", feature="0701234567"), "0701234567", "feature: looks like a phone number"),
    ("Stockholm landline", make_event(DS, recipient="tel 08-123 456 78"), "08-123 456 78", "recipient: looks like a phone number"),
    ("landline with parentheses", make_event(DS, recipient="(031) 12 34 56"), "(031) 12 34 56", "recipient: looks like a phone number"),
    ("phone after a number", make_event(DS, recipient="Box 12 0701234567"), "0701234567", "recipient: looks like a phone number"),
    ("E.164 without plus", make_event("ServiceUsed", feature="sms 46701234567"), "46701234567", "feature: looks like a phone number"),
    ("phone with nbsp and en dash", make_event(DS, recipient="070\u2013123\u00a045\u00a067"), "123\u00a045", "recipient: looks like a phone number"),
    ("phone hidden by zero-width", make_event(DS, recipient="07\u200b0123\u200b4567"), "0123", "recipient: looks like a phone number"),
    ("fullwidth digits phone", make_event(DS, recipient="\uff10\uff17\uff10\uff11\uff12\uff13\uff14\uff15\uff16\uff17"), "\uff10\uff17\uff10", "recipient: looks like a phone number"),
    ("phone in notice_version", make_event("ConsentGiven", notice_version="070-1234567"), "070-1234567", "notice_version: looks like a phone"),
    # personnummer / samordningsnummer
    ("personnummer in free text", make_event(DS, recipient="Gustav Gustavsson 850101-1234"), "850101-1234", "recipient: looks like a personnummer"),
    ("personnummer 12 digits", make_event(IV, invoice_ref="198501011234"), "198501011234", "invoice_ref: looks like a personnummer"),
    ("personnummer 12 digits dash", make_event(IV, invoice_ref="19850101-1234"), "19850101-1234", "invoice_ref: looks like a personnummer"),
    ("personnummer plus (100+)", make_event(DS, recipient="Gustav 150101+1234"), "150101+1234", "recipient: looks like a personnummer"),
    ("personnummer no separator", make_event("ServiceUsed", feature="id 8501011234"), "8501011234", "feature: looks like a personnummer"),
    ("samordningsnummer", make_event(DS, recipient="Gustav 850161-1238"), "850161-1238", "recipient: looks like a personnummer"),
    ("personnummer bad Luhn still rejected", make_event(DS, recipient="Gustav 850101-1235"), "850101-1235", "recipient: looks like a personnummer"),
    ("personnummer in request_id", make_event("RightsRequested", request_id="rq-850101-1234"), "850101-1234", "request_id: looks like a personnummer"),
    ("personnummer in notice_id", make_event("ConsentGiven", notice_id="19850101-1234"), "19850101-1234", "notice_id: looks like a personnummer"),
    ("personnummer in app", make_event(app="x 19850101 1234"), "19850101 1234", "app: looks like a personnummer"),
]


@pytest.mark.parametrize(("event", "secret", "reason"), [c[1:] for c in PII_TABLE], ids=[c[0] for c in PII_TABLE])
def test_row04_personal_data_outside_pii_is_rejected(intake: Intake, event: dict[str, Any], secret: str,
                                                    reason: str) -> None:
    got = reason_of(intake, line(event))
    assert got.startswith(reason), got
    assert secret not in got
    for part in secret.replace("@", " ").split():  # no fragment of the value either
        if len(part) >= 4:
            assert part not in got, got


CONTROL = [
    ("NUL", "\x00"), ("BEL", "\x07"), ("BS", "\x08"), ("CR", "\r"), ("VT", "\x0b"), ("ESC", "\x1b"),
    ("DEL", "\x7f"), ("C1 CSI", "\x9b"), ("C1 NEL", "\x85"), ("LRE", "\u202a"), ("RLO", "\u202e"),
    ("LRI", "\u2066"), ("PDI", "\u2069"),
]


@pytest.mark.parametrize(("char"), [c[1] for c in CONTROL], ids=[c[0] for c in CONTROL])
@pytest.mark.parametrize("where", ["body", "list item", "pii value", "pii key", "subject.email",
                                   "subject.account", "account_ref", "actor", "source"])
def test_row04_control_characters_are_rejected_in_every_string(intake: Intake, char: str, where: str) -> None:
    t = f"ab{char}[31mcd"
    event = {
        "body": make_event(app=t),
        "list item": make_event("PersonalDataUpdated", fields=["name", t]),
        "pii value": make_event(pii={"name": f"Anna{char}Svensson"}),
        "pii key": make_event(pii={f"na{char}me": "Anna"}),
        "subject.email": make_event(subject={"email": f"anna{char}@example.se"}),
        "subject.account": make_event(subject={"account": f"cw-{char}42"}),
        "account_ref": make_event("SubjectRegistered", account_ref=f"cw-{char}42"),
        "actor": make_event(actor=f"staff:10{char}17"),
        "source": make_event(source=f"we{char}b"),
    }[where]
    got = reason_of(intake, line(event))
    assert char not in got
    assert "control character" in got or where in ("actor", "source"), got


# Values that merely contain digits, dashes or @-like text: accepted.
FALSE_POSITIVES: list[tuple[str, dict[str, Any]]] = [
    ("invoice ref", make_event(IV, invoice_ref="INV-2026-0042")),
    ("invoice ref with month", make_event(IV, invoice_ref="CW-2026-03-001")),
    ("invoice ref long", make_event(IV, invoice_ref="CG-202603-0042")),
    ("date", make_event(app="2026-03-01")),
    ("date and time", make_event(app="2026-03-01 09:30")),
    ("compact date", make_event(app="20260301")),
    ("version", make_event("ConsentGiven", notice_version="10.0.19045.2965")),
    ("version with zero", make_event("ConsentGiven", notice_version="0.10.2")),
    ("semver", make_event(app="cowrite 3.12.0-rc.1")),
    ("amount", make_event(app="1 234 567,00 kr")),
    ("amount with plus", make_event(app="+1 234")),
    ("order number", make_event(app="order 123456789")),
    ("org number", make_event(IV, billed_party="Matchning Norr AB 556677-8899")),
    ("postcode", make_event(app="123 45 Stockholm")),
    ("ISO week", make_event(app="2026-W09")),
    ("a handle", make_event(app="@cowrite on social media")),
    ("short number with leading 0", make_event(app="ticket 0042")),
    ("uuid", make_event(app="6f1c2e4a-0b2d-4c1e-9a3f-7d5b8e2c1a90")),
    ("uuid with digit groups", make_event("RightsRequested", request_id="01234567-0123-4567-8901-23456789abcd")),
    ("uuid of zeros", make_event("RightsRequested", request_id="00000000-0000-4000-8000-000000000bbc")),
    ("uuid with a date", make_event("RightsRequested", request_id="19850101-1234-4abc-8def-0123456789ab")),
    ("hex digest", make_event(app="0701234567ab" + "cd" * 26)),
    ("hex digest inside", make_event(app="ab0701234567cd")),
    ("ten digits impossible date", make_event(app="7012345678")),
    ("twelve digits impossible date", make_event(app="202613011234")),
    ("tab and newline", make_event(app="tab\tand newline\n")),
    ("emoji with zero-width joiner", make_event(app="👩‍💻 team")),
    ("pii holds e-mail and phone", make_event(pii={"email": "anna@example.se", "phone": "+46 70 123 45 67",
                                                   "personnummer": "850101-1234"})),
    ("actor staff id", make_event(actor="staff:cw-07")),
    ("actor system component", make_event(actor="system:registervard")),
    ("source with colon", make_event(source="register:SPAR")),
]


@pytest.mark.parametrize("event", [c[1] for c in FALSE_POSITIVES], ids=[c[0] for c in FALSE_POSITIVES])
def test_row04_values_that_only_resemble_personal_data_are_accepted(intake: Intake, event: dict[str, Any]) -> None:
    """Accepted and kept exactly as sent (not masked, trimmed or moved)."""
    draft = intake.parse_line(line(event), NOW)
    assert (draft.source, draft.actor, draft.pii) == (event["source"], event["actor"], event["pii"])
    envelope = {"type", "event_id", "controller", "occurred_at", "source", "actor", "subject", "pii"}
    sent = {k: v for k, v in event.items() if k not in envelope}
    assert {k: draft.body.get(k) for k in sent} == sent


QUOTING = [
    ("unknown type", {**make_event(), "type": "ivy2@example.se"}, "ivy2"),
    ("unknown type token", {**make_event(), "type": "Teleported"}, "Teleported"),
    ("unknown controller", make_event(controller="x"), "'x'"),
    ("unknown controller e-mail-ish", make_event(controller="ivy2@example.se"), "ivy2"),
    ("unknown field e-mail", {**make_event(), "ivy2@example.se": 1}, "ivy2"),
    ("unknown field list", {**make_event(), "zz_a": 1, "zz_b": 2, "ivy 850101-1234": 3}, "850101"),
    ("pii key e-mail", make_event(pii={"ivy2@example.se": {"x": 1}}), "ivy2"),
]


@pytest.mark.parametrize(("event", "secret"), [c[1:] for c in QUOTING], ids=[c[0] for c in QUOTING])
def test_row04_reasons_never_quote_the_value(intake: Intake, event: dict[str, Any], secret: str) -> None:
    got = reason_of(intake, line(event))
    assert secret not in got, got


def test_row04_a_duplicate_key_is_not_quoted(intake: Intake) -> None:
    got = reason_of(intake, b'{"ivy2@example.se": 1, "ivy2@example.se": 2}')
    assert got.startswith("malformed JSON: ") and "ivy2" not in got
    assert "type" in reason_of(intake, b'{"type": "LoggedIn", "type": "ServiceUsed"}')


def test_row04_unknown_field_names_an_identifier_but_not_free_text(intake: Intake) -> None:
    assert reason_of(intake, line(make_event(purpse="x"))).startswith("purpse: unknown field")
    got = reason_of(intake, line({**make_event(), "Anna Svensson": 1}))
    assert "an unknown field" in got and "Anna" not in got


def test_row04_nothing_personal_reaches_the_log(ledger: Ledger) -> None:
    """Through publish: the rejected lines leave the log without their values; the clean line
    of the batch is accepted."""
    lines = [line(make_event(actor="staff:fia@example.se")),
             line(make_event(source="erik@example.se")),
             line(make_event(DS, recipient="Gustav Gustavsson 850101-1234")),
             line(make_event(DS, recipient="ring 070-123 45 67")),
             line(make_event(DS))]
    report = ledger.publish(lines)
    assert (report.accepted, report.rejected) == (1, 4)
    for r in report.rejects:
        for secret in ("fia@", "erik@", "850101", "070-123"):
            assert secret not in r.reason
    raw = b"".join(rec.payload for rec, _ in ledger.events())
    for secret in (b"fia@", b"erik@", b"850101", b"070-123"):
        assert secret not in raw
