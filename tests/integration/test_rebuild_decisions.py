"""Issue 12 §3: ``project --rebuild`` keeps ``retention_decisions`` (the decisions as of the
last sweep), recomputed at that sweep's clock, not emptied until the next sweep."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import duckdb

import projections
from ledger.app.service import Ledger
from ledger.app.sweep import last_sweep_decisions, sweep
from ledger.domain.clock import FixedClock
from ledger.domain.timeutil import parse_timestamp
from projections.engine.projector import projections_path
from tests.conftest import make_event

EMAILS = ("anna@example.org", "bo@example.org")


def at(ledger: Ledger, when: str) -> None:
    ledger.clock = FixedClock(parse_timestamp(when))


def rows(ledger: Ledger) -> list[tuple[Any, ...]]:
    con = duckdb.connect(str(projections_path(ledger)), read_only=True)
    try:
        return con.execute("SELECT * FROM retention_decisions ORDER BY ALL").fetchall()
    finally:
        con.close()


def test_rebuild_recomputes_decisions_at_the_last_sweep_clock(ledger: Ledger) -> None:
    for email in EMAILS:
        at(ledger, "2025-06-01")
        ledger.record(make_event("SubjectRegistered", controller="cowrite", occurred_at="2025-06-01",
                                 subject={"email": email}, pii={"name": "A"}))
    at(ledger, "2026-07-20")
    sweep(ledger, controller="cowrite")
    before = rows(ledger)
    assert len(before) == 2 and {r[2] for r in before} == {datetime(2026, 7, 20)}
    # Later, with the clock well past the sweep: the rebuild still decides at the sweep's clock.
    at(ledger, "2027-03-01")
    projections.project(ledger, rebuild=True, redecide=last_sweep_decisions(ledger))
    assert rows(ledger) == before
    # Without the application's recomputation the table would be empty (what it used to be).
    projections.project(ledger, rebuild=True)
    assert rows(ledger) == []


def test_rebuild_before_any_sweep_leaves_the_table_empty(ledger: Ledger) -> None:
    at(ledger, "2025-06-01")
    ledger.record(make_event("SubjectRegistered", controller="cowrite", occurred_at="2025-06-01",
                             subject={"email": EMAILS[0]}, pii={"name": "A"}))
    projections.project(ledger, rebuild=True, redecide=last_sweep_decisions(ledger))
    assert rows(ledger) == []
