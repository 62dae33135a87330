from __future__ import annotations

import itertools
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from ledger.adapters.sqlite_log import SQLiteEventLog
from ledger.ports import EventLog
from tests.integration.log_contract import EventLogContract, pending


class TestSQLiteEventLog(EventLogContract):
    @pytest.fixture
    def log(self, tmp_path: Path) -> Iterator[EventLog]:
        log = SQLiteEventLog(tmp_path / "log.sqlite")
        yield log
        log.close()


def test_the_log_survives_reopening(tmp_path: Path) -> None:
    log = SQLiteEventLog(tmp_path / "log.sqlite")
    log.append([pending(1), pending(2)])
    head = log.head()
    log.close()
    reopened = SQLiteEventLog(tmp_path / "log.sqlite")
    assert reopened.head() == head
    reopened.append([pending(3)])
    assert [r.recorded_at for r in reopened.read()] == [1, 2, 3]
    reopened.close()


def test_it_is_the_eventsourcing_table_in_wal_mode(tmp_path: Path) -> None:
    log = SQLiteEventLog(tmp_path / "log.sqlite")
    log.append([pending(1)])
    db = sqlite3.connect(tmp_path / "log.sqlite")
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    columns = [row[1] for row in db.execute("PRAGMA table_info(stored_events)")]
    assert columns == ["originator_id", "originator_version", "topic", "state"]
    db.close()
    log.close()


def test_two_writers_keep_one_chain(tmp_path: Path) -> None:
    """Two connections (as two publisher processes would) interleave appends; the IMMEDIATE
    transaction keeps positions gapless and the chain intact."""
    a = SQLiteEventLog(tmp_path / "log.sqlite")
    b = SQLiteEventLog(tmp_path / "log.sqlite")
    for i in range(20):
        (a if i % 2 else b).append([pending(i), pending(i)])
    records = list(a.read())
    assert [r.position for r in records] == list(range(1, 41))
    for before, after in itertools.pairwise(records):
        assert after.prev_hash == before.hash
    a.close()
    b.close()
