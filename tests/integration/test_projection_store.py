"""The ProjectionStore contract (projection_store_contract.py) against both adapters — a DuckDB
file and an in-memory DuckDB — and the one as-of opener every reader uses
(``projections.store.opener.open_read_model``)."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

import projections
from ledger.app.service import Ledger
from ledger.domain.clock import FixedClock
from ledger.domain.errors import UsageError
from ledger.domain.timeutil import parse_timestamp
from projections.engine.projector import make_projector
from projections.store.opener import needs_replay, open_read_model
from projections.store.read_model import (
    InMemoryProjections,
    ProjectionsFile,
    ProjectionStore,
    ReadConnection,
)
from tests.conftest import make_event
from tests.integration.projection_store_contract import Project, ProjectionStoreContract


class TestProjectionsFile(ProjectionStoreContract):
    @pytest.fixture
    def path(self, tmp_path: Path) -> Path:
        return tmp_path / "projections.duckdb"

    @pytest.fixture
    def store(self, path: Path) -> ProjectionStore:
        return ProjectionsFile(path)

    @pytest.fixture
    def project(self, ledger: Ledger, path: Path) -> Project:
        def run() -> None:
            projections.project(ledger, path=path)

        return run

    def test_a_missing_file_has_no_tables(self, store: ProjectionStore) -> None:
        assert store.tables() == []


class TestInMemoryProjections(ProjectionStoreContract):
    @pytest.fixture
    def memory(self, ledger: Ledger) -> Iterator[InMemoryProjections]:
        store = InMemoryProjections(ledger.registry)
        yield store
        store.close()

    @pytest.fixture
    def store(self, memory: InMemoryProjections) -> ProjectionStore:
        return memory

    @pytest.fixture
    def project(self, ledger: Ledger, memory: InMemoryProjections) -> Project:
        def run() -> None:
            make_projector(ledger, memory.store).run()

        return run


# --- the one as-of opener ------------------------------------------------------------------

BEFORE, AFTER = "2026-03-05T12:00:00Z", "2026-03-06T12:00:00Z"


def _count(con: ReadConnection) -> int:
    row = con.execute("SELECT count(*) FROM events").fetchone()
    assert row is not None
    return int(row[0])


@pytest.fixture
def two_days(ledger: Ledger) -> Ledger:
    """Two events recorded on the 5th, one on the 6th (knowledge time)."""
    ledger.record_many([make_event("SubjectRegistered"), make_event("LoggedIn")])
    ledger.clock = FixedClock(parse_timestamp(AFTER))
    ledger.record(make_event("ServiceUsed"))
    return ledger


def test_now_reads_the_live_projections_brought_up_to_date(two_days: Ledger) -> None:
    live = ProjectionsFile(two_days.data_dir / projections.PROJECTIONS_FILE)
    assert live.position() == 0
    with open_read_model(two_days) as con:
        assert _count(con) == 3
    assert live.position() == 3


def test_a_time_before_the_last_record_reads_a_replay_removed_afterwards(
        two_days: Ledger, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # where the replay is built
    assert needs_replay(two_days, parse_timestamp(BEFORE))
    with open_read_model(two_days, as_of=parse_timestamp(BEFORE)) as con:
        assert _count(con) == 2  # the record of the 6th was not known yet
        assert list(tmp_path.glob("ledger-as-of-*/as-of.duckdb"))
    assert not list(tmp_path.glob("ledger-as-of-*"))
    assert not (two_days.data_dir / projections.PROJECTIONS_FILE).exists()  # the live file untouched


@pytest.mark.parametrize("as_of", [AFTER, "2030-01-01T00:00:00Z"])
def test_a_time_at_or_after_the_last_record_reads_the_live_projections(
        two_days: Ledger, as_of: str) -> None:
    assert not needs_replay(two_days, parse_timestamp(as_of))
    with open_read_model(two_days, as_of=parse_timestamp(as_of)) as con:
        assert _count(con) == 3
    assert ProjectionsFile(two_days.data_dir / projections.PROJECTIONS_FILE).position() == 3


def test_a_given_file_is_read_as_it_is(two_days: Ledger, tmp_path: Path) -> None:
    earlier = tmp_path / "earlier.duckdb"
    projections.replay(two_days, parse_timestamp(BEFORE), earlier)
    with open_read_model(two_days, path=earlier) as con:
        assert _count(con) == 2
    assert not (two_days.data_dir / projections.PROJECTIONS_FILE).exists()  # nothing projected
    with pytest.raises(UsageError, match="no projections at"):
        with open_read_model(two_days, path=tmp_path / "missing.duckdb"):
            pass
