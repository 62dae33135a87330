"""``ledger project`` / ``replay`` / ``query`` through the CLI, and the example queries of
docs/projections.md against a projected file opened with the plain duckdb module."""

from __future__ import annotations

import csv
import io
import itertools
import json
import re
import threading
import time
from pathlib import Path

import duckdb
import pytest
from click.testing import CliRunner

import projections
from cli import main
from ledger.app.service import Ledger
from tests.conftest import make_event

DOCS = Path(__file__).resolve().parents[2] / "docs" / "projections.md"


@pytest.fixture
def history(ledger: Ledger) -> Ledger:
    """Two days of events for two people, recorded on two different days."""
    day1 = [
        make_event("SubjectRegistered", occurred_at="2025-06-01T08:00:00Z"),
        make_event("ConsentGiven", occurred_at="2025-06-01T08:01:00Z"),
        make_event("NewsletterSubscribed", occurred_at="2025-06-01T08:02:00Z"),
        make_event("LoggedIn", subject={"email": "bo@example.se"}, occurred_at="2025-06-01T09:00:00Z"),
        make_event("ConsentGiven", subject={"email": "bo@example.se"}, purpose="profiling",
                   occurred_at="2025-06-01T09:01:00Z"),
        make_event("DataShared", occurred_at="2025-06-01T10:00:00Z"),
    ]
    day2 = [
        make_event("ConsentWithdrawn", subject={"email": "bo@example.se"}, purpose="profiling",
                   occurred_at="2026-03-02T09:00:00Z"),
        make_event("RightsRequested", request_id="rq-7", right="access",
                   occurred_at="2026-03-02T10:00:00Z"),
    ]
    from ledger.domain.clock import FixedClock
    from ledger.domain.timeutil import parse_timestamp

    ledger.clock = FixedClock(parse_timestamp("2025-06-02T00:00:00Z"))
    ledger.record_many(day1)
    ledger.clock = FixedClock(parse_timestamp("2026-03-03T00:00:00Z"))
    ledger.record_many(day2)
    return ledger


def run(data_dir: Path, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, ["--data", str(data_dir), *args])
    return result.exit_code, result.stdout, result.stderr


def test_project_is_incremental_and_fingerprints(history: Ledger, data_dir: Path) -> None:
    code, out, err = run(data_dir, "project")
    assert code == 0, err
    assert re.match(r"projected 8 events; position 8 \(", out)
    code, out, _ = run(data_dir, "project", "--fingerprint")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].startswith("projected 0 events; position 8")
    fingerprint = lines[1].split()[1]
    code, out, _ = run(data_dir, "project", "--rebuild", "--json")
    report = json.loads(out)
    assert (report["events"], report["position"], report["errors"]) == (8, 8, 0)
    code, out, _ = run(data_dir, "project", "--fingerprint", "--json")
    assert json.loads(out)["fingerprint"] == fingerprint


def test_replay_as_of_sees_only_what_was_known(history: Ledger, data_dir: Path,
                                               tmp_path: Path) -> None:
    into = tmp_path / "audit.duckdb"
    code, out, err = run(data_dir, "replay", "--as-of", "2025-12-31", "--into", str(into))
    assert code == 0, err
    assert "projected 6 events" in out and "as of 2025-12-31T00:00:00.000000Z" in out
    code, out, _ = run(data_dir, "query", "--db", str(into), "--json",
                       "SELECT purpose, status FROM consent_state ORDER BY purpose")
    assert json.loads(out) == [{"purpose": "newsletter", "status": "granted"},
                               {"purpose": "profiling", "status": "granted"}]
    code, _, err = run(data_dir, "replay", "--as-of", "2025-12-31", "--into", str(into))
    assert code == 2 and "exists (use --force" in err
    code, _, err = run(data_dir, "replay", "--as-of", "yesterday", "--into", str(into))
    assert code == 2 and err.startswith("Error: --as-of: not an ISO-8601 timestamp")


def test_query_table_json_csv_and_errors(history: Ledger, data_dir: Path) -> None:
    assert run(data_dir, "query", "SELECT 1")[0] == 2  # not projected yet
    run(data_dir, "project")
    sql = "SELECT purpose, status FROM consent_state ORDER BY purpose"
    code, out, _ = run(data_dir, "query", sql)
    assert code == 0
    assert out.splitlines()[0].split() == ["purpose", "status"]
    assert out.splitlines()[-1] == "(2 rows)"
    code, out, _ = run(data_dir, "query", "--csv", sql)
    assert list(csv.reader(io.StringIO(out))) == [
        ["purpose", "status"], ["newsletter", "granted"], ["profiling", "withdrawn"]]
    # no rows (issue 12 §8): --csv never prints a lone header a script would take for a value
    none = "SELECT subject FROM consent_state WHERE purpose = 'no such purpose'"
    code, out, err = run(data_dir, "query", "--csv", none)
    assert (code, out) == (1, "") and err == "Error: no rows (give --allow-empty to print only the header)\n"
    assert run(data_dir, "query", "--csv", "--allow-empty", none)[:2] == (0, "subject\n")
    assert run(data_dir, "query", "--json", none)[:2] == (0, "[]\n")
    code, _, err = run(data_dir, "query", "SELEC nonsense")
    assert code == 2 and err.startswith("Error: query: Parser Error") and "\n" == err[-1]
    assert err.count("\n") == 1
    code, _, err = run(data_dir, "query", "DELETE FROM events")
    assert code == 2 and "read-only" in err
    code, _, err = run(data_dir, "query", "COPY events TO 'out.csv'")
    assert code == 2 and "refused (COPY statement)" in err and "no file access" in err


def test_doc_example_queries_run_with_plain_duckdb(history: Ledger, data_dir: Path) -> None:
    projections.project(history)
    queries = re.findall(r"```sql\n(.*?)```", DOCS.read_text(encoding="utf-8"), re.DOTALL)
    assert len(queries) >= 8
    con = duckdb.connect(str(data_dir / "projections.duckdb"), read_only=True)
    try:
        results = [con.execute(q).fetchall() for q in queries]
    finally:
        con.close()
    granted_newsletter, per_purpose, inactive, open_requests, timeline = results[:5]
    assert len(granted_newsletter) == 1
    assert ("cowrite", "profiling", 0, 1, 0) in per_purpose
    assert len(inactive) == 2  # both last active in June 2025
    assert [r[1] for r in open_requests] == ["rq-7"]
    assert timeline and all(a[1] <= b[1] for a, b in itertools.pairwise(timeline))


def test_follow_projects_new_events_until_stopped(history: Ledger, data_dir: Path) -> None:
    stop = threading.Event()
    seen: list[int] = []  # positions reported by the follower
    totals: list[projections.ProjectReport] = []

    def follow() -> None:
        totals.append(projections.follow(history, stop=stop, poll_seconds=0.05,
                                         on_progress=lambda r: seen.append(r.position)))

    follower = threading.Thread(target=follow)
    follower.start()
    try:
        wait_for(lambda: 8 in seen)
        history.record_many([make_event("LoggedIn", occurred_at="2026-03-03T00:00:00Z")])
        wait_for(lambda: 9 in seen)
    finally:
        stop.set()
        follower.join(timeout=30)
    assert totals[0].events == 9 and totals[0].position == 9


def wait_for(condition, seconds: float = 20) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_project_on_an_empty_log(data_dir: Path) -> None:
    code, out, _ = run(data_dir, "project")
    assert code == 0 and out.startswith("projected 0 events; position 0")
