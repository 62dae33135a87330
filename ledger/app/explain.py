"""``ledger explain``: a subject's timeline and the rule chain behind its retention decision."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ledger.app.decisions import subject_facts
from ledger.app.opened import OpenLedger
from ledger.domain.errors import UsageError
from ledger.domain.retention.policy import Policy
from ledger.domain.retention.rules import Decision, decide, rule_chain
from ledger.domain.timeutil import format_if_datetime, format_micros
from projections.engine.projector import read_only_connection


def explain(ledger: OpenLedger, path: Path, controller: str, subject: str, policy: Policy,
            now: int) -> dict[str, Any]:
    con = read_only_connection(path)
    try:
        rows = con.execute(
            "SELECT position, occurred_at, recorded_at, type, event_id, source, actor, body "
            "FROM events WHERE controller = ? AND subject = ? ORDER BY occurred_at, position",
            [controller, subject]).fetchall()
        facts = subject_facts(con, policy, controller, subject)
    finally:
        con.close()
    if not rows or not facts:
        raise UsageError(f"no subject {subject[:64]} for controller {controller} in the projections")
    decision: Decision = decide(facts[0], policy, now)
    timeline = [{"position": r[0], "occurred_at": format_if_datetime(r[1]),
                 "recorded_at": format_if_datetime(r[2]),
                 "type": r[3], "event_id": r[4], "source": r[5], "actor": r[6],
                 "body": json.loads(r[7]) if r[7] else {}} for r in rows]
    return {
        "controller": controller, "subject": subject, "as_of": format_micros(now),
        "timeline": timeline, "decision": decision.as_dict(),
        "rule_chain": rule_chain(facts[0], policy, now),
    }
