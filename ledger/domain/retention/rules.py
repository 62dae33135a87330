"""The retention decision rules (SPEC §5) as pure functions: (subject facts, policy, clock T)
-> decision. No I/O. The population-wide decisions in DuckDB SQL (``decisions.py``) implement
the same rules and are tested against these."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, fields
from typing import Any

from ledger.domain.retention.policy import Policy
from ledger.domain.timeutil import format_day, format_micros
from ledger.domain.vocabulary import KEY_CATEGORIES

# Every decision's action, in order. ``erased`` (nothing left: the erasure is complete) and
# ``pseudonymised`` (waiting for its erasure, due_at) are states, not work; ``keep`` is a live
# subject whose data may still be kept.
ACTIONS = ("keep", "notify", "pseudonymise", "erase", "hold", "pseudonymised", "erased")


@dataclass(frozen=True, slots=True)
class SubjectFacts:
    """What the projections know about one subject, as of the decision's clock."""

    controller: str
    subject: str
    first_seen_at: int
    registered: bool = False  # a relationship was established (SubjectRegistered)
    last_activity_at: int | None = None  # event time of the latest activity under the policy
    last_activity_event: str | None = None
    notice_at: int | None = None  # the latest DeletionNoticeSent
    notice_event: str | None = None
    status: str = "active"  # active | restricted | pseudonymised | erased
    status_event: str | None = None
    erase_due_at: int | None = None  # set by SubjectPseudonymised
    erasure_requested_at: int | None = None  # an erasure request not yet acted on
    erasure_request_event: str | None = None
    last_held_at: int | None = None  # latest event whose data is under a legal hold (invoices)
    last_held_event: str | None = None
    shredded: frozenset[str] = frozenset()  # key categories already destroyed
    # Erased, yet personal data recorded after the (latest) erasure outside a new relationship
    # (a login on an erased account): it sits under a new key no erasure has destroyed.
    residue: frozenset[str] = frozenset()  # key categories of that data
    residue_at: int | None = None  # event time of the first such event
    residue_event: str | None = None
    # What the outbox recorded about the latest notice (NoticeDelivered / NoticeFailed).
    notice_delivered_at: int | None = None
    notice_failures: int = 0
    notice_last_failed_at: int | None = None


def notice_counts_from(facts: SubjectFacts, policy: Policy) -> int | None:
    """When the notice period of the latest notice starts: its delivery; after a final failure
    (the first attempt and ``notice_retries`` retries all failed) the last attempt; while
    retries are left, the time the last retry would fail if the mailer kept to the retry
    interval (so silence after a failure never blocks erasure for ever); and for a notice no
    mailer reported on at all, when it was sent (a ledger without a mailer integration: the
    sweep's record is the notice, as before the outbox)."""
    if facts.notice_at is None:
        return None
    if facts.notice_delivered_at is not None:
        return max(facts.notice_delivered_at, facts.notice_at)
    if facts.notice_failures == 0 or facts.notice_last_failed_at is None:
        return facts.notice_at
    left = max(0, policy.notice_retries + 1 - facts.notice_failures)
    return policy.notice_retry_every.times(left).add(facts.notice_last_failed_at)


@dataclass(frozen=True, slots=True)
class Decision:
    controller: str
    subject: str
    action: str  # one of ACTIONS
    # keep: the next step; notify/pseudonymise/erase: when it fell due; hold: its end;
    # pseudonymised: when its erasure falls due; erased: None
    due_at: int | None
    rule: str
    policy: str
    policy_hash: str
    evidence: tuple[str, ...] = ()
    shred: tuple[str, ...] = ()  # key categories an erase destroys now

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready, the one form of a decision the CLI, the API and the reports show:
        ``due_at`` as ISO-8601 text (or None), ``evidence`` and ``shred`` as lists."""
        return decision_dict(self)


def decision_dict(decision: Any) -> dict[str, Any]:
    """``Decision.as_dict`` for a decision, or for any dataclass of decision fields (what a
    replacement of ``subject_decision`` returns to the register extract): the fields in
    order, times (``*_at``, microseconds) as ISO-8601 text, tuples as lists."""
    out: dict[str, Any] = {}
    for f in fields(decision):
        value = getattr(decision, f.name)
        if f.name.endswith("_at") and value is not None:
            value = format_micros(value)
        elif isinstance(value, tuple):
            value = list(value)
        out[f.name] = value
    return out


def count_actions(decisions: Iterable[Decision] = ()) -> dict[str, int]:
    """How many decisions of each action, every action present (in ``ACTIONS`` order)."""
    counts = dict.fromkeys(ACTIONS, 0)
    for d in decisions:
        counts[d.action] += 1
    return counts


def hold_ends_at(facts: SubjectFacts, policy: Policy) -> dict[str, int]:
    """Key category -> when its legal hold ends, for categories holding data."""
    if facts.last_held_at is None:
        return {}
    ends: dict[str, int] = {}
    for hold in policy.legal_holds:
        end = hold.ends_at(facts.last_held_at)
        for category in hold.categories:
            ends[category] = max(end, ends.get(category, end))
    return ends


def decide(facts: SubjectFacts, policy: Policy, now: int) -> Decision:
    def decision(action: str, due_at: int | None, rule: str, *evidence: str | None,
                 shred: tuple[str, ...] = ()) -> Decision:
        return Decision(facts.controller, facts.subject, action, due_at, rule, policy.name,
                        policy.content_hash, tuple(e for e in evidence if e), shred)

    holds = hold_ends_at(facts, policy)
    remaining = [c for c in KEY_CATEGORIES if c not in facts.shredded]

    def erase(due_at: int, rule: str, *evidence: str | None) -> Decision:
        # Categories under a running legal hold survive the erasure; their keys go when it ends.
        shred = tuple(c for c in remaining if holds.get(c, now) <= now)
        return decision("erase", due_at, rule, *evidence, shred=shred)

    if facts.status == "erased":
        # Residue under a running legal hold is encrypted under the held key itself, which goes
        # when the hold ends; the rest is erased at once.
        residue = tuple(c for c in KEY_CATEGORIES if c in facts.residue and holds.get(c, now) <= now)
        if residue and facts.residue_at is not None:
            return decision("erase", facts.residue_at, "erased_residue", facts.status_event,
                            facts.residue_event, shred=residue)
        running = {c: end for c, end in holds.items() if c in remaining}
        if not running:
            return decision("erased", None, "erased", facts.status_event)
        end = max(running.values())
        if end <= now:
            return erase(end, "legal_hold_ended", facts.status_event, facts.last_held_event)
        return decision("hold", end, "legal_hold", facts.status_event, facts.last_held_event)

    if facts.status == "pseudonymised" and facts.erase_due_at is not None:
        # The pseudonymisation period governs: no notices, and inactivity never erases earlier.
        if facts.erase_due_at <= now:
            return erase(facts.erase_due_at, "erasure_request", facts.status_event)
        return decision("pseudonymised", facts.erase_due_at, "pseudonymised", facts.status_event)

    if facts.erasure_requested_at is not None:
        if policy.erasure_action == "pseudonymise":
            return decision("pseudonymise", facts.erasure_requested_at, "erasure_request",
                            facts.erasure_request_event)
        return erase(facts.erasure_requested_at, "erasure_request", facts.erasure_request_event)

    if not policy.keep_without_relationship and not facts.registered:
        return erase(facts.first_seen_at, "no_relationship")

    start = facts.last_activity_at if facts.last_activity_at is not None else facts.first_seen_at
    erase_due = policy.inactive_after.add(start)
    if policy.notice_before is None:
        if erase_due <= now:
            return erase(erase_due, "inactivity", facts.last_activity_event)
        return decision("keep", erase_due, "active", facts.last_activity_event)

    # Activity after a notice voids it; erasure never comes sooner than the full notice period.
    notice_valid = facts.notice_at is not None and facts.notice_at > start
    if notice_valid:
        counts_from = notice_counts_from(facts, policy)
        assert counts_from is not None
        effective = max(erase_due, policy.notice_before.add(counts_from))
        if effective <= now:
            return erase(effective, "inactivity", facts.last_activity_event, facts.notice_event)
        return decision("keep", effective, "notice_period", facts.last_activity_event,
                        facts.notice_event)
    notice_due = policy.notice_before.subtract(erase_due)
    if notice_due <= now:
        return decision("notify", notice_due, "inactivity_notice", facts.last_activity_event)
    return decision("keep", notice_due, "active", facts.last_activity_event)


def _notice_report(facts: SubjectFacts, policy: Policy) -> str:
    """What the outbox knows of the notice's delivery, for ``rule_chain``."""
    if facts.notice_delivered_at is not None:
        return f", delivered {format_day(facts.notice_delivered_at)}"
    if facts.notice_failures == 0:
        return ", no delivery reported (counts from sending)"
    attempts = policy.notice_retries + 1
    if facts.notice_failures >= attempts:
        return (f", finally failed after {facts.notice_failures} attempts (last "
                f"{format_day(facts.notice_last_failed_at)})")
    return (f", {facts.notice_failures} of {attempts} attempts failed (last "
            f"{format_day(facts.notice_last_failed_at)}; retried every {policy.notice_retry_every})")


def rule_chain(facts: SubjectFacts, policy: Policy, now: int) -> list[str]:
    """The reasoning behind ``decide`` in plain sentences, for ``ledger explain``."""
    def ref(event: str | None) -> str:
        return f" (event {event})" if event else ""

    d = decide(facts, policy, now)
    lines = [f"policy {policy.name} (sha256 {policy.content_hash[:12]}…): inactive after "
             f"{policy.inactive_after}"
             + (f", notice {policy.notice_before} before erasure" if policy.notice_before else ", no notice")
             + f", erasure request → {policy.erasure_action}"
             + (f" for {policy.pseudonymise_for} then erase" if policy.pseudonymise_for else "")]
    lines.append(f"status: {facts.status}{ref(facts.status_event)}")
    if facts.status == "erased":
        holds = hold_ends_at(facts, policy)
        if holds:
            lines.append(f"legal hold on {', '.join(sorted(holds))} data (last held event "
                         f"{format_day(facts.last_held_at)}{ref(facts.last_held_event)}) "
                         f"ends {format_day(max(holds.values()))}")
        lines.append(f"keys already destroyed: {', '.join(sorted(facts.shredded)) or 'none'}")
        if facts.residue:
            lines.append(f"personal data recorded after the erasure outside a new relationship "
                         f"({', '.join(sorted(facts.residue))}, from {format_day(facts.residue_at)}"
                         f"{ref(facts.residue_event)}): erased again")
    elif facts.status == "pseudonymised":
        lines.append(f"pseudonymised: erasure due {format_day(facts.erase_due_at)} (the pseudonymisation "
                     "period governs; no inactivity notices)")
    elif facts.erasure_requested_at is not None:
        lines.append(f"erasure requested {format_day(facts.erasure_requested_at)}"
                     f"{ref(facts.erasure_request_event)}")
    elif not policy.keep_without_relationship and not facts.registered:
        lines.append("no relationship was established (no SubjectRegistered): no personal data may be kept")
    else:
        start = facts.last_activity_at if facts.last_activity_at is not None else facts.first_seen_at
        erase_due = policy.inactive_after.add(start)
        lines.append(f"last activity {format_day(facts.last_activity_at)}{ref(facts.last_activity_event)}"
                     if facts.last_activity_at is not None
                     else f"first seen {format_day(facts.first_seen_at)}")
        lines.append(f"erasure due = {format_day(start)} + {policy.inactive_after} = {format_day(erase_due)}")
        if policy.notice_before is not None:
            lines.append(f"notice due = {format_day(erase_due)} - {policy.notice_before} = "
                         f"{format_day(policy.notice_before.subtract(erase_due))}")
            if facts.notice_at is not None and facts.notice_at > start:
                counts_from = notice_counts_from(facts, policy)
                assert counts_from is not None
                lines.append(f"notice sent {format_day(facts.notice_at)}{ref(facts.notice_event)}"
                             f"{_notice_report(facts, policy)}: erasure no earlier than "
                             f"{format_day(policy.notice_before.add(counts_from))}")
            elif facts.notice_at is not None:
                lines.append(f"notice sent {format_day(facts.notice_at)} was voided by later activity")
    lines.append(f"decision at {format_micros(now)}: {d.action} (rule {d.rule})"
                 + (f", due {format_day(d.due_at)}" if d.due_at is not None else "")
                 + (f", destroys keys: {', '.join(d.shred)}" if d.shred else ""))
    return lines
