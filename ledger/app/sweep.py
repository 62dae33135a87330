"""The retention sweep (SPEC §5): at the ledger clock T, apply every decision that is due —
send deletion notices, pseudonymise (sealing keys), erase (shredding keys, except categories
under a running legal hold), close the erasure requests they answer, record the yearly review —
all as ordinary events through the log, then re-project. Record first, then act: the events are
durable in the log before any key is shredded or sealed (see ``sweep``).

Idempotent at the same T: event ids are derived from the decision (subject, rule, due date),
so a repeated sweep finds nothing due, and anything appended twice is a duplicate."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ledger.adapters import killpoints
from ledger.app.decisions import controller_policies
from ledger.app.opened import OpenLedger
from ledger.app.sweep_checkpoints import (
    SweepCheckpoint,
    configured_key,
    configured_signer,
    sign_after_sweep,
)
from ledger.domain.clock import FixedClock
from ledger.domain.errors import ClockError, PolicyUnavailable, UnknownController
from ledger.domain.events import Event
from ledger.domain.retention.policy import Policy
from ledger.domain.retention.rules import Decision, count_actions
from ledger.domain.timeutil import format_micros
from ledger.ports import PendingEffect
from projections.engine.projector import Redecide, project, projections_path
from projections.store.opener import open_read_model
from projections.store.read_model import ReadConnection
from projections.store.retention_queries import (
    counts_by_controller,
    last_reviews,
    open_erasure_requests,
    population_decisions,
    save_decisions,
)

SWEEP_NAMESPACE = uuid.UUID("6c1f6a52-5f7e-4d0b-9b1c-0c6a1f4e2d11")
SOURCE = "ledger"
ACTOR = "system:retention-sweep"
CONTROLLER_WIDE = "*"


def sweep_event_id(*parts: object) -> str:
    return str(uuid.uuid5(SWEEP_NAMESPACE, "|".join(str(p) for p in parts)))


@dataclass
class SweepReport:
    as_of: int
    dry_run: bool
    decisions: dict[str, int] = field(default_factory=dict)  # what was due or kept, by action
    appended: dict[str, int] = field(default_factory=dict)  # events by type
    keys_shredded: int = 0
    sealed: int = 0
    dead_letters_purged: int = 0  # rejected input past the policy's dead_letter_retention
    checkpoint: SweepCheckpoint | None = None  # signed after the run when a key is configured

    def as_dict(self) -> dict[str, Any]:
        return {"as_of": format_micros(self.as_of), "dry_run": self.dry_run,
                "decisions": self.decisions, "appended": self.appended,
                "keys_shredded": self.keys_shredded, "subjects_sealed": self.sealed,
                "dead_letters_purged": self.dead_letters_purged,
                "checkpoint": None if self.checkpoint is None else self.checkpoint.as_dict()}


DUE = ("notify", "pseudonymise", "erase")


def compute_decisions(con: ReadConnection, policies: dict[str, Policy], now: int,
                      ) -> tuple[list[Decision], dict[str, dict[str, int]]]:
    """The decisions due at ``now`` as objects, and the counts of all decisions per
    controller and action (kept ones stay in DuckDB)."""
    due = population_decisions(con, policies, now, DUE)
    return due, counts_by_controller(con, policies)


def sweep(ledger: OpenLedger, *, dry_run: bool = False, controller: str | None = None,
          policy_path: str | None = None) -> SweepReport:
    """Record first, then act (SPEC §7a): under the log's writer lock, the clock is checked
    against the log, the keys the due decisions will shred or seal are noted in the vault, the
    events are appended durably, and only then are exactly those keys shredded or sealed. A
    crash anywhere leaves either nothing recorded and nothing done (the decision stays due) or
    the record with its effect noted, which the next open of the ledger completes.

    With a checkpoint key configured (``ledger.toml`` ``[audit] checkpoint_key``) the key is
    checked before anything is done, and after the run the log's signed checkpoint is written
    to DATA/checkpoints (``ledger.app.sweep_checkpoints``); ``report.checkpoint`` says which
    file, or why it could not be signed."""
    policies = controller_policies(ledger, controller, policy_path)
    project(ledger)  # catch up before taking the lock: under it only the tail is left
    if dry_run:
        report, *_ = _decide(ledger, policies, ledger.clock.now(), dry_run=True)
        return report
    key = configured_key(ledger.data_dir)
    if key is not None:
        configured_signer(ledger.settings)  # a bad or world-readable key: refused, no effect
    with ledger.writer_lock:
        now = sweep_clock(ledger)  # an explicit --now behind the log: ClockError, no effect
        ledger.settle_effects()
        # _decide reads through the opener, which projects the tail first
        report, decisions, requests, reviews = _decide(ledger, policies, now, dry_run=False)
        killpoints.reached("sweep:locked")
        events, effects = _events(policies, decisions, requests, now)
        events.extend(reviews)
        ledger.vault.record_effects(effects)
        killpoints.reached("sweep:intents")
        try:
            outcomes = ledger.append_events(events) if events else []
        except BaseException:
            ledger.settle_effects()  # forgets the notes of events that did not reach the log
            raise
        killpoints.reached("sweep:appended")
        # Every event is now in the log (appended, or a duplicate of an earlier record).
        done = ledger.vault.complete_effects([e.event_id for e in effects])
        killpoints.reached("sweep:done")
    report.keys_shredded, report.sealed = done.keys_shredded, done.subjects_sealed
    appended = Counter(e.type for e, o in zip(events, outcomes, strict=True) if o.position)
    report.appended = dict(sorted(appended.items()))
    project(ledger)
    # retention_decisions holds the decisions as of the last sweep (after it was applied).
    save_decisions(projections_path(ledger), policies, now)
    report.dead_letters_purged = purge_expired(ledger, policies, now)
    if key is not None:  # record first, then act: a failure to sign undoes nothing
        killpoints.reached("sweep:signing")
        report.checkpoint = sign_after_sweep(ledger.settings, key)
    return report


def sweep_clock(ledger: OpenLedger) -> int:
    """The sweep's clock T, read under the writer lock: an explicit clock (``--now``) behind
    the log's last recorded_at is refused; the wall clock is ``max(now, last + 1 µs)``."""
    now, last = ledger.clock.now(), ledger.log.head().recorded_at
    if now >= last:
        return now
    if isinstance(ledger.clock, FixedClock):
        raise ClockError(
            f"the ledger clock {format_micros(now)} is behind the log's last recorded_at "
            f"{format_micros(last)}; the sweep did nothing")
    return last + 1


def _decide(ledger: OpenLedger, policies: dict[str, Policy], now: int, *, dry_run: bool,
            ) -> tuple[SweepReport, list[Decision], dict[tuple[str, str], list[str]], list[Event]]:
    with open_read_model(ledger) as con:  # one read for everything the sweep needs
        decisions, counts = compute_decisions(con, policies, now)
        requests = open_erasure_requests(con)
        reviews = _reviews(last_reviews(con), policies, counts, now)
    total = count_actions()
    for per_controller in counts.values():
        for action, n in per_controller.items():
            total[action] += n
    return SweepReport(now, dry_run, decisions=total), decisions, requests, reviews


def _events(policies: dict[str, Policy], decisions: list[Decision],
            requests: dict[tuple[str, str], list[str]], now: int,
            ) -> tuple[list[Event], list[PendingEffect]]:
    """The sweep's events for the due decisions, and the key effects their record orders."""
    events: list[Event] = []
    effects: list[PendingEffect] = []
    for d in decisions:
        policy = policies[d.controller]
        if d.action == "notify":
            assert policy.notice_before is not None and d.due_at is not None
            erase_from = max(policy.notice_before.add(d.due_at), policy.notice_before.add(now))
            events.append(_event("DeletionNoticeSent", d, now, (d.rule, d.due_at), {
                "due_at": erase_from, "policy": d.policy, "policy_hash": d.policy_hash,
                "rule": d.rule, "evidence": list(d.evidence)}))
        elif d.action == "pseudonymise":
            assert policy.pseudonymise_for is not None
            events.append(_event("SubjectPseudonymised", d, now, (d.rule, d.due_at), {
                "reason": d.rule, "erase_due_at": policy.pseudonymise_for.add(now),
                "policy": d.policy, "policy_hash": d.policy_hash, "evidence": list(d.evidence)}))
            effects.append(PendingEffect(events[-1].event_id, d.controller, d.subject,
                                         "pseudonymise"))
            events.extend(_close_requests(d, now, requests))
        elif d.action == "erase":
            events.append(_event("SubjectErased", d, now, (d.rule, d.due_at), {
                "reason": d.rule, "policy": d.policy, "policy_hash": d.policy_hash,
                "keys_shredded": list(d.shred), "evidence": list(d.evidence)}))
            effects.append(PendingEffect(events[-1].event_id, d.controller, d.subject, "erase",
                                         tuple(d.shred)))
            if d.rule == "erasure_request":
                events.extend(_close_requests(d, now, requests))
    return events, effects


def _event(event_type: str, d: Decision, now: int, key: tuple[Any, ...], body: dict[str, Any]) -> Event:
    return Event(event_type, sweep_event_id(event_type, d.controller, d.subject, *key),
                 d.controller, d.subject, now, now, SOURCE, ACTOR, body)


def _close_requests(d: Decision, now: int, requests: dict[tuple[str, str], list[str]]) -> list[Event]:
    """The erasure requests a pseudonymisation or an erasure answers."""
    return [
        Event("RightsRequestClosed", sweep_event_id("RightsRequestClosed", d.controller, d.subject, rid),
              d.controller, d.subject, now, now, SOURCE, ACTOR,
              {"request_id": rid, "outcome": "fulfilled"})
        for rid in requests.get((d.controller, d.subject), [])
    ]


def _reviews(last: dict[str, int], policies: dict[str, Policy],
             counts: dict[str, dict[str, int]], now: int) -> list[Event]:
    """A RetentionReviewed per controller whose policy asks for a periodic review that is due
    (``last``: when each controller was last reviewed)."""
    events = []
    for controller, policy in sorted(policies.items()):
        if policy.review_every is None:
            continue
        previous = last.get(controller)
        if previous is not None and policy.review_every.add(previous) > now:
            continue
        events.append(Event(
            "RetentionReviewed", sweep_event_id("RetentionReviewed", controller, now), controller,
            CONTROLLER_WIDE, now, now, SOURCE, ACTOR,
            {"policy": policy.name, "policy_hash": policy.content_hash, "as_of": now,
             "counts": counts[controller]}))
    return events


def purge_expired(ledger: OpenLedger, policies: Mapping[str, Policy], now: int) -> int:
    """The sweep's part (SPEC §5, §7a): drops the dead letters each swept controller's policy
    no longer keeps (``dead_letter_retention``, default P30D) and destroys the keys nothing
    needs any more; entries of no known controller go at the shortest retention of the
    policies swept. Returns the number of entries dropped."""
    if not policies:
        return 0
    cutoffs = {c: p.dead_letter_retention.subtract(now) for c, p in policies.items()}
    return ledger.dead_letters.purge(max(cutoffs.values()), controllers=cutoffs).entries


def last_sweep_decisions(ledger: OpenLedger) -> Redecide:
    """For ``project --rebuild``: recomputes ``retention_decisions`` of the new file at each
    controller's last sweep clock, with its configured policy, over the log as now projected.
    A controller since removed, or whose policy no longer loads, is left out (its next sweep
    fills it)."""
    def redecide(path: Path, clocks: dict[str, int]) -> None:
        for controller, clock in sorted(clocks.items()):
            try:
                policies = controller_policies(ledger, controller)
            except (UnknownController, PolicyUnavailable):
                continue
            save_decisions(path, policies, clock)
    return redecide
