"""``audit erasures`` and the vault's noted effects (issue 9 row 2), in process: a new
relationship after an erasure is no finding; a recorded erasure whose key lives on is; noted
effects of events that never reached the log are dropped at the next open, untouched."""

from __future__ import annotations

import uuid
from pathlib import Path

from ledger.app.erasure_audit import audit_erasures
from ledger.app.service import Ledger
from ledger.app.sweep import sweep
from ledger.domain.clock import FixedClock
from ledger.domain.events import Event
from ledger.domain.timeutil import parse_timestamp
from ledger.ports import PendingEffect
from tests.conftest import make_event

EMAIL = "greta@example.se"


def _publish(ledger: Ledger, when: str, event_type: str, **kw: object) -> None:
    ledger.clock = FixedClock(parse_timestamp(when))
    ledger.record(make_event(event_type, occurred_at=when, subject={"email": EMAIL}, **kw))


def _erased_then_back(ledger: Ledger) -> str:
    _publish(ledger, "2025-06-01", "SubjectRegistered")
    ledger.clock = FixedClock(parse_timestamp("2026-07-20"))
    sweep(ledger, controller="cowrite")  # the notice
    ledger.clock = FixedClock(parse_timestamp("2026-08-03"))
    assert sweep(ledger, controller="cowrite").appended.get("SubjectErased") == 1
    return ledger.subject_id("cowrite", email=EMAIL)


def test_row02_a_new_relationship_after_an_erasure_is_no_finding(ledger: Ledger) -> None:
    subject = _erased_then_back(ledger)
    _publish(ledger, "2026-09-01", "SubjectRegistered")  # a new key generation
    _publish(ledger, "2026-09-02", "InvoiceUsageRecorded")  # a first bookkeeping key
    live = {k.category: k.generation for k in ledger.vault.live_keys([("cowrite", subject)])}
    assert live == {"profile": 2, "bookkeeping": 1}
    result = audit_erasures(ledger)
    assert result.ok, result.findings
    assert (result.erasures, result.keys_destroyed) == (1, 1)


def test_row02_a_recorded_erasure_whose_key_lives_is_a_finding(ledger: Ledger) -> None:
    _publish(ledger, "2026-03-01", "SubjectRegistered")
    subject = ledger.subject_id("cowrite", email=EMAIL)
    now = parse_timestamp("2026-03-02")
    ledger.record(Event("SubjectErased", str(uuid.uuid4()), "cowrite", subject, now, now,
                        "ledger", "system:retention-sweep",
                        {"reason": "inactivity", "policy": "cowrite", "policy_hash": "x",
                         "keys_shredded": ["profile", "bookkeeping"], "evidence": []}))
    (finding,) = audit_erasures(ledger).findings
    assert (finding.subject, finding.category) == (subject, "profile")
    assert "still live" in finding.problem


def test_row02_effects_of_events_never_appended_are_dropped_at_open(data_dir: Path) -> None:
    with Ledger.open(data_dir) as ledger:
        _publish(ledger, "2026-03-01", "SubjectRegistered")
        subject = ledger.subject_id("cowrite", email=EMAIL)
        recorded = str(uuid.uuid4())
        ledger.vault.record_effects([
            PendingEffect(str(uuid.uuid4()), "cowrite", subject, "erase", ("profile",)),
            PendingEffect(recorded, "cowrite", subject, "pseudonymise")])
        now = parse_timestamp("2026-03-02")
        ledger.append_events([Event("SubjectPseudonymised", recorded, "cowrite", subject, now,
                                     now, "ledger", "system:retention-sweep",
                                     {"reason": "erasure_request", "erase_due_at": now,
                                      "policy": "cowrite", "policy_hash": "x",
                                      "evidence": []})])
        assert len(ledger.vault.pending_effects()) == 2
    with Ledger.open(data_dir) as ledger:  # the open settles both
        assert ledger.vault.pending_effects() == []
        (key,) = ledger.vault.live_keys([("cowrite", subject)])
        assert (key.category, key.sealed) == ("profile", True)
        assert ledger.vault.tombstones() == []
        assert audit_erasures(ledger).ok
