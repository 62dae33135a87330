"""The retention rules to the day, on the timelines of the seed policies."""

from __future__ import annotations

import json
from dataclasses import dataclass, replace

import pytest

from ledger.domain.retention.policy import Duration, load_policy
from ledger.domain.retention.rules import (
    ACTIONS,
    Decision,
    SubjectFacts,
    count_actions,
    decide,
    decision_dict,
    rule_chain,
)
from ledger.domain.timeutil import format_micros, parse_timestamp

COWRITE = load_policy("cowrite")
COEGI = load_policy("coegi")


def t(text: str) -> int:
    return parse_timestamp(text)


def day(micros: int | None) -> str | None:
    return None if micros is None else format_micros(micros)[:10]


def facts(**kw) -> SubjectFacts:  # type: ignore[no-untyped-def]
    base = dict(controller="cowrite", subject="s", first_seen_at=t("2025-01-01"), registered=True,
                last_activity_at=t("2026-01-10"), last_activity_event="login")
    base.update(kw)
    return SubjectFacts(**base)  # type: ignore[arg-type]


def test_cowrite_inactivity_timeline_to_the_day() -> None:
    f = facts()
    before = decide(f, COWRITE, t("2026-06-25"))
    assert (before.action, day(before.due_at), before.rule) == ("keep", "2026-06-26", "active")
    due = decide(f, COWRITE, t("2026-06-26"))
    assert (due.action, day(due.due_at)) == ("notify", "2026-06-26")
    # The sweep first runs late, on 2026-07-20: the notice still comes first ...
    late = decide(f, COWRITE, t("2026-07-20"))
    assert (late.action, day(late.due_at)) == ("notify", "2026-06-26")
    # ... and erasure waits the full 14 days after the notice actually sent.
    noticed = replace(f, notice_at=t("2026-07-20"), notice_event="notice")
    waiting = decide(noticed, COWRITE, t("2026-08-02"))
    assert (waiting.action, day(waiting.due_at), waiting.rule) == ("keep", "2026-08-03", "notice_period")
    erase = decide(noticed, COWRITE, t("2026-08-03"))
    assert (erase.action, day(erase.due_at), erase.rule) == ("erase", "2026-08-03", "inactivity")
    assert erase.evidence == ("login", "notice") and erase.shred == ("profile", "bookkeeping")


def test_a_notice_sent_on_time_erases_on_the_erase_date() -> None:
    noticed = facts(notice_at=t("2026-06-26"), notice_event="n")
    assert day(decide(noticed, COWRITE, t("2026-07-10")).due_at) == "2026-07-10"
    assert decide(noticed, COWRITE, t("2026-07-10")).action == "erase"
    assert decide(noticed, COWRITE, t("2026-07-09")).action == "keep"


def test_activity_after_the_notice_voids_it() -> None:
    came_back = facts(notice_at=t("2026-06-26"), last_activity_at=t("2026-06-30"))
    d = decide(came_back, COWRITE, t("2026-07-20"))
    assert (d.action, day(d.due_at)) == ("keep", "2026-12-16")  # 2026-12-30 minus 14 days


def test_erasure_request_pseudonymises_then_erases_after_60_days() -> None:
    requested = facts(erasure_requested_at=t("2026-03-01"), erasure_request_event="rq")
    d = decide(requested, COWRITE, t("2026-03-01"))
    assert (d.action, day(d.due_at), d.rule, d.evidence) == ("pseudonymise", "2026-03-01", "erasure_request", ("rq",))
    pseudonymised = facts(status="pseudonymised", erase_due_at=t("2026-04-30"), status_event="ps",
                          last_activity_at=t("2025-01-01"))
    # The pseudonymisation period governs even though inactivity alone would be overdue.
    assert decide(pseudonymised, COWRITE, t("2026-04-29")).action == "pseudonymised"
    assert day(decide(pseudonymised, COWRITE, t("2026-04-29")).due_at) == "2026-04-30"
    assert decide(pseudonymised, COWRITE, t("2026-04-30")).action == "erase"
    assert Duration.parse("P60D").add(t("2026-03-01")) == t("2026-04-30")


def test_coegi_erases_three_years_after_last_activity_without_notice() -> None:
    f = facts(controller="coegi", last_activity_at=t("2023-05-17"))
    assert (decide(f, COEGI, t("2026-05-16")).action, day(decide(f, COEGI, t("2026-05-16")).due_at)) == ("keep", "2026-05-17")
    d = decide(f, COEGI, t("2026-05-17"))
    assert (d.action, day(d.due_at), d.rule) == ("erase", "2026-05-17", "inactivity")


def test_coegi_bookkeeping_hold_until_end_of_2030_then_shred() -> None:
    f = facts(controller="coegi", last_activity_at=t("2023-05-17"), last_held_at=t("2023-04-30"),
              last_held_event="inv")
    erase = decide(f, COEGI, t("2026-06-01"))
    assert erase.action == "erase" and erase.shred == ("profile",)
    erased = replace(f, status="erased", status_event="er", shredded=frozenset({"profile"}))
    hold = decide(erased, COEGI, t("2030-12-31T23:59:59Z"))
    assert (hold.action, format_micros(hold.due_at or 0), hold.rule) == ("hold", "2031-01-01T00:00:00.000000Z", "legal_hold")
    ended = decide(erased, COEGI, t("2031-01-01"))
    assert (ended.action, ended.rule, ended.shred) == ("erase", "legal_hold_ended", ("bookkeeping",))
    done = decide(replace(erased, shredded=frozenset({"profile", "bookkeeping"})), COEGI, t("2031-02-01"))
    assert (done.action, done.due_at, done.rule) == ("erased", None, "erased")


def test_coegi_erasure_request_erases_at_once() -> None:
    d = decide(facts(controller="coegi", erasure_requested_at=t("2026-03-01")), COEGI, t("2026-03-02"))
    assert (d.action, day(d.due_at), d.rule) == ("erase", "2026-03-01", "erasure_request")


def test_cowrite_keeps_nothing_without_a_relationship() -> None:
    d = decide(facts(registered=False, first_seen_at=t("2026-02-01")), COWRITE, t("2026-02-01"))
    assert (d.action, d.rule, day(d.due_at)) == ("erase", "no_relationship", "2026-02-01")
    kept = decide(facts(registered=False, controller="coegi"), COEGI, t("2026-02-01"))
    assert kept.action == "keep"


def test_decisions_record_the_policy_and_its_hash() -> None:
    d = decide(facts(), COWRITE, t("2026-02-01"))
    assert (d.policy, d.policy_hash) == ("cowrite", COWRITE.content_hash)
    assert len(d.policy_hash) == 64


@pytest.mark.parametrize(("start", "duration", "expected"), [
    ("2026-01-31", "P1M", "2026-02-28"), ("2024-01-31", "P1M", "2024-02-29"),
    ("2024-02-29", "P1Y", "2025-02-28"), ("2026-01-10", "P6M", "2026-07-10"),
    ("2026-07-10", "-P14D", "2026-06-26"), ("2023-12-31", "P3Y", "2026-12-31"),
])
def test_calendar_durations(start: str, duration: str, expected: str) -> None:
    if duration.startswith("-"):
        assert day(Duration.parse(duration[1:]).subtract(t(start))) == expected
    else:
        assert day(Duration.parse(duration).add(t(start))) == expected


def test_a_decision_serialises_itself_json_ready() -> None:
    d = decide(facts(), COWRITE, t("2026-07-20"))  # notify, due 2026-06-26
    assert d.as_dict() == {
        "controller": "cowrite", "subject": "s", "action": "notify",
        "due_at": "2026-06-26T00:00:00.000000Z", "rule": "inactivity_notice", "policy": "cowrite",
        "policy_hash": COWRITE.content_hash, "evidence": ["login"], "shred": []}
    assert json.loads(json.dumps(d.as_dict())) == d.as_dict()
    erased = decide(facts(status="erased", status_event="e-1"), COWRITE, t("2026-07-20"))
    assert (erased.as_dict()["due_at"], erased.as_dict()["evidence"]) == (None, ["e-1"])


def test_decision_dict_serialises_any_dataclass_of_decision_fields_alike() -> None:
    @dataclass(frozen=True)
    class Schedule:  # what a stand-in for subject_decision may return
        action: str
        due_at: int | None
        evidence: tuple[str, ...]

    assert decision_dict(Schedule("keep", 0, ("e1",))) == {
        "action": "keep", "due_at": "1970-01-01T00:00:00.000000Z", "evidence": ["e1"]}
    d = Decision("c", "s", "keep", None, "active", "p", "h", ("e",), ("contact",))
    assert decision_dict(d) == d.as_dict()


def test_count_actions_counts_every_action_in_order() -> None:
    d = decide(facts(), COWRITE, t("2026-07-20"))
    assert list(count_actions()) == list(ACTIONS)
    assert count_actions([d, d]) == {"keep": 0, "notify": 2, "pseudonymise": 0, "erase": 0, "hold": 0,
                                      "pseudonymised": 0, "erased": 0}


def test_erased_and_pseudonymised_are_terminal_actions_never_keep() -> None:
    """Issue 12 §2: a subject erased (or pseudonymised, waiting for erasure) is not `keep`, so
    `decisions --action keep` lists live subjects only; explain says what the state is."""
    erased = facts(status="erased", status_event="er", shredded=frozenset({"profile", "bookkeeping"}))
    done = decide(erased, COWRITE, t("2026-06-01"))
    assert (done.action, done.due_at, done.rule) == ("erased", None, "erased")
    assert rule_chain(erased, COWRITE, t("2026-06-01"))[-1].endswith(": erased (rule erased)")
    waiting = facts(status="pseudonymised", status_event="ps", erase_due_at=t("2026-07-01"))
    d = decide(waiting, COWRITE, t("2026-06-01"))
    assert (d.action, day(d.due_at), d.rule) == ("pseudonymised", "2026-07-01", "pseudonymised")
    assert rule_chain(waiting, COWRITE, t("2026-06-01"))[-1].endswith(
        ": pseudonymised (rule pseudonymised), due 2026-07-01")
    assert {"erased", "pseudonymised"} <= set(ACTIONS)
