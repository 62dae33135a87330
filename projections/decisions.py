"""Retention decisions for the whole population, in DuckDB SQL (SPEC §5).

One query per controller gathers each subject's facts from the projections and applies the
rules of ``projections.retention.decide`` as SQL expressions — no Python loop per subject.
``subject_facts`` returns the same facts as ``SubjectFacts`` objects, so the tests hold the SQL
to the pure rules (and ``ledger explain`` shows them)."""

from __future__ import annotations

import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb

from ledger.errors import UsageError
from ledger.timeutil import to_micros
from ledger.vocabulary import ACTIVITY_TYPES, KEY_CATEGORIES
from ledger.service import Ledger
from projections.policy import Duration, Policy, load_policy
from projections.retention import Decision, SubjectFacts, decide

COLUMNS = ("controller", "subject", "action", "due_at", "rule", "policy", "policy_hash",
           "evidence", "shred")


def _add(ts: str, d: Duration, sign: str = "+") -> str:
    months = d.years * 12 + d.months
    return f"(({ts} {sign} to_months({months})) {sign} to_days({d.days}))"


def _lit(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _in(values: Iterable[str]) -> str:
    return ", ".join(_lit(v) for v in sorted(values))


def _hold_ends(policy: Policy, last_held: str) -> dict[str, str]:
    """Key category -> SQL for when its legal hold ends (NULL without held data)."""
    ends: dict[str, list[str]] = {}
    for hold in policy.legal_holds:
        start = (f"make_timestamp(year({last_held}) + 1, 1, 1, 0, 0, 0)"
                 if hold.counted_from == "end_of_calendar_year" else last_held)
        for category in hold.categories:
            ends.setdefault(category, []).append(_add(start, hold.keep_for))
    return {c: (e[0] if len(e) == 1 else f"greatest({', '.join(e)})") for c, e in ends.items()}


def facts_sql(policy: Policy, one_subject: bool = False) -> str:
    """Per subject of controller $1: the facts SubjectFacts holds. A subject erased and then
    active again (a new relationship, new key generation) is decided as active."""
    subject_filter = "AND subject = $3" if one_subject else ""
    if policy.activity == ACTIVITY_TYPES:
        last_activity = "SELECT controller, subject, last_activity_at AS at FROM ac"
    else:
        last_activity = (f"SELECT controller, subject, max(occurred_at) AS at FROM ev "
                         f"WHERE type IN ({_in(policy.activity)}) GROUP BY ALL")
    return f"""
    WITH ac AS (
        SELECT * FROM activity_clock WHERE controller = $1 AND subject <> '*' {subject_filter}
    ), ev AS (
        SELECT controller, subject, type, occurred_at, position, event_id, body FROM events
        WHERE controller = $1 AND subject <> '*' {subject_filter}
          AND type IN ({_in(policy.activity | {'SubjectRegistered', 'DeletionNoticeSent',
                                                'SubjectErased', 'InvoiceUsageRecorded'})})
    ), la AS ({last_activity}
    ), la_event AS (
        SELECT ev.subject, arg_max(ev.event_id, ev.position) AS event_id FROM ev
        JOIN la ON ev.subject = la.subject AND ev.occurred_at = la.at
        WHERE ev.type IN ({_in(policy.activity)}) GROUP BY ev.subject
    ), held_event AS (
        SELECT ev.subject, arg_max(ev.event_id, ev.position) AS event_id FROM ev
        JOIN ac ON ev.subject = ac.subject AND ev.occurred_at = ac.last_invoice_at
        WHERE ev.type = 'InvoiceUsageRecorded' GROUP BY ev.subject
    ), registered AS (
        SELECT DISTINCT subject FROM ev WHERE type = 'SubjectRegistered'
    ), notice AS (
        SELECT subject, arg_max(event_id, position) AS event_id, max(occurred_at) AS at
        FROM ev WHERE type = 'DeletionNoticeSent' GROUP BY subject
    ), erasure_request AS (
        SELECT subject, min(received_at) AS at, arg_min(request_event_id, received_at) AS event_id
        FROM rights_requests
        WHERE controller = $1 AND requested_right = 'erasure' AND closed_at IS NULL
          {subject_filter}
        GROUP BY subject
    ), erased AS (
        SELECT subject, max(occurred_at) AS at,
               list_distinct(flatten(list(CAST(json_extract(body, '$.keys_shredded') AS VARCHAR[]))))
                   AS categories
        FROM ev WHERE type = 'SubjectErased' GROUP BY subject
    ), status AS (
        SELECT * FROM pseudonymisation_status WHERE controller = $1 {subject_filter}
    )
    SELECT ac.controller, ac.subject, ac.first_seen_at, registered.subject IS NOT NULL AS registered,
           la.at AS last_activity_at, la_event.event_id AS last_activity_event,
           notice.at AS notice_at, notice.event_id AS notice_event,
           CASE WHEN coalesce(status.status, 'active') = 'erased' AND la.at > status.since
                THEN 'active' ELSE coalesce(status.status, 'active') END AS status,
           status.event_id AS status_event, status.erase_due_at,
           erasure_request.at AS erasure_requested_at, erasure_request.event_id AS erasure_request_event,
           ac.last_invoice_at AS last_held_at, held_event.event_id AS last_held_event,
           CASE WHEN coalesce(status.status, 'active') = 'erased' AND la.at > status.since
                THEN []::VARCHAR[] ELSE coalesce(erased.categories, []::VARCHAR[]) END AS shredded
    FROM ac
    LEFT JOIN la ON la.subject = ac.subject
    LEFT JOIN la_event ON la_event.subject = ac.subject
    LEFT JOIN held_event ON held_event.subject = ac.subject
    LEFT JOIN registered ON registered.subject = ac.subject
    LEFT JOIN notice ON notice.subject = ac.subject
    LEFT JOIN erasure_request ON erasure_request.subject = ac.subject
    LEFT JOIN erased ON erased.subject = ac.subject
    LEFT JOIN status ON status.subject = ac.subject
    """


def decisions_sql(policy: Policy) -> str:
    """The rules of ``retention.decide`` over facts_sql; $2 is the clock T."""
    now = "$2::TIMESTAMP"
    holds = _hold_ends(policy, "f.last_held_at")
    hold = {c: holds.get(c, "NULL::TIMESTAMP") for c in KEY_CATEGORIES}
    remaining = {c: f"NOT list_contains(f.shredded, '{c}')" for c in KEY_CATEGORIES}
    shred = ("list_filter([" + ", ".join(
        f"CASE WHEN {remaining[c]} AND coalesce({hold[c]}, {now}) <= {now} THEN '{c}' END"
        for c in KEY_CATEGORIES) + "], lambda x: x IS NOT NULL)")
    running = ("greatest(" + ", ".join(f"CASE WHEN {remaining[c]} THEN {hold[c]} END"
                                        for c in KEY_CATEGORIES) + ")")
    start = "coalesce(f.last_activity_at, f.first_seen_at)"
    erase_due = _add(start, policy.inactive_after)

    def ev(*names: str) -> str:
        return f"list_filter([{', '.join('f.' + n for n in names)}], lambda x: x IS NOT NULL)"

    # (condition, action, due_at, rule, evidence, shred) in the order decide() checks them.
    branches: list[tuple[str, str, str, str, str, str]] = [
        (f"f.status = 'erased' AND running IS NULL", "keep", "NULL", "erased", ev("status_event"), "[]"),
        (f"f.status = 'erased' AND running <= {now}", "erase", "running", "legal_hold_ended",
         ev("status_event", "last_held_event"), shred),
        ("f.status = 'erased'", "hold", "running", "legal_hold", ev("status_event", "last_held_event"), "[]"),
        (f"f.status = 'pseudonymised' AND f.erase_due_at IS NOT NULL AND f.erase_due_at <= {now}",
         "erase", "f.erase_due_at", "erasure_request", ev("status_event"), shred),
        ("f.status = 'pseudonymised' AND f.erase_due_at IS NOT NULL", "keep", "f.erase_due_at",
         "pseudonymised", ev("status_event"), "[]"),
    ]
    if policy.erasure_action == "pseudonymise":
        branches.append(("f.erasure_requested_at IS NOT NULL", "pseudonymise", "f.erasure_requested_at",
                         "erasure_request", ev("erasure_request_event"), "[]"))
    else:
        branches.append(("f.erasure_requested_at IS NOT NULL", "erase", "f.erasure_requested_at",
                         "erasure_request", ev("erasure_request_event"), shred))
    if not policy.keep_without_relationship:
        branches.append(("NOT f.registered", "erase", "f.first_seen_at", "no_relationship", "[]", shred))
    if policy.notice_before is None:
        branches += [
            (f"{erase_due} <= {now}", "erase", erase_due, "inactivity", ev("last_activity_event"), shred),
            ("true", "keep", erase_due, "active", ev("last_activity_event"), "[]"),
        ]
    else:
        notice_valid = f"f.notice_at IS NOT NULL AND f.notice_at > {start}"
        effective = f"greatest({erase_due}, {_add('f.notice_at', policy.notice_before)})"
        notice_due = _add(erase_due, policy.notice_before, "-")
        branches += [
            (f"{notice_valid} AND {effective} <= {now}", "erase", effective, "inactivity",
             ev("last_activity_event", "notice_event"), shred),
            (notice_valid, "keep", effective, "notice_period", ev("last_activity_event", "notice_event"), "[]"),
            (f"{notice_due} <= {now}", "notify", notice_due, "inactivity_notice", ev("last_activity_event"), "[]"),
            ("true", "keep", notice_due, "active", ev("last_activity_event"), "[]"),
        ]

    def case(i: int) -> str:
        quoted = i in (1, 3)  # action and rule are names, the rest are expressions
        return "CASE " + " ".join(
            f"WHEN {b[0]} THEN {_lit(b[i]) if quoted else b[i]}" for b in branches) + " END"

    return f"""
    WITH f AS ({facts_sql(policy)}), g AS (SELECT f.*, {running} AS running FROM f)
    SELECT f.controller, f.subject, {case(1)} AS action, {case(2)}::TIMESTAMP AS due_at,
           {case(3)} AS rule, {_lit(policy.name)} AS policy, {_lit(policy.content_hash)} AS policy_hash,
           {case(4)}::VARCHAR[] AS evidence, {case(5)}::VARCHAR[] AS shred
    FROM g AS f ORDER BY f.subject
    """


def _micros(value: Any) -> int | None:
    return None if value is None else to_micros(value)


def population_decisions(
    con: duckdb.DuckDBPyConnection, policies: dict[str, Policy], now: int
) -> list[Decision]:
    """Decisions at ``now`` for every subject of these controllers (controller -> policy)."""
    decisions = []
    for controller, policy in sorted(policies.items()):
        rows = con.execute(decisions_sql(policy), [controller, _ts(now)]).fetchall()
        decisions.extend(
            Decision(r[0], r[1], r[2], _micros(r[3]), r[4], r[5], r[6], tuple(r[7]), tuple(r[8]))
            for r in rows
        )
    return decisions


def subject_facts(
    con: duckdb.DuckDBPyConnection, policy: Policy, controller: str, subject: str | None = None
) -> list[SubjectFacts]:
    sql = facts_sql(policy, one_subject=subject is not None)
    params: list[Any] = [controller] if subject is None else [controller, None, subject]
    if subject is not None:
        sql = sql.replace("$3", "$2")
        params = [controller, subject]
    facts = []
    for r in con.execute(sql, params).fetchall():
        facts.append(SubjectFacts(
            controller=r[0], subject=r[1], first_seen_at=to_micros(r[2]), registered=r[3],
            last_activity_at=_micros(r[4]), last_activity_event=r[5], notice_at=_micros(r[6]),
            notice_event=r[7], status=r[8], status_event=r[9], erase_due_at=_micros(r[10]),
            erasure_requested_at=_micros(r[11]), erasure_request_event=r[12],
            last_held_at=_micros(r[13]), last_held_event=r[14], shredded=frozenset(r[15]),
        ))
    return facts


def _ts(micros: int) -> Any:
    from ledger.timeutil import from_micros

    return from_micros(micros).replace(tzinfo=None)


@dataclass(frozen=True, slots=True)
class DecisionTable:
    as_of: int
    decisions: list[Decision]

    def counts(self) -> dict[str, int]:
        out = dict.fromkeys(("keep", "notify", "pseudonymise", "erase", "hold"), 0)
        for d in self.decisions:
            out[d.action] += 1
        return out


def open_read_only(path: Path) -> duckdb.DuckDBPyConnection:
    if not path.exists():
        raise UsageError(f"no projections at {path}: run `ledger project` first")
    return duckdb.connect(str(path), read_only=True)


def controller_policies(
    ledger: Ledger, controller: str | None = None, policy_path: str | None = None
) -> dict[str, Policy]:
    """controller -> its policy (from the config), for one controller or all of them."""
    controllers = ledger.config.controllers
    if controller is not None and controller not in controllers:
        raise UsageError(f"--controller: unknown controller {controller[:40]!r}")
    if policy_path is not None and controller is None and len(controllers) > 1:
        raise UsageError("--policy applies to one controller: give --controller too")
    chosen = [controller] if controller else sorted(controllers)
    return {c: load_policy(policy_path or controllers[c].policy) for c in chosen}


@contextmanager
def projections_as_of(ledger: Ledger, as_of: int | None) -> Iterator[tuple[Path, int]]:
    """The projections file to decide from, and the clock: the live file brought up to date
    (clock: the ledger clock), or, for a knowledge time before the log's head, a replay of
    only what was recorded by then (SPEC §4), in a temporary file."""
    from projections.projector import project, projections_path, replay

    if as_of is None or as_of >= ledger.log.head().recorded_at:
        project(ledger)
        yield projections_path(ledger), ledger.clock.now() if as_of is None else as_of
        return
    with tempfile.TemporaryDirectory(prefix="ledger-as-of-") as tmp:
        path = Path(tmp) / "replay.duckdb"
        replay(ledger, as_of, path)
        yield path, as_of


def decisions_at(ledger: Ledger, as_of: int | None = None, controller: str | None = None,
                 policy_path: str | None = None) -> DecisionTable:
    policies = controller_policies(ledger, controller, policy_path)
    with projections_as_of(ledger, as_of) as (path, now):
        con = open_read_only(path)
        try:
            return DecisionTable(now, population_decisions(con, policies, now))
        finally:
            con.close()


def subject_decision(ledger: Ledger, controller: str, subject: str,
                     as_of: int | None = None) -> Decision | None:
    """One subject's decision (for the register extract's retention schedule)."""
    policy = controller_policies(ledger, controller)[controller]
    with projections_as_of(ledger, as_of) as (path, now):
        con = open_read_only(path)
        try:
            facts = subject_facts(con, policy, controller, subject)
        finally:
            con.close()
    return decide(facts[0], policy, now) if facts else None
