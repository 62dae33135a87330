"""``ledger audit decisions`` (issue 5): was each retention sweep event exactly what its policy
demanded, with what was known when the sweep ran?

For every ``DeletionNoticeSent``, ``SubjectPseudonymised`` and ``SubjectErased`` in the log, the
decision is recomputed from the log prefix *before that sweep's own batch* (a sweep run is the
sweep events sharing one recorded_at; the sweep appends them in one batch at its clock T), under
the policy whose content hash the event recorded, with the same pure rules the sweep used
(``retention.decide``). ``judge`` compares one event with that decision and is pure; ``audit``
does the plumbing: one incremental replay into a temporary DuckDB file (``open_prefix_replay``),
stopped before each run, and one facts query per run and controller for all the subjects the run
touched (a query per event made a 2,000-subject demo take half a minute).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ledger.app.decisions import subjects_facts
from ledger.app.opened import OpenLedger
from ledger.domain.errors import ConfigError
from ledger.domain.retention.policy import Policy, builtin_policies, load_policy
from ledger.domain.retention.rules import (
    Decision,
    SubjectFacts,
    decide,
    hold_ends_at,
)
from ledger.domain.timeutil import format_day, format_micros, micros_or_none
from projections.store.opener import open_prefix_replay, open_read_model
from projections.store.read_model import ReadConnection
from projections.store.retention_queries import sweep_positions

SWEEP_TYPES = ("DeletionNoticeSent", "SubjectPseudonymised", "SubjectErased")
EXPECTED_ACTION = {"DeletionNoticeSent": "notify", "SubjectPseudonymised": "pseudonymise",
                   "SubjectErased": "erase"}


@dataclass(frozen=True, slots=True)
class SweepEvent:
    """A sweep event as recorded: envelope and body fields (no personal data by design)."""

    position: int
    event_id: str
    type: str
    controller: str
    subject: str
    occurred_at: int
    recorded_at: int  # the sweep's clock T
    actor: str
    body: Mapping[str, Any]


# What a verdict shows of the recomputed decision (the event names the subject and the policy).
_RECOMPUTED = ("action", "rule", "due_at", "evidence", "shred")


@dataclass(frozen=True, slots=True)
class Verdict:
    event: SweepEvent
    justified: bool
    reason: str
    known_through: int  # the last log position the recomputation saw
    policy: Policy | None = None
    decision: Decision | None = None  # the recomputed decision

    def as_dict(self) -> dict[str, Any]:
        e = self.event
        d = None if self.decision is None else self.decision.as_dict()
        return {
            "position": e.position, "event_id": e.event_id, "type": e.type,
            "controller": e.controller, "subject": e.subject,
            "recorded_at": format_micros(e.recorded_at),
            "policy": e.body.get("policy"), "policy_hash": e.body.get("policy_hash"),
            "justified": self.justified, "reason": self.reason,
            "known_through_position": self.known_through,
            "recomputed": None if d is None else {k: d[k] for k in _RECOMPUTED},
        }


@dataclass(frozen=True, slots=True)
class DecisionAudit:
    as_of: int | None
    runs: int
    verdicts: tuple[Verdict, ...]

    @property
    def ok(self) -> bool:
        return all(v.justified for v in self.verdicts)

    def summary(self) -> dict[str, Any]:
        bad = sum(not v.justified for v in self.verdicts)
        return {"as_of": None if self.as_of is None else format_micros(self.as_of),
                "sweep_runs": self.runs, "events": len(self.verdicts),
                "justified": len(self.verdicts) - bad, "unjustified": bad, "ok": self.ok}

    def as_dict(self) -> dict[str, Any]:
        return {"verdicts": [v.as_dict() for v in self.verdicts], "summary": self.summary()}


# --- the comparison (pure) ----------------------------------------------------------------


# Actions under which no sweep event is due: an event then was premature (or redundant).
NOT_DUE = ("keep", "hold", "pseudonymised", "erased")


def _not_due(d: Decision, what: str, policy: Policy) -> str:
    """Why an event whose decision is not due was premature, in the auditor's words."""
    if d.rule == "notice_period":
        return f"{what} before its notice period ended (erasure due {format_day(d.due_at)})"
    if d.rule == "pseudonymised":
        return f"{what} before the pseudonymisation period ended (erasure due {format_day(d.due_at)})"
    if d.rule == "erased":
        return f"{what} a subject already erased (nothing left to do)"
    if d.rule == "active" and policy.notice_before is not None:
        return f"{what} while the subject was active: the deletion notice falls due {format_day(d.due_at)}"
    return f"{what} while nothing was due (next step {format_day(d.due_at)}, rule {d.rule})"


def judge(event: SweepEvent, facts: SubjectFacts | None, policy: Policy | None,
          known_through: int) -> Verdict:
    """Justified iff the policy, applied at the event's clock to the facts known before the
    sweep, gives this very action, rule and effect (keys shredded, dates announced)."""
    def verdict(ok: bool, reason: str, d: Decision | None = None) -> Verdict:
        return Verdict(event, ok, reason, known_through, policy, d)

    body, now = event.body, event.recorded_at
    if not body.get("policy_hash"):
        return verdict(False, "no policy hash recorded: the decision cannot be reproduced")
    if policy is None:
        return verdict(False, f"policy hash {str(body['policy_hash'])[:12]}… unknown (not a shipped "
                              "policy nor one given to the audit): unverifiable")
    if facts is None:
        return verdict(False, "the subject was unknown to the log before the sweep")
    d = decide(facts, policy, now)
    action = EXPECTED_ACTION[event.type]
    rule = body.get("reason", body.get("rule"))

    if event.type == "SubjectErased":
        shredded = set(body.get("keys_shredded") or ())
        # Held keys are the worst error (data that must be kept is gone), so it wins.
        held = {c: end for c, end in hold_ends_at(facts, policy).items()
                if end > now and c not in facts.shredded}
        broken = sorted(shredded & set(held))
        if broken:
            return verdict(False, f"erased despite a legal hold: keys of {', '.join(broken)} "
                                  f"shredded while the hold runs until {format_day(max(held[c] for c in broken))}", d)
        if d.action == "notify":
            return verdict(False, "notice missing before an inactivity erasure (a deletion "
                                  f"notice fell due {format_day(d.due_at)} and none was sent)", d)
        if d.action == "pseudonymise":
            return verdict(False, "erased at once, but the policy pseudonymises on an erasure "
                                  f"request first (for {policy.pseudonymise_for})", d)
        if d.action in NOT_DUE:
            return verdict(False, _not_due(d, "erased", policy), d)
        if rule != d.rule:
            return verdict(False, f"erased under rule {rule}, but the policy's rule is {d.rule}", d)
        if shredded != set(d.shred):
            return verdict(False, f"keys shredded {sorted(shredded)} differ from what the policy "
                                  f"destroys {sorted(d.shred)}", d)
    elif d.action != action:
        what = {"notify": "notice sent", "pseudonymise": "pseudonymised"}[action]
        if d.action in NOT_DUE:
            return verdict(False, _not_due(d, what, policy), d)
        return verdict(False, f"{what}, but the policy gives {d.action} (rule {d.rule}, due "
                              f"{format_day(d.due_at)})", d)
    elif rule != d.rule:
        return verdict(False, f"rule {rule} recorded, but the policy's rule is {d.rule}", d)
    elif event.type == "DeletionNoticeSent":
        # The person always gets the full notice period, even from a late sweep.
        assert policy.notice_before is not None and d.due_at is not None
        announced = micros_or_none(body.get("due_at"))
        expected = max(policy.notice_before.add(d.due_at), policy.notice_before.add(now))
        if announced != expected:
            return verdict(False, f"notice announces erasure on {format_day(announced)}, the policy "
                                  f"gives {format_day(expected)}", d)
    elif event.type == "SubjectPseudonymised":
        assert policy.pseudonymise_for is not None
        scheduled = micros_or_none(body.get("erase_due_at"))
        expected = policy.pseudonymise_for.add(now)
        if scheduled != expected:
            return verdict(False, f"erasure scheduled for {format_day(scheduled)}, the policy gives "
                                  f"{format_day(expected)}", d)
    recorded = set(body.get("evidence") or ())
    if recorded != set(d.evidence):
        return verdict(False, f"evidence {sorted(recorded)} differs from the events the decision "
                              f"rests on {sorted(d.evidence)}", d)
    return verdict(True, f"{d.action} due {format_day(d.due_at)} by rule {d.rule} of policy {policy.name}", d)


# --- plumbing: the log prefix each sweep run saw ---------------------------------------------


def known_policies(paths: Iterable[str] = (), ledger: OpenLedger | None = None) -> dict[str, Policy]:
    """Content hash -> policy: the shipped ones, the controllers' configured ones and any
    given files (an auditor may bring an older policy version)."""
    found = [load_policy(n) for n in builtin_policies()]
    if ledger is not None:
        for c in ledger.config.controllers.values():
            try:
                found.append(load_policy(c.policy))
            except ConfigError:  # a missing policy file makes its events unverifiable, not fatal
                pass
    found += [load_policy(p) for p in paths]
    return {p.content_hash: p for p in found}


def sweep_events(ledger: OpenLedger, as_of: int | None = None,
                 subject: tuple[str, str] | None = None) -> list[SweepEvent]:
    """The sweep events recorded by ``as_of``, in log order. Their positions come from the
    projections; each is then decoded from the log itself (typed body fields)."""
    # The live projections hold every record; those recorded after as_of are filtered out.
    with open_read_model(ledger) as con:
        positions = sweep_positions(con, SWEEP_TYPES, as_of, subject)
    events = []
    for first, last in _clusters(positions):
        wanted = set(positions[first:last + 1])
        start, stop = positions[first], positions[last]
        for record in ledger.log.read(start, limit=stop - start + 1):
            if record.position in wanted:
                e = ledger.codec.decode(record.payload)
                events.append(SweepEvent(record.position, e.event_id, e.type, e.controller, e.subject,
                                         e.occurred_at, e.recorded_at, e.actor, dict(e.body)))
    return events


def _clusters(positions: Sequence[int], gap: int = 1000) -> list[tuple[int, int]]:
    """Index ranges of nearby positions: a sweep's batch is read in one scan, and the records
    between two sweeps are not read at all."""
    out: list[tuple[int, int]] = []
    for i, p in enumerate(positions):
        if out and p - positions[out[-1][1]] <= gap:
            out[-1] = (out[-1][0], i)
        else:
            out.append((i, i))
    return out


def runs_of(events: Sequence[SweepEvent]) -> list[tuple[int, list[SweepEvent]]]:
    """(the last position the run knew, its events): a run is the events sharing one clock."""
    runs: dict[int, list[SweepEvent]] = {}
    for e in events:
        runs.setdefault(e.recorded_at, []).append(e)
    return sorted((min(e.position for e in run) - 1, run) for run in runs.values())


# (work done, total work): log records replayed plus sweep events judged.
AuditProgress = Callable[[int, int], None]


def audit(ledger: OpenLedger, as_of: int | None = None, policy_paths: Iterable[str] = (),
          subject: tuple[str, str] | None = None,
          progress: AuditProgress | None = None) -> DecisionAudit:
    policies = known_policies(policy_paths, ledger)
    events = sweep_events(ledger, as_of, subject)
    runs = runs_of(events)
    verdicts: list[Verdict] = []
    if not runs:
        return DecisionAudit(as_of, 0, ())
    total = runs[-1][0] + len(events)
    done = [0]

    def advance(n: int) -> None:
        done[0] += n
        if progress is not None:
            progress(done[0], total)

    with open_prefix_replay(ledger) as prefix:
        # Runs ascend by position, so one replay grows from each prefix to the next.
        for known_through, run in runs:
            prefix.through(known_through, progress=advance)
            with prefix.read_only() as con:
                known = _run_facts(con, run, policies)
            for e in run:
                policy = policies.get(str(e.body.get("policy_hash", "")))
                facts = known.get((e.controller, e.subject)) if policy is not None else None
                verdicts.append(judge(e, facts, policy, known_through))
            advance(len(run))
    verdicts.sort(key=lambda v: v.event.position)
    return DecisionAudit(as_of, len(runs), tuple(verdicts))


def _run_facts(con: ReadConnection, run: Sequence[SweepEvent],
               policies: Mapping[str, Policy]) -> dict[tuple[str, str], SubjectFacts]:
    """(controller, subject) -> facts known before the run, one query per controller and
    policy for all the subjects the run touched."""
    wanted: dict[tuple[str, str], set[str]] = {}
    for e in run:
        policy_hash = str(e.body.get("policy_hash", ""))
        if policy_hash in policies:
            wanted.setdefault((e.controller, policy_hash), set()).add(e.subject)
    known: dict[tuple[str, str], SubjectFacts] = {}
    for (controller, policy_hash), subjects in sorted(wanted.items()):
        for s, f in subjects_facts(con, policies[policy_hash], controller, subjects).items():
            known[(controller, s)] = f
    return known
