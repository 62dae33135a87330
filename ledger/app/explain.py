"""``ledger explain``: a subject's timeline and the rule chain behind its retention decision."""

from __future__ import annotations

import json
from typing import Any

from ledger.app.decisions import subject_facts
from ledger.app.opened import OpenLedger
from ledger.domain.errors import UsageError
from ledger.domain.retention.policy import Policy
from ledger.domain.retention.rules import Decision, decide, rule_chain
from ledger.domain.timeutil import format_if_datetime, format_micros
from projections.store.read_model import ReadConnection
from projections.store.subject_queries import timeline as subject_timeline


def explain(ledger: OpenLedger, con: ReadConnection, controller: str, subject: str,
            policy: Policy, now: int) -> dict[str, Any]:
    """From a read-only view of the projections (``open_read_model``) as known at ``now``."""
    rows = subject_timeline(con, controller, subject)
    facts = subject_facts(con, policy, controller, subject)
    if not rows or not facts:
        raise UsageError(f"no subject {subject[:64]} for controller {controller} in the projections")
    decision: Decision = decide(facts[0], policy, now)
    timeline = [{"position": r.position, "occurred_at": format_if_datetime(r.occurred_at),
                 "recorded_at": format_if_datetime(r.recorded_at),
                 "type": r.type, "event_id": r.event_id, "source": r.source, "actor": r.actor,
                 "body": json.loads(r.body) if r.body else {}} for r in rows]
    return {
        "controller": controller, "subject": subject, "as_of": format_micros(now),
        "timeline": timeline, "decision": decision.as_dict(),
        "rule_chain": rule_chain(facts[0], policy, now),
    }
