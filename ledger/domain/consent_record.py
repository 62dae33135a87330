"""A subject's consents as an ISO/IEC TS 27560 consent record (the W3C DPV group's profile
``dpv-27560:record``), and its compact JWS (RFC 7515, EdDSA over Ed25519, RFC 8037). Pure.

Keys are the DPV profile's relations (``dct:conformsTo``, ``dct:identifier``,
``dpv:hasDataSubject``, ``dpv:hasDataController``, ``dpv:hasPurpose``, ``dpv:hasNotice``,
``dct:language``, ``dpv:hasConsentStatus``, ...). The PII principal is named by its pseudonym
only: a record holds no natural identifier and no personal data.
"""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final

from ledger.domain.errors import LedgerError, UsageError
from ledger.domain.signed_note import SignerKey, VerifierKey
from ledger.domain.timeutil import format_micros

CONFORMS_TO: Final = "dpv-27560:record"
CONTEXT: Final = {
    "dpv": "https://w3id.org/dpv#",
    "dct": "http://purl.org/dc/terms/",
    "dpv-27560": "https://w3id.org/dpv/schema/dpv-27560#",
}
RECORD_NAMESPACE: Final = uuid.UUID("3d0b6f0e-8f9a-4e1c-b2a7-27560c0a5e17")
MAX_RECEIPT_BYTES: Final = 4 << 20
STATUS: Final = {"ConsentGiven": "dpv:ConsentGiven", "ConsentWithdrawn": "dpv:ConsentWithdrawn",
                 "ObjectionRaised": "dpv:ConsentWithdrawn"}


class ReceiptInvalid(LedgerError):
    """A receipt whose signature does not verify (exit 1); the message says why."""


class ReceiptMalformed(UsageError):
    """A file that is not a compact JWS consent receipt (exit 2)."""


@dataclass(frozen=True, slots=True)
class ConsentEvent:
    """One consent, withdrawal or objection of the subject, with its evidence."""

    type: str
    event_id: str
    position: int
    occurred_at: int
    recorded_at: int
    purpose: str
    notice_id: str | None = None
    notice_version: str | None = None
    notice_sha256: str | None = None
    language: str | None = None
    ui_action: str | None = None
    channel: str | None = None
    via: str | None = None


def record_id(controller: str, subject: str, purpose: str) -> str:
    return str(uuid.uuid5(RECORD_NAMESPACE, f"{controller}|{subject}|{purpose}"))


def consent_record(controller: str, subject: str, events: Iterable[ConsentEvent], *,
                   generated_at: int, log_size: int) -> dict[str, Any]:
    """One 27560 record per purpose (its current status is that of its latest event, in
    event time then log position), with the full history as evidence."""
    by_purpose: dict[str, list[ConsentEvent]] = {}
    for e in sorted(events, key=lambda e: (e.occurred_at, e.position)):
        by_purpose.setdefault(e.purpose, []).append(e)
    records = [_purpose_record(controller, subject, purpose, history)
               for purpose, history in sorted(by_purpose.items())]
    return {
        "@context": CONTEXT,
        "dct:conformsTo": CONFORMS_TO,
        "dct:identifier": str(uuid.uuid5(RECORD_NAMESPACE, f"{controller}|{subject}|{log_size}")),
        "dct:created": format_micros(generated_at),
        "dpv:hasDataSubject": {"@type": "dpv:DataSubject", "dct:identifier": subject,
                               "dct:description": "pseudonym (HMAC-SHA256 of the identifier)"},
        "dpv:hasDataController": {"@type": "dpv:DataController", "dct:identifier": controller},
        "log_size": log_size,
        "records": records,
    }


def _purpose_record(controller: str, subject: str, purpose: str,
                    history: list[ConsentEvent]) -> dict[str, Any]:
    latest = history[-1]
    given = [e for e in history if e.type == "ConsentGiven"]
    notice = given[-1] if given else None
    record: dict[str, Any] = {
        "dct:conformsTo": CONFORMS_TO,
        "dct:identifier": record_id(controller, subject, purpose),
        "dpv:hasPurpose": purpose,
        "dpv:hasLegalBasis": "dpv:Consent",
        "dpv:hasConsentStatus": STATUS[latest.type],
        "dpv:hasConsentControl": "dpv:WithdrawConsent",
        "history": [_history_entry(e) for e in history],
    }
    if notice is not None:
        record["dct:language"] = notice.language
        record["dpv:hasNotice"] = _notice(notice)
    return record


def _notice(e: ConsentEvent) -> dict[str, Any]:
    return {"@type": "dpv:ConsentNotice", "dct:identifier": e.notice_id,
            "dct:hasVersion": e.notice_version, "dct:language": e.language,
            "sha256": e.notice_sha256}


def _history_entry(e: ConsentEvent) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "dpv:hasConsentStatus": STATUS[e.type],
        "dct:date": format_micros(e.occurred_at),
        "recorded_at": format_micros(e.recorded_at),
        "event_type": e.type,
        "evidence": {"event_id": e.event_id, "position": e.position},
    }
    if e.type == "ConsentGiven":
        entry["dpv:hasNotice"] = _notice(e)
        entry["ui_action"] = e.ui_action
        entry["channel"] = e.channel
    else:
        entry["via"] = e.via
    return entry


# --- compact JWS (RFC 7515 §7.1), EdDSA (RFC 8037) -----------------------------------------


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64url(text: str, what: str) -> bytes:
    if not text or any(c not in "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
                       for c in text):
        raise ReceiptMalformed(f"receipt: the {what} is not base64url")
    try:
        data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise ReceiptMalformed(f"receipt: the {what} is not base64url") from None
    if _b64url(data) != text:
        raise ReceiptMalformed(f"receipt: the {what} is not canonical base64url")
    return data


def sign_receipt(record: dict[str, Any], signer: SignerKey) -> str:
    """The record as a compact JWS signed by ``signer`` (``kid``: its ``name+keyid``)."""
    header = {"alg": "EdDSA", "typ": "consent-record+jws",
              "kid": signer.verifier().label, "cty": "application/json"}
    signing_input = (_b64url(json.dumps(header, separators=(",", ":")).encode()) + "."
                     + _b64url(json.dumps(record, ensure_ascii=False, sort_keys=True,
                                          separators=(",", ":")).encode("utf-8")))
    return signing_input + "." + _b64url(signer.sign(signing_input.encode("ascii")))


def verify_receipt(token: bytes, key: VerifierKey) -> dict[str, Any]:
    """The record inside a compact JWS, if ``key`` signed it; else ReceiptInvalid naming why
    (wrong key, bad signature). A file that is no JWS is ReceiptMalformed."""
    if len(token) > MAX_RECEIPT_BYTES:
        raise ReceiptMalformed(f"receipt: over {MAX_RECEIPT_BYTES >> 20} MiB")
    try:
        text = token.decode("ascii").strip()
    except UnicodeDecodeError:
        raise ReceiptMalformed("receipt: not a compact JWS (not ASCII)") from None
    parts = text.split(".")
    if len(parts) != 3:
        raise ReceiptMalformed("receipt: not a compact JWS (expected header.payload.signature)")
    try:
        header = json.loads(_unb64url(parts[0], "header"))
    except (ValueError, RecursionError):
        raise ReceiptMalformed("receipt: the header is not JSON") from None
    if not isinstance(header, dict) or header.get("alg") != "EdDSA":
        raise ReceiptInvalid("receipt: not signed with EdDSA (alg must be EdDSA)")
    kid = header.get("kid")
    if kid != key.label:
        shown = kid[:80] if isinstance(kid, str) else "none"
        raise ReceiptInvalid(f"receipt: signed by key {shown!r}, not by {key.label}")
    signature = _unb64url(parts[2], "signature")
    if not key.verify((parts[0] + "." + parts[1]).encode("ascii"), signature):
        raise ReceiptInvalid(f"receipt: the signature does not verify with {key.label} "
                             "(altered, or signed by another key of that name)")
    try:
        record = json.loads(_unb64url(parts[1], "payload").decode("utf-8"))
    except (ValueError, RecursionError):
        raise ReceiptInvalid("receipt: the signed payload is not JSON") from None
    if not isinstance(record, dict) or record.get("dct:conformsTo") != CONFORMS_TO:
        raise ReceiptInvalid(f"receipt: the payload is not a {CONFORMS_TO}")
    return record
