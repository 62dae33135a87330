"""The pure comparison behind `ledger audit decisions`: a sweep event against the decision
recomputed from the facts known before the sweep."""

from __future__ import annotations

from typing import Any

from ledger.app.audit_decisions import SweepEvent, judge, runs_of
from ledger.domain.retention.policy import load_policy
from ledger.domain.retention.rules import SubjectFacts
from ledger.domain.timeutil import parse_timestamp

COWRITE = load_policy("cowrite")
T = parse_timestamp("2026-08-03")


def facts(**kw: Any) -> SubjectFacts:
    base: dict[str, Any] = {
        "controller": "cowrite", "subject": "s" * 64, "first_seen_at": parse_timestamp("2025-06-01"),
        "registered": True, "last_activity_at": parse_timestamp("2026-01-10"),
        "last_activity_event": "login-1"}
    return SubjectFacts(**{**base, **kw})


def erased(at: int = T, keys: tuple[str, ...] = ("profile", "bookkeeping"), reason: str = "inactivity",
           evidence: tuple[str, ...] = ("login-1", "notice-1"), policy_hash: str = COWRITE.content_hash,
           position: int = 10) -> SweepEvent:
    return SweepEvent(position, "e-1", "SubjectErased", "cowrite", "s" * 64, at, at, "system:retention-sweep",
                      {"reason": reason, "policy": "cowrite", "policy_hash": policy_hash,
                       "keys_shredded": list(keys), "evidence": list(evidence)})


NOTICED = {"notice_at": parse_timestamp("2026-07-20"), "notice_event": "notice-1"}


def test_an_erasure_after_the_full_notice_is_justified() -> None:
    v = judge(erased(), facts(**NOTICED), COWRITE, 9)
    assert v.justified, v.reason
    assert v.decision is not None and v.decision.action == "erase"


def test_an_erasure_the_day_after_the_notice_is_not() -> None:
    v = judge(erased(parse_timestamp("2026-07-21")), facts(**NOTICED), COWRITE, 9)
    assert not v.justified
    assert "before its notice period ended" in v.reason and "2026-08-03" in v.reason


def test_an_inactivity_erasure_without_a_notice_is_not() -> None:
    v = judge(erased(evidence=("login-1",)), facts(), COWRITE, 9)
    assert not v.justified and "notice missing" in v.reason


def test_shredding_keys_under_a_legal_hold_is_not() -> None:
    held = facts(status="pseudonymised", status_event="p-1", erase_due_at=parse_timestamp("2026-04-30"),
                 last_held_at=parse_timestamp("2026-02-20"), last_held_event="inv-1")
    at = parse_timestamp("2026-04-30T12:00:00Z")
    wrong = judge(erased(at, reason="erasure_request", evidence=("p-1",)), held, COWRITE, 9)
    assert not wrong.justified and "despite a legal hold" in wrong.reason and "bookkeeping" in wrong.reason
    right = judge(erased(at, keys=("profile",), reason="erasure_request", evidence=("p-1",)), held, COWRITE, 9)
    assert right.justified, right.reason


def test_an_unknown_policy_hash_or_subject_is_unverifiable() -> None:
    v = judge(erased(policy_hash="0" * 64), facts(**NOTICED), None, 9)
    assert not v.justified and "unknown" in v.reason and v.decision is None
    assert "unknown to the log" in judge(erased(), None, COWRITE, 9).reason


def test_a_wrong_rule_or_evidence_is_reported() -> None:
    assert "rule" in judge(erased(reason="erasure_request"), facts(**NOTICED), COWRITE, 9).reason
    v = judge(erased(evidence=("login-1",)), facts(**NOTICED), COWRITE, 9)
    assert not v.justified and "evidence" in v.reason


def test_a_notice_must_announce_the_full_period() -> None:
    at = parse_timestamp("2026-07-20")
    body = {"due_at": parse_timestamp("2026-08-03"), "policy": "cowrite", "policy_hash": COWRITE.content_hash,
            "rule": "inactivity_notice", "evidence": ["login-1"]}
    notice = SweepEvent(5, "n-1", "DeletionNoticeSent", "cowrite", "s" * 64, at, at, "x", body)
    assert judge(notice, facts(), COWRITE, 4).justified
    short = SweepEvent(5, "n-1", "DeletionNoticeSent", "cowrite", "s" * 64, at, at, "x",
                       {**body, "due_at": parse_timestamp("2026-07-25")})
    assert "2026-08-03" in judge(short, facts(), COWRITE, 4).reason
    early = SweepEvent(5, "n-1", "DeletionNoticeSent", "cowrite", "s" * 64, parse_timestamp("2026-03-01"),
                       parse_timestamp("2026-03-01"), "x", body)
    assert not judge(early, facts(), COWRITE, 4).justified


def test_runs_are_the_events_sharing_one_clock_known_through_the_position_before() -> None:
    a, b = erased(position=7), erased(position=9)
    c = erased(at=T + 1, position=20)
    assert runs_of([a, b, c]) == [(6, [a, b]), (19, [c])]


def test_nearby_positions_are_read_in_one_scan() -> None:
    from ledger.app.audit_decisions import _clusters

    assert _clusters([]) == []
    assert _clusters([5, 6, 9, 5000, 5001]) == [(0, 2), (3, 4)]
