"""Issue 12 §6: every query in docs/analysts.md runs, through `ledger query`, against a demo
ledger and answers its question (columns, plausible figures); on a demo swept every month the
erasure series is a series, not one month."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import cli

DOC = Path(__file__).resolve().parents[2] / "docs" / "analysts.md"


def doc_queries() -> dict[str, str]:
    """The SQL blocks of the doc by the heading above them."""
    found: dict[str, str] = {}
    heading = ""
    for block in re.split(r"^## ", DOC.read_text(encoding="utf-8"), flags=re.M)[1:]:
        heading = block.splitlines()[0].strip()
        for sql in re.findall(r"```sql\n(.*?)```", block, re.S):
            found[heading] = sql
    return found


QUERIES = doc_queries()
COLUMNS = {
    "Consents and withdrawals per month, controller and purpose":
        ["month", "controller", "purpose", "consents", "withdrawals"],
    "Erasures and pseudonymisations per month":
        ["month", "controller", "notices", "pseudonymisations", "erasures"],
    "Share of subjects inactive past their policy's threshold":
        ["controller", "subjects", "inactive", "share_inactive"],
    "Open rights requests past their one-month deadline":
        ["controller", "requested_right", "overdue", "oldest_due", "max_days_late"],
    "Disclosures per recipient kind":
        ["controller", "recipient_kind", "basis", "disclosures", "subjects", "recipients"],
}


def run_query(data: Path, sql: str) -> list[dict[str, Any]]:
    result = CliRunner().invoke(cli.main, ["--data", str(data), "query", sql, "--json"])
    assert result.exit_code == 0, result.output
    rows: list[dict[str, Any]] = json.loads(result.stdout)
    return rows


def check_answers(data: Path) -> dict[str, list[dict[str, Any]]]:
    assert set(QUERIES) == set(COLUMNS), "a query of docs/analysts.md has no check here"
    answers = {}
    for heading, sql in QUERIES.items():
        rows = run_query(data, sql)
        if heading != "Open rights requests past their one-month deadline":
            assert rows, heading
        for row in rows:
            assert list(row) == COLUMNS[heading], heading
        answers[heading] = rows
    consents = answers["Consents and withdrawals per month, controller and purpose"]
    assert {r["controller"] for r in consents} == {"coegi", "cowrite"}
    assert sum(r["consents"] for r in consents) > sum(r["withdrawals"] for r in consents) > 0
    for r in answers["Share of subjects inactive past their policy's threshold"]:
        assert 0 <= r["inactive"] <= r["subjects"] and 0 <= r["share_inactive"] <= 1
    return answers


def test_the_doc_queries_answer_on_the_demo(demo_data: Path) -> None:
    check_answers(demo_data)


@pytest.mark.slow
def test_on_a_demo_swept_every_month_erasures_are_a_monthly_series(
        tmp_path: Path) -> None:
    data = tmp_path / "data"
    result = CliRunner().invoke(cli.main, ["--data", str(data), "--now", "2026-11-01", "demo",
                                           "--subjects", "150", "--years", "2", "--seed", "3",
                                           "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    # 2024-11 .. 2026-10: a sweep after each month but the last (that one is the final sweep
    # at the clock, 2026-11-01)
    assert summary["monthly_sweeps"]["runs"] == 23
    series = check_answers(data)["Erasures and pseudonymisations per month"]
    months_with_notices = {r["month"] for r in series if r["notices"]}
    assert len(months_with_notices) >= 4, series
    # a second run publishes nothing and sweeps no past month (the clock never goes back)
    again = CliRunner().invoke(cli.main, ["--data", str(data), "--now", "2026-11-01", "demo",
                                          "--subjects", "150", "--years", "2", "--seed", "3",
                                          "--json"])
    assert again.exit_code == 0, again.output
    second = json.loads(again.stdout)
    assert second["already_published"] and second["monthly_sweeps"]["runs"] == 0
