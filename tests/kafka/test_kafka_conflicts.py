"""Row 6 on Kafka: the same event_id with other content is a conflict, also for a writer that
learnt the topic's ids by scanning it (the digest travels in the ``ledger.digest`` header)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ledger.app.service import Ledger
from ledger.domain.errors import InvalidEvent
from tests.conftest import make_event

NOW = "2026-03-05T12:00:00Z"


def test_row06_kafka_same_id_other_content_is_a_conflict(tmp_path: Path, kafka_url: str) -> None:
    data = tmp_path / "d"
    Ledger.init(data)
    given = make_event("ConsentGiven")
    withdrawn = make_event("ConsentWithdrawn", event_id=given["event_id"])
    with Ledger.open(data, log=kafka_url, now=NOW) as ledger:
        first = ledger.record(given)
        assert first.position is not None
        with pytest.raises(InvalidEvent, match=f"conflicts with the event at position {first.position}"):
            ledger.record(withdrawn)
        assert ledger.record(given).status == "duplicate"
    with Ledger.open(data, log=kafka_url, now=NOW) as again:  # a new writer: scans the topic
        lines = [json.dumps(e).encode() for e in (given, withdrawn, make_event("LoggedIn"))]
        report = again.publish(iter(lines), origin="k.jsonl")
        assert (report.accepted, report.duplicates, report.rejected, report.conflicts) == (1, 1, 1, 1)
        assert report.rejects[0].line == 2
        assert report.rejects[0].reason == (
            f"event_id: conflicts with the event at position {first.position} (same id, different content)")
        assert [e["line"] for e in again.dead_letters.read()][-1] == 2
        assert sum(1 for _ in again.log.read()) == 2
