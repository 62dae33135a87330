"""The same event_id with different content is a conflict, not a duplicate (SPEC §7a)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

import cli
from ledger.app.service import Ledger
from ledger.domain.errors import InvalidEvent
from tests.conftest import make_event


def _jsonl(*events: dict) -> bytes:
    return b"".join(json.dumps(e).encode() + b"\n" for e in events)


def test_row06_same_id_other_content_is_a_conflict_naming_the_position(ledger: Ledger) -> None:
    given = make_event("ConsentGiven")
    first = ledger.publish(iter([json.dumps(given).encode()]))
    assert first.accepted == 1
    position = first.last_position
    withdrawn = make_event("ConsentWithdrawn", event_id=given["event_id"])
    report = ledger.publish(iter(_jsonl(given, withdrawn).splitlines()), origin="in.jsonl")
    assert (report.accepted, report.duplicates, report.rejected, report.conflicts) == (0, 1, 1, 1)
    assert report.rejects[0].line == 2
    reason = report.rejects[0].reason
    assert reason == f"event_id: conflicts with the event at position {position} (same id, different content)"
    letters = list(ledger.dead_letters.read())
    assert letters[-1]["line"] == 2 and letters[-1]["reason"] == reason
    assert sum(1 for _ in ledger.log.read()) == 1


@pytest.mark.parametrize("change", [
    {"type": "ConsentWithdrawn", "purpose": "profiling", "via": "settings"},
    {"controller": "coegi"},
    {"subject": {"email": "someone.else@example.se"}},
    {"occurred_at": "2026-03-01T09:30:01Z"},
    {"ui_action": "OK"},
    {"pii": {"name": "Anna S"}},
    {"source": "app"},
])
def test_row06_each_content_field_counts(ledger: Ledger, change: dict) -> None:
    given = make_event("ConsentGiven")
    ledger.record(given)
    changed = {**given, **change}
    if changed["type"] == "ConsentWithdrawn":
        for k in ("notice_id", "notice_version", "notice_sha256", "language", "ui_action", "channel"):
            changed.pop(k)
    with pytest.raises(InvalidEvent, match="conflicts with the event at position 1"):
        ledger.record(changed)
    assert ledger.record(given).status == "duplicate"  # the same content still is a duplicate


def test_row06_the_same_id_twice_in_one_batch(ledger: Ledger) -> None:
    given = make_event("ConsentGiven")
    other = {**given, "pii": {"name": "Somebody"}}
    report = ledger.publish(iter(_jsonl(given, given, other).splitlines()))
    assert (report.accepted, report.duplicates, report.conflicts) == (1, 1, 1)


def test_row06_records_from_before_digests_are_compared_by_their_decoded_content(ledger: Ledger) -> None:
    given = make_event("ConsentGiven")
    ledger.record(given)
    con = ledger.log.datastore  # a log written before digests existed: no digest row
    with con.transaction(commit=True) as cursor:
        cursor.execute("DELETE FROM content_digests")
    assert ledger.record(given).status == "duplicate"
    with pytest.raises(InvalidEvent, match="conflicts with the event at position 1"):
        ledger.record({**given, "pii": {"name": "Changed"}})


def test_row06_cli_exits_1_and_counts_the_conflict(tmp_path: Path) -> None:
    data = str(tmp_path / "d")
    runner = CliRunner()
    assert runner.invoke(cli.main, ["--data", data, "init"]).exit_code == 0
    given = make_event("ConsentGiven")
    now = ["--data", data, "--now", "2026-03-05T12:00:00Z"]
    assert runner.invoke(cli.main, [*now, "publish", "-"], input=_jsonl(given)).exit_code == 0
    withdrawn = make_event("ConsentWithdrawn", event_id=given["event_id"])
    result = runner.invoke(cli.main, [*now, "publish", "-", "--json"], input=_jsonl(withdrawn))
    assert result.exit_code == 1
    assert json.loads(result.stdout) == {"accepted": 0, "duplicates": 0, "rejected": 1, "conflicts": 1}
    plain = runner.invoke(cli.main, [*now, "publish", "-"], input=_jsonl(withdrawn))
    assert plain.exit_code == 1
    assert "rejected 1 (1 conflict)" in plain.stdout
    assert "conflicts with the event at position 1" in plain.stderr
    letters = runner.invoke(cli.main, ["--data", data, "dead-letters", "--json"])
    assert sum("conflicts with the event" in e["reason"] for e in json.loads(letters.stdout)) == 2
