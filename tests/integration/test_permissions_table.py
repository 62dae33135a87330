"""Issue 12 §1: the ``permissions`` table says what ``ledger permits`` says, for every subject
of a small demo, every purpose of its policy and every marketing channel, at two clocks (the
demo as published, and after later events erase, restrict and unsubscribe some subjects)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import duckdb
import pytest
from click.testing import CliRunner

import cli
from ledger.app.permissions import refresh_permissions
from ledger.app.permits import permits
from ledger.app.service import Ledger
from ledger.domain.clock import FixedClock
from ledger.domain.timeutil import parse_timestamp
from projections.engine.projector import projections_path
from tests.conftest import DEMO_NOW, make_event

LATER = "2026-11-20"


def table(ledger: Ledger) -> dict[tuple[str, str, str, str], tuple[Any, ...]]:
    con = duckdb.connect(str(projections_path(ledger)), read_only=True)
    try:
        rows = con.execute("SELECT controller, subject, purpose, channel, permitted, rule, reason, "
                           "event_id, subject_status FROM permissions").fetchall()
    finally:
        con.close()
    return {r[:4]: r[4:] for r in rows}


def assert_table_equals_permits(ledger: Ledger) -> dict[tuple[str, str, str, str], tuple[Any, ...]]:
    refresh_permissions(ledger)
    rows = table(ledger)
    assert rows
    for (controller, subject, purpose, channel), (permitted, rule, reason, event_id, _) in rows.items():
        answer = permits(ledger, purpose, subject=subject, controller=controller,
                         channel=None if channel == "*" else channel).permission
        evidence = None if answer.evidence is None else answer.evidence.event_id
        assert (permitted, rule, reason, event_id) == (answer.permitted, answer.rule,
                                                       answer.reason, evidence), (subject, purpose, channel)
    return rows


@pytest.mark.slow
def test_the_permissions_table_equals_permits_at_two_clocks(tmp_path: Path) -> None:
    # Its own small demo: every row is checked against one permits() call (~0.5 s each).
    data = tmp_path / "d"
    result = CliRunner().invoke(cli.main, ["--data", str(data), "--now", DEMO_NOW, "demo",
                                           "--subjects", "20", "--json"])
    assert result.exit_code == 0, result.output
    with Ledger.open(data, now=DEMO_NOW) as ledger:
        first = assert_table_equals_permits(ledger)
        statuses = {r[4] for r in first.values()}
        assert {"active", "erased"} <= statuses  # the demo erased some: the table says so
        # Nobody erased or pseudonymised may receive anything, whatever their consents say.
        assert not any(r[0] for r in first.values() if r[4] in ("erased", "pseudonymised"))
        # Later: an unsubscribe from everything for the first permitted newsletter subject.
        target = next(k for k, r in sorted(first.items())
                      if k[2] == "newsletter" and r[0] and k[3] == "email")
        ledger.clock = FixedClock(parse_timestamp(LATER))
        ledger.record(make_event("Unsubscribed", controller=target[0], occurred_at=LATER,
                                 subject={"id": target[1]}, list="*", channel="*", pii=...))
        second = assert_table_equals_permits(ledger)
        assert second[target][0] is False and first != second


def test_erased_restricted_and_unsubscribed_subjects_are_not_permitted(ledger: Ledger) -> None:
    """The fast variant: three subjects, the rows that matter, each against permits()."""
    def publish(when: str, event_type: str, email: str, **kw: Any) -> None:
        ledger.clock = FixedClock(parse_timestamp(when))
        ledger.record(make_event(event_type, controller="cowrite", occurred_at=when,
                                 subject={"email": email}, **kw))

    for email in ("a@example.org", "b@example.org", "c@example.org"):
        publish("2026-01-01", "SubjectRegistered", email)
    for email in ("a@example.org", "b@example.org", "c@example.org"):
        publish("2026-01-02", "NewsletterSubscribed", email)
    publish("2026-02-01", "Unsubscribed", "b@example.org", pii=...)
    publish("2026-02-01", "RightsRequested", "c@example.org", request_id="rq-c", right="restriction",
            pii=...)
    refresh_permissions(ledger)
    rows = table(ledger)
    for email, permitted, status in (("a@example.org", True, "active"),
                                     ("b@example.org", False, "active"),
                                     ("c@example.org", False, "restricted")):
        subject = ledger.subject_id("cowrite", email=email)
        row = rows[("cowrite", subject, "newsletter", "email")]
        answer = permits(ledger, "newsletter", subject=subject, controller="cowrite",
                         channel="email").permission
        assert (row[0], row[1], row[2], row[4]) == (answer.permitted, answer.rule, answer.reason,
                                                    status)
        assert row[0] is permitted
    # Purposes no channel changes have one row, channel '*'.
    assert ("cowrite", ledger.subject_id("cowrite", email="a@example.org"), "service", "*") in rows


def test_project_permissions_fills_the_table_and_refuses_follow(data_dir: Path) -> None:
    data = str(data_dir)
    result = CliRunner().invoke(cli.main, ["--data", data, "project", "--follow", "--permissions"])
    assert (result.exit_code, result.stderr.count("\n")) == (2, 1), result.output
    result = CliRunner().invoke(cli.main, ["--data", data, "project", "--permissions"])
    assert result.exit_code == 0, result.output
    with Ledger.open(data) as ledger:
        assert table(ledger) == {}  # an empty log: the table exists, with no rows
