"""decisions, sweep and explain through the command line."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

import cli
from tests.conftest import make_event


def run(*args: str, input: str | None = None):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(cli.main, list(args), input=input)


@pytest.fixture
def data(tmp_path: Path) -> str:
    path = str(tmp_path / "d")
    assert run("--data", path, "init").exit_code == 0
    events = [
        make_event("SubjectRegistered", occurred_at="2025-06-01T10:00:00Z"),
        make_event("LoggedIn", occurred_at="2026-01-10T10:00:00Z"),
        make_event("SubjectRegistered", occurred_at="2025-06-01T10:00:00Z",
                   subject={"email": "bo@example.se"}),
        make_event("RightsRequested", occurred_at="2026-03-01T10:00:00Z",
                   subject={"email": "bo@example.se"}, request_id="rq-1", right="erasure"),
    ]
    lines = "".join(json.dumps(e) + "\n" for e in events)
    assert run("--data", path, "--now", "2026-03-02", "publish", "-", input=lines).exit_code == 0
    return path


def test_decisions_table_json_and_csv(data: str) -> None:
    as_json = run("--data", data, "--now", "2026-07-20", "decisions", "--json")
    assert as_json.exit_code == 0, as_json.output
    rows = json.loads(as_json.output)
    assert {(r["action"], r["rule"]) for r in rows} == {("notify", "inactivity_notice"),
                                                       ("pseudonymise", "erasure_request")}
    for r in rows:
        assert set(r) >= {"subject", "controller", "action", "due_at", "rule", "policy",
                          "policy_hash", "evidence"} and r["evidence"]
    as_csv = run("--data", data, "--now", "2026-07-20", "decisions", "--csv", "--action", "notify")
    (row,) = list(csv.DictReader(io.StringIO(as_csv.output)))
    assert row["due_at"].startswith("2026-06-26") and row["policy"] == "cowrite"
    table = run("--data", data, "--now", "2026-07-20", "decisions")
    assert "inactivity_notice" in table.output and "(2 rows)" in table.output


def test_decisions_as_of_a_past_knowledge_time(data: str) -> None:
    # On 2026-03-01 the ledger knew nothing yet (everything was recorded on 2026-03-02).
    result = run("--data", data, "--now", "2026-07-20", "decisions", "--as-of", "2026-03-01", "--json")
    assert result.exit_code == 0 and json.loads(result.output) == []


def test_sweep_dry_run_then_real_then_idempotent(data: str) -> None:
    dry = json.loads(run("--data", data, "--now", "2026-07-20", "sweep", "--dry-run", "--json").output)
    assert dry["decisions"]["notify"] == 1 and dry["appended"] == {}
    real = json.loads(run("--data", data, "--now", "2026-07-20", "sweep", "--json").output)
    # coegi's yearly review is recorded even with no coegi subjects
    assert real["appended"] == {"DeletionNoticeSent": 1, "RetentionReviewed": 1,
                                "RightsRequestClosed": 1, "SubjectPseudonymised": 1}
    again = json.loads(run("--data", data, "--now", "2026-07-20", "sweep", "--json").output)
    assert again["appended"] == {}
    text = run("--data", data, "--now", "2026-07-20", "sweep")
    assert text.exit_code == 0 and "appended: nothing" in text.output


def test_explain_shows_the_timeline_and_the_rule_chain(data: str) -> None:
    result = run("--data", data, "--now", "2026-07-20", "explain", "--email",
                 "anna.svensson@example.se", "--controller", "cowrite", "--json")
    assert result.exit_code == 0, result.output
    explained = json.loads(result.output)
    assert [e["type"] for e in explained["timeline"]] == ["SubjectRegistered", "LoggedIn"]
    chain = "\n".join(explained["rule_chain"])
    assert "erasure due = 2026-01-10 + P6M = 2026-07-10" in chain
    assert "notice due = 2026-07-10 - P14D = 2026-06-26" in chain
    assert explained["decision"]["action"] == "notify"
    text = run("--data", data, "--now", "2026-07-20", "explain", explained["subject"])
    assert text.exit_code == 0 and "Rule chain:" in text.output


@pytest.mark.parametrize(("args", "message"), [
    (("decisions", "--controller", "acme"), "unknown controller"),
    (("decisions", "--policy", "x.toml"), "--policy applies to one controller"),
    (("decisions", "--as-of", "soon"), "--as-of: not an ISO-8601"),
    (("decisions", "--json", "--csv"), "exclude each other"),
    (("explain", "abc"), "unknown subject"),
    (("explain",), "give a SUBJECT"),
    (("sweep", "--controller", "cowrite", "--policy", "/nonexistent/p.toml"), "cannot read policy"),
])
def test_usage_errors_are_one_line(data: str, args: tuple[str, ...], message: str) -> None:
    result = run("--data", data, "--now", "2026-07-20", *args)
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output
