"""Retention decisions for the whole population, in DuckDB SQL (SPEC §5): the read side of
``ledger.app.decisions`` and the sweep.

One query per controller gathers each subject's facts from the projections and applies the
rules of ``ledger.domain.retention.rules.decide`` as SQL expressions — no Python loop per
subject. ``subject_facts`` returns the same facts as ``SubjectFacts`` objects, so the tests hold
the SQL to the pure rules (and ``ledger explain`` shows them)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import duckdb

from ledger.domain.retention.policy import Duration, Policy
from ledger.domain.retention.rules import ACTIONS, Decision, SubjectFacts, count_actions
from ledger.domain.timeutil import micros_or_none, to_micros, to_naive_utc
from ledger.domain.vocabulary import BOOKKEEPING_TYPES, KEY_CATEGORIES
from projections.store.read_model import ReadConnection

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


def facts_sql(policy: Policy, one_subject: bool = False, some_subjects: bool = False) -> str:
    """Per subject of controller $1 (only subject $3 when ``one_subject``; only the subjects
    in the list $2 when ``some_subjects``): the facts SubjectFacts holds, from one pass over the
    subject's relevant events plus the status and request tables. Only the current
    relationship counts (SPEC §5, ``ledger.vocabulary.RELATIONSHIP_STARTS``): after a new
    sign-up following an erasure, registrations, activity, notices, erasure requests and
    erasures of the earlier relationship are left out - except held data (invoices), whose
    legal hold keeps running on the key it is encrypted under."""
    subject_filter = ("AND subject = $3" if one_subject
                      else "AND subject IN (SELECT unnest($2::VARCHAR[]))" if some_subjects else "")
    activity = _in(policy.activity)
    latest = "epoch_us(occurred_at)::HUGEINT * 100000000000 + position"  # event time, then position
    current = ("(rel.subject IS NULL OR occurred_at > rel.after_at "
               "OR (occurred_at = rel.after_at AND position > rel.after_position))")
    return f"""
    WITH rel AS (  -- the few subjects in a later relationship: where their current one begins
        SELECT subject, previous_erased_at AS after_at, previous_erased_position AS after_position
        FROM pseudonymisation_status
        WHERE controller = $1 AND relationship > 1 {subject_filter}
    ), ev AS (
        SELECT subject,
               bool_or(type = 'SubjectRegistered' AND cur) AS registered,
               max(occurred_at) FILTER (WHERE type IN ({activity}) AND cur) AS last_activity_at,
               arg_max(event_id, {latest}) FILTER (WHERE type IN ({activity}) AND cur) AS last_activity_event,
               max(occurred_at) FILTER (WHERE type = 'InvoiceUsageRecorded') AS last_held_at,
               arg_max(event_id, {latest}) FILTER (WHERE type = 'InvoiceUsageRecorded') AS last_held_event,
               max(occurred_at) FILTER (WHERE type = 'DeletionNoticeSent' AND cur) AS notice_at,
               arg_max(event_id, {latest}) FILTER (WHERE type = 'DeletionNoticeSent' AND cur) AS notice_event
        FROM (SELECT subject, type, occurred_at, position, event_id, {current} AS cur
              FROM events LEFT JOIN rel USING (subject)
              WHERE controller = $1 AND subject <> '*' {subject_filter}
                AND type IN ({_in(policy.activity | {'SubjectRegistered', 'DeletionNoticeSent',
                                                      'InvoiceUsageRecorded'})}))
        GROUP BY subject
    ), erased AS (  -- few rows: parse JSON only here
        SELECT subject, list_distinct(flatten(list(
                   CAST(json_extract(body, '$.keys_shredded') AS VARCHAR[])))) AS shredded
        FROM events LEFT JOIN rel USING (subject)
        WHERE controller = $1 AND type = 'SubjectErased' {subject_filter} AND {current}
        GROUP BY subject
    ), last_erasure AS (  -- residue: personal data recorded after the latest erasure
        SELECT subject, max(position) AS position
        FROM events
        WHERE controller = $1 AND type = 'SubjectErased' {subject_filter}
        GROUP BY subject
    ), residue AS (
        SELECT e.subject, min(e.occurred_at) AS at, arg_min(e.event_id, e.position) AS event_id,
               list_distinct(list(CASE WHEN e.type IN ({_in(BOOKKEEPING_TYPES)}) THEN 'bookkeeping'
                                       ELSE 'profile' END)) AS categories
        FROM events e JOIN last_erasure le ON le.subject = e.subject
        WHERE e.controller = $1 AND e.has_pii AND e.position > le.position
              {subject_filter.replace('subject', 'e.subject')}
        GROUP BY e.subject
    ), notice_report AS (  -- the outbox's reports on each subject's latest notice (few rows)
        SELECT r.subject, min(r.occurred_at) FILTER (WHERE r.type = 'NoticeDelivered') AS delivered_at,
               count(*) FILTER (WHERE r.type = 'NoticeFailed') AS failures,
               max(r.occurred_at) FILTER (WHERE r.type = 'NoticeFailed') AS last_failed_at
        FROM events r JOIN ev ON ev.subject = r.subject
        WHERE r.controller = $1 AND r.type IN ('NoticeDelivered', 'NoticeFailed')
              {subject_filter.replace('subject', 'r.subject')}
          AND json_extract_string(r.body, '$.message_id') = ev.notice_event
        GROUP BY r.subject
    ), erasure_request AS (
        SELECT subject, min(received_at) AS at, arg_min(request_event_id, received_at) AS event_id
        FROM rights_requests LEFT JOIN rel USING (subject)
        WHERE controller = $1 AND requested_right = 'erasure' AND closed_at IS NULL {subject_filter}
          AND (rel.subject IS NULL OR received_at > rel.after_at)
        GROUP BY subject
    )
    SELECT ac.controller, ac.subject, ac.first_seen_at, coalesce(ev.registered, false) AS registered,
           ev.last_activity_at, ev.last_activity_event, ev.notice_at, ev.notice_event,
           coalesce(st.status, 'active') AS status, st.event_id AS status_event, st.erase_due_at,
           erasure_request.at AS erasure_requested_at, erasure_request.event_id AS erasure_request_event,
           ev.last_held_at, ev.last_held_event,
           coalesce(erased.shredded, []::VARCHAR[]) AS shredded,
           CASE WHEN st.status = 'erased' THEN residue.categories END AS residue,
           CASE WHEN st.status = 'erased' THEN residue.at END AS residue_at,
           CASE WHEN st.status = 'erased' THEN residue.event_id END AS residue_event,
           notice_report.delivered_at AS notice_delivered_at,
           coalesce(notice_report.failures, 0) AS notice_failures,
           notice_report.last_failed_at AS notice_last_failed_at
    FROM activity_clock ac
    LEFT JOIN pseudonymisation_status st ON st.controller = ac.controller AND st.subject = ac.subject
    LEFT JOIN ev ON ev.subject = ac.subject
    LEFT JOIN erased ON erased.subject = ac.subject
    LEFT JOIN erasure_request ON erasure_request.subject = ac.subject
    LEFT JOIN residue ON residue.subject = ac.subject
    LEFT JOIN notice_report ON notice_report.subject = ac.subject
    WHERE ac.controller = $1 AND ac.subject <> '*' {subject_filter.replace('subject', 'ac.subject')}
    """


def _notice_counts_from(policy: Policy) -> str:
    """SQL of ``rules.notice_counts_from``: when the latest notice's period starts."""
    every = policy.notice_retry_every
    left = f"greatest(0, {policy.notice_retries + 1} - f.notice_failures)"
    retried = (f"((f.notice_last_failed_at + to_months({every.years * 12 + every.months} * {left})) "
               f"+ to_days({every.days} * {left}))")
    return ("(CASE WHEN f.notice_delivered_at IS NOT NULL THEN greatest(f.notice_delivered_at, f.notice_at) "
            "WHEN f.notice_failures = 0 OR f.notice_last_failed_at IS NULL THEN f.notice_at "
            f"ELSE {retried} END)")


def decisions_sql(policy: Policy) -> str:
    """The rules of ``retention.decide`` over facts_sql; $2 is the clock T. Dates each rule
    needs are computed once per subject (stage ``d``), then one CASE per output column walks
    the rules in decide()'s order."""
    now = "$2::TIMESTAMP"
    holds = _hold_ends(policy, "f.last_held_at")
    hold = {c: holds.get(c, "NULL::TIMESTAMP") for c in KEY_CATEGORIES}
    remaining = {c: f"NOT list_contains(f.shredded, '{c}')" for c in KEY_CATEGORIES}
    shred = ("list_filter([" + ", ".join(
        f"CASE WHEN {remaining[c]} AND coalesce({hold[c]}, {now}) <= {now} THEN '{c}' END"
        for c in KEY_CATEGORIES) + "], lambda x: x IS NOT NULL)")
    running = ("greatest(" + ", ".join(f"CASE WHEN {remaining[c]} THEN {hold[c]} END"
                                        for c in KEY_CATEGORIES) + ")")
    residue = ("list_filter([" + ", ".join(
        f"CASE WHEN list_contains(coalesce(f.residue, []), '{c}') AND coalesce({hold[c]}, {now}) "
        f"<= {now} THEN '{c}' END" for c in KEY_CATEGORIES) + "], lambda x: x IS NOT NULL)")
    start = "coalesce(f.last_activity_at, f.first_seen_at)"
    derived = [f"{running} AS running", f"{shred} AS shred_now", f"{residue} AS residue_shred",
               f"{_add(start, policy.inactive_after)} AS erase_due", f"{start} AS clock_start"]
    if policy.notice_before is not None:
        derived.append(f"{_add(_notice_counts_from(policy), policy.notice_before)} AS notice_ends")

    def ev(*names: str) -> str:
        return f"list_filter([{', '.join(names)}], lambda x: x IS NOT NULL)"

    # (condition, action, due_at, rule, evidence, shred) in the order decide() checks them.
    branches: list[tuple[str, str, str, str, str, str]] = [
        ("status = 'erased' AND len(residue_shred) > 0 AND residue_at IS NOT NULL", "erase",
         "residue_at", "erased_residue", ev("status_event", "residue_event"), "residue_shred"),
        ("status = 'erased' AND running IS NULL", "erased", "NULL", "erased", ev("status_event"), "[]"),
        (f"status = 'erased' AND running <= {now}", "erase", "running", "legal_hold_ended",
         ev("status_event", "last_held_event"), "shred_now"),
        ("status = 'erased'", "hold", "running", "legal_hold", ev("status_event", "last_held_event"), "[]"),
        (f"status = 'pseudonymised' AND erase_due_at IS NOT NULL AND erase_due_at <= {now}",
         "erase", "erase_due_at", "erasure_request", ev("status_event"), "shred_now"),
        ("status = 'pseudonymised' AND erase_due_at IS NOT NULL", "pseudonymised", "erase_due_at",
         "pseudonymised", ev("status_event"), "[]"),
    ]
    if policy.erasure_action == "pseudonymise":
        branches.append(("erasure_requested_at IS NOT NULL", "pseudonymise", "erasure_requested_at",
                         "erasure_request", ev("erasure_request_event"), "[]"))
    else:
        branches.append(("erasure_requested_at IS NOT NULL", "erase", "erasure_requested_at",
                         "erasure_request", ev("erasure_request_event"), "shred_now"))
    if not policy.keep_without_relationship:
        branches.append(("NOT registered", "erase", "first_seen_at", "no_relationship", "[]", "shred_now"))
    if policy.notice_before is None:
        branches += [
            (f"erase_due <= {now}", "erase", "erase_due", "inactivity", ev("last_activity_event"), "shred_now"),
            ("true", "keep", "erase_due", "active", ev("last_activity_event"), "[]"),
        ]
    else:
        notice_valid = "notice_at IS NOT NULL AND notice_at > clock_start"
        effective = "greatest(erase_due, notice_ends)"
        notice_due = _add("erase_due", policy.notice_before, "-")
        branches += [
            (f"{notice_valid} AND {effective} <= {now}", "erase", effective, "inactivity",
             ev("last_activity_event", "notice_event"), "shred_now"),
            (notice_valid, "keep", effective, "notice_period", ev("last_activity_event", "notice_event"), "[]"),
            (f"{notice_due} <= {now}", "notify", notice_due, "inactivity_notice", ev("last_activity_event"), "[]"),
            ("true", "keep", notice_due, "active", ev("last_activity_event"), "[]"),
        ]
    # The branch taken, once; then each output column picks its expression by branch number.
    branch = "CASE " + " ".join(f"WHEN {b[0]} THEN {i}" for i, b in enumerate(branches)) + " END"

    def pick(i: int) -> str:
        quoted = i in (1, 3)  # action and rule are names, the rest are expressions
        return "CASE branch " + " ".join(
            f"WHEN {n} THEN {_lit(b[i]) if quoted else b[i]}" for n, b in enumerate(branches)) + " END"

    return f"""
    WITH f AS ({facts_sql(policy)}),
    d AS (SELECT f.*, {', '.join(derived)} FROM f),
    b AS (SELECT d.*, {branch} AS branch FROM d)
    SELECT controller, subject, {pick(1)} AS action, {pick(2)}::TIMESTAMP AS due_at,
           {pick(3)} AS rule, {_lit(policy.name)} AS policy, {_lit(policy.content_hash)} AS policy_hash,
           {pick(4)}::VARCHAR[] AS evidence, {pick(5)}::VARCHAR[] AS shred
    FROM b
    """


DECISIONS_TABLE = "decided"


def materialise(con: ReadConnection, policies: dict[str, Policy], now: int) -> str:
    """Computes every subject's decision at ``now`` into a temporary table (all in DuckDB:
    no row crosses into Python) and returns its name."""
    con.execute(f"CREATE OR REPLACE TEMP TABLE {DECISIONS_TABLE} (controller VARCHAR, subject VARCHAR, "
                "action VARCHAR, due_at TIMESTAMP, rule VARCHAR, policy VARCHAR, "
                "policy_hash VARCHAR, evidence VARCHAR[], shred VARCHAR[])")
    for controller, policy in sorted(policies.items()):
        con.execute(f"INSERT INTO {DECISIONS_TABLE} {decisions_sql(policy)}",
                    [controller, to_naive_utc(now)])
    return DECISIONS_TABLE


def population_decisions(
    con: ReadConnection,
    policies: dict[str, Policy],
    now: int,
    actions: Iterable[str] | None = None,
) -> list[Decision]:
    """Decisions at ``now`` for every subject of these controllers (controller -> policy), as
    objects; ``actions`` keeps only those (the sweep needs only what is due)."""
    table = materialise(con, policies, now)
    where = f"WHERE action IN ({_in(actions)})" if actions is not None else ""
    rows = con.execute(f"SELECT * FROM {table} {where} ORDER BY controller, subject").fetchall()
    return [Decision(r[0], r[1], r[2], micros_or_none(r[3]), r[4], r[5], r[6], tuple(r[7]),
                     tuple(r[8])) for r in rows]


def decision_counts(con: ReadConnection, table: str = DECISIONS_TABLE) -> dict[str, int]:
    counts = dict.fromkeys(ACTIONS, 0)
    counts.update(dict(con.execute(f"SELECT action, count(*) FROM {table} GROUP BY 1").fetchall()))
    return counts


def _facts(row: tuple[Any, ...]) -> SubjectFacts:
    r = row
    return SubjectFacts(
        controller=r[0], subject=r[1], first_seen_at=to_micros(r[2]), registered=r[3],
        last_activity_at=micros_or_none(r[4]), last_activity_event=r[5],
        notice_at=micros_or_none(r[6]), notice_event=r[7], status=r[8], status_event=r[9],
        erase_due_at=micros_or_none(r[10]), erasure_requested_at=micros_or_none(r[11]),
        erasure_request_event=r[12], last_held_at=micros_or_none(r[13]),
        last_held_event=r[14], shredded=frozenset(r[15]), residue=frozenset(r[16] or ()),
        residue_at=micros_or_none(r[17]), residue_event=r[18],
        notice_delivered_at=micros_or_none(r[19]), notice_failures=int(r[20]),
        notice_last_failed_at=micros_or_none(r[21]),
    )


def subject_facts(
    con: ReadConnection, policy: Policy, controller: str, subject: str | None = None
) -> list[SubjectFacts]:
    sql = facts_sql(policy, one_subject=subject is not None)
    params: list[Any] = [controller] if subject is None else [controller, None, subject]
    if subject is not None:
        sql = sql.replace("$3", "$2")
        params = [controller, subject]
    return [_facts(r) for r in con.execute(sql, params).fetchall()]


def noticed_facts(con: ReadConnection, policy: Policy, controller: str) -> list[SubjectFacts]:
    """The facts of the controller's subjects with a deletion notice of their current
    relationship (the outbox's): filtered in DuckDB, so only those rows reach Python."""
    sql = f"SELECT * FROM ({facts_sql(policy)}) WHERE notice_event IS NOT NULL"
    return [_facts(r) for r in con.execute(sql, [controller]).fetchall()]


def subjects_facts(
    con: ReadConnection, policy: Policy, controller: str, subjects: Iterable[str]
) -> dict[str, SubjectFacts]:
    """subject -> facts, for many subjects of one controller in one query (the auditor asks
    about every subject a sweep run touched: one scan, not one per subject)."""
    wanted = sorted(set(subjects))
    if not wanted:
        return {}
    rows = con.execute(facts_sql(policy, some_subjects=True), [controller, wanted]).fetchall()
    return {f.subject: f for f in map(_facts, rows)}


def counts_by_controller(con: ReadConnection, controllers: Iterable[str],
                         table: str = DECISIONS_TABLE) -> dict[str, dict[str, int]]:
    """controller -> action -> how many of the materialised decisions (kept ones included:
    they stay in DuckDB)."""
    counts: dict[str, dict[str, int]] = {c: count_actions() for c in controllers}
    for controller, action, n in con.execute(
            f"SELECT controller, action, count(*) FROM {table} GROUP BY ALL").fetchall():
        counts[controller][action] = n
    return counts


def open_erasure_requests(con: ReadConnection) -> dict[tuple[str, str], list[str]]:
    """(controller, subject) -> the ids of its open erasure requests, oldest first."""
    rows = con.execute(
        "SELECT controller, subject, request_id FROM rights_requests "
        "WHERE requested_right = 'erasure' AND closed_at IS NULL ORDER BY received_at"
    ).fetchall()
    open_requests: dict[tuple[str, str], list[str]] = {}
    for controller, subject, request_id in rows:
        open_requests.setdefault((controller, subject), []).append(request_id)
    return open_requests


def last_reviews(con: ReadConnection) -> dict[str, int]:
    """controller -> when its retention was last reviewed (event time, µs)."""
    return {controller: to_micros(at) for controller, at in con.execute(
        "SELECT controller, max(occurred_at) FROM events WHERE type = 'RetentionReviewed' "
        "GROUP BY controller").fetchall()}


def sweep_positions(con: ReadConnection, types: Iterable[str], as_of: int | None = None,
                    subject: tuple[str, str] | None = None) -> list[int]:
    """The log positions of the sweep events of these types recorded by ``as_of`` (of one
    (controller, subject) if given), ascending."""
    sql = (f"SELECT position FROM events WHERE type IN ({_in(types)})"
           + ("" if as_of is None else " AND recorded_at <= make_timestamp(?)")
           + ("" if subject is None else " AND controller = ? AND subject = ?")
           + " ORDER BY position")
    params: list[Any] = ([] if as_of is None else [as_of]) + ([] if subject is None else list(subject))
    return [r[0] for r in con.execute(sql, params).fetchall()]


def save_decisions(path: Path, policies: dict[str, Policy], now: int) -> None:
    """Replaces these controllers' rows of ``retention_decisions`` (the decisions as of the
    last sweep) with their decisions at ``now``, in one transaction of the projections file."""
    con = duckdb.connect(str(path))
    try:
        table = materialise(con, policies, now)
        con.execute("BEGIN")
        con.execute("DELETE FROM retention_decisions WHERE controller IN (SELECT unnest(?))",
                    [list(policies)])
        con.execute(
            "INSERT INTO retention_decisions SELECT controller, subject, ?, action, due_at, rule, "
            f"policy, policy_hash, evidence FROM {table}", [to_naive_utc(now)])
        con.execute("COMMIT")
    finally:
        con.close()
