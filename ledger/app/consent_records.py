"""``ledger subject consent-record`` and ``ledger audit check-receipt`` (SPEC §7b): a subject's
consent history as an ISO/IEC TS 27560 record (``ledger.domain.consent_record``), optionally
signed with the audit key as a compact JWS, and checked offline with the verifier key."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ledger.app.checkpoints import load_signer, load_verifier
from ledger.app.opened import OpenLedger
from ledger.app.permits import resolve_subject
from ledger.domain.consent_record import (
    MAX_RECEIPT_BYTES,
    ConsentEvent,
    ReceiptMalformed,
    consent_record,
    sign_receipt,
    verify_receipt,
)
from ledger.domain.timeutil import to_micros
from projections.store.opener import open_read_model

_EVENTS = """
SELECT type, event_id, position, occurred_at, recorded_at,
       json_extract_string(body, '$.purpose'), json_extract_string(body, '$.notice_id'),
       json_extract_string(body, '$.notice_version'), json_extract_string(body, '$.notice_sha256'),
       json_extract_string(body, '$.language'), json_extract_string(body, '$.ui_action'),
       json_extract_string(body, '$.channel'), json_extract_string(body, '$.via')
FROM events
WHERE controller = $1 AND subject = $2
  AND type IN ('ConsentGiven', 'ConsentWithdrawn', 'ObjectionRaised')
  AND ($3 IS NULL OR json_extract_string(body, '$.purpose') = $3)
ORDER BY position
"""


def subject_consent_record(opened: OpenLedger, *, controller: str, subject: str | None = None,
                           email: str | None = None, purpose: str | None = None,
                           sign: Path | None = None) -> dict[str, Any] | str:
    """The record (a dict), or with ``sign`` the compact JWS of it (a str)."""
    signer = load_signer(sign) if sign is not None else None  # refuse before reading
    with open_read_model(opened) as con:
        ref = resolve_subject(opened, con, subject=subject, email=email, controller=controller)
        rows = con.execute(_EVENTS, [ref.controller, ref.subject, purpose]).fetchall()
    events = [ConsentEvent(t, eid, pos, to_micros(occ), to_micros(rec), *rest)
              for t, eid, pos, occ, rec, *rest in rows]
    record = consent_record(ref.controller, ref.subject, events,
                            generated_at=opened.clock.now(), log_size=opened.log.head().position)
    return sign_receipt(record, signer) if signer is not None else record


def check_receipt(path: Path, key: str) -> dict[str, Any]:
    """The record in a signed receipt file, verified offline with the verifier key."""
    verifier = load_verifier(key)
    try:
        with path.open("rb") as f:
            token = f.read(MAX_RECEIPT_BYTES + 1)
    except OSError as e:
        raise ReceiptMalformed(f"receipt: cannot read {path}: {e.strerror}") from None
    return verify_receipt(token, verifier)
