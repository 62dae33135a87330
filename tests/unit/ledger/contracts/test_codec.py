"""Byte-exact codec tables: the expected bytes are built by a tiny independent Avro encoder
written from the specification (zig-zag varints, length-prefixed strings), not by fastavro."""

from __future__ import annotations

import pytest

from ledger.contracts.codec import AvroCodec
from ledger.contracts.schemas import default_registry
from ledger.domain.errors import CodecError
from ledger.domain.events import Event

SUBJECT = "ab" * 32
EID = "6f1c2a3e-1111-4aaa-8bbb-000000000001"


def zigzag(n: int) -> bytes:
    n = (n << 1) ^ (n >> 63)
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def s(text: str) -> bytes:
    raw = text.encode("utf-8")
    return zigzag(len(raw)) + raw


def envelope(occurred: int, recorded: int, pii: bytes | None, source: str = "web",
             actor: str = "subject") -> bytes:
    union = zigzag(0) if pii is None else zigzag(1) + zigzag(len(pii)) + pii
    return (s(EID) + s("cowrite") + s(SUBJECT) + zigzag(occurred) + zigzag(recorded)
            + s(source) + s(actor) + union)


def header(event_type: str) -> bytes:
    return b"\xc3\x01" + default_registry().latest(event_type).fingerprint


CASES = [
    (
        Event("LoggedIn", EID, "cowrite", SUBJECT, 1, 2, "web", "subject",
              {"app": "cowrite", "method": "bankid"}),
        header("LoggedIn") + envelope(1, 2, None) + s("cowrite") + s("bankid"),
    ),
    (
        Event("ConsentGiven", EID, "cowrite", SUBJECT, 1_772_357_400_000_000,
              1_772_357_400_000_001, "web", "subject",
              {"purpose": "newsletter", "notice_id": "nl", "notice_version": "3",
               "notice_sha256": None, "language": "sv", "ui_action": "Skicka", "channel": "web"},
              b"\x01\x00\x00\x01" + bytes(28)),
        header("ConsentGiven")
        + envelope(1_772_357_400_000_000, 1_772_357_400_000_001, b"\x01\x00\x00\x01" + bytes(28))
        + s("newsletter") + s("nl") + s("3") + zigzag(0) + zigzag(1) + s("sv") + s("Skicka")
        + s("web"),
    ),
    (
        Event("InvoiceUsageRecorded", EID, "cowrite", SUBJECT, 0, 0, "billing", "subject",
              {"billed_party": "Matchning Norr AB", "units": -1, "unit": "dokument",
               "amount_minor": 44_700, "currency": "SEK", "invoice_ref": "F-1"}),
        header("InvoiceUsageRecorded") + envelope(0, 0, None, "billing")
        + s("Matchning Norr AB") + zigzag(-1) + s("dokument") + zigzag(44_700) + s("SEK") + s("F-1"),
    ),
    (
        Event("NewsletterSubscribed", EID, "cowrite", SUBJECT, 5, 5, "web", "subject",
              {"list": "Månadsbrev 🙂", "channel": "email", "double_opt_in": True}),
        header("NewsletterSubscribed") + envelope(5, 5, None) + s("Månadsbrev 🙂") + s("email") + b"\x01",
    ),
    (
        Event("SubjectErased", EID, "cowrite", SUBJECT, 7, 8, "web", "subject",
              {"reason": "inactivity", "policy": "cowrite", "policy_hash": "h",
               "keys_shredded": ["profile"], "evidence": []}),
        header("SubjectErased") + envelope(7, 8, None) + s("inactivity") + s("cowrite") + s("h")
        + zigzag(1) + s("profile") + zigzag(0) + zigzag(0),
    ),
    (
        Event("NoticeDelivered", EID, "cowrite", SUBJECT, 7, 8, "ledger", "system:outbox",
              {"message_id": EID, "kind": "deletion_notice"}),
        header("NoticeDelivered") + envelope(7, 8, None, "ledger", "system:outbox") + s(EID)
        + s("deletion_notice"),
    ),
    (
        Event("NoticeFailed", EID, "cowrite", SUBJECT, 7, 8, "ledger", "system:outbox",
              {"message_id": EID, "kind": "extract_ready", "reason": "550 <address> okänd"}),
        header("NoticeFailed") + envelope(7, 8, None, "ledger", "system:outbox") + s(EID)
        + s("extract_ready") + s("550 <address> okänd"),
    ),
]


@pytest.mark.parametrize(("event", "expected"), CASES, ids=[c[0].type for c in CASES])
def test_encoding_is_byte_exact(event: Event, expected: bytes) -> None:
    assert AvroCodec().encode(event) == expected


@pytest.mark.parametrize(("event", "expected"), CASES, ids=[c[0].type for c in CASES])
def test_decoding_the_exact_bytes_gives_the_event_back(event: Event, expected: bytes) -> None:
    assert AvroCodec().decode(expected) == event


def test_old_version_bytes_decode_with_the_new_default() -> None:
    registry = default_registry()
    v1 = registry.versions("NewsletterSubscribed")[0]
    old = b"\xc3\x01" + v1.fingerprint + envelope(5, 5, None) + s("weekly") + s("sms")
    event = AvroCodec().decode(old)
    assert event.body == {"list": "weekly", "channel": "sms", "double_opt_in": False}


BAD_BYTES = [
    (b"", "bad magic"),
    (b"\x00\x00\x00\x00\x01", "bad magic"),
    (b"\xc3\x01" + bytes(8), "unknown schema fingerprint"),
    (CASES[0][1][:-3], "corrupt LoggedIn body"),
    (CASES[0][1] + b"\x00", "trailing bytes"),
    (CASES[0][1][:10] + b"\xff" * 30, "corrupt LoggedIn body"),
]


@pytest.mark.parametrize(("data", "reason"), BAD_BYTES)
def test_bad_bytes_are_rejected_with_a_reason(data: bytes, reason: str) -> None:
    with pytest.raises(CodecError, match=reason):
        AvroCodec().decode(data)


def test_an_event_that_does_not_fit_its_schema_is_a_codec_error() -> None:
    event = Event("LoggedIn", EID, "cowrite", SUBJECT, 1, 2, "web", "subject", {"app": 5, "method": "x"})
    with pytest.raises(CodecError, match="does not fit"):
        AvroCodec().encode(event)
