"""The ProjectionStore contract (projections/store/read_model.py): one test suite, subclassed
once per adapter (a DuckDB file and an in-memory DuckDB, in
tests/integration/test_projection_store.py), like the EventLog and KeyVault contracts in
log_contract.py and vault_contract.py. It states what every reader relies on: the position the
tables reflect, the tables there are, and a view that sees the projected rows, runs the read
queries (temporary tables included) and cannot change the tables."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from ledger.app.service import Ledger
from ledger.domain.errors import LedgerError
from ledger.domain.retention.policy import load_policy
from ledger.domain.timeutil import parse_timestamp
from projections.store.read_model import ProjectionStore
from projections.store.retention_queries import population_decisions
from projections.store.subject_queries import controllers_knowing, timeline
from tests.conftest import ANNA, make_event

# Brings the store up to date with the ledger's log.
Project = Callable[[], None]

# The tables every reader may query (SPEC §4).
READ_TABLES = {"activity_clock", "consent_state", "disclosures", "events", "ledger_position",
               "projection_errors", "pseudonymisation_status", "retention_decisions",
               "rights_requests", "subscriptions"}


class ProjectionStoreContract:
    @pytest.fixture
    def store(self) -> ProjectionStore:
        raise NotImplementedError

    @pytest.fixture
    def project(self) -> Project:
        raise NotImplementedError

    # position -----------------------------------------------------------------------------
    def test_nothing_projected_is_position_zero(self, store: ProjectionStore) -> None:
        assert store.position() == 0

    def test_the_position_follows_the_projected_log(self, ledger: Ledger, store: ProjectionStore,
                                                    project: Project) -> None:
        ledger.record_many([make_event("SubjectRegistered"), make_event("LoggedIn"),
                            make_event("ServiceUsed")])
        project()
        assert store.position() == 3
        ledger.record_many([make_event("LoggedIn"), make_event("LoggedIn")])
        assert store.position() == 3  # the store moves only when projected
        project()
        assert store.position() == 5

    # tables -------------------------------------------------------------------------------
    def test_the_read_tables_are_there_once_projected(self, ledger: Ledger, store: ProjectionStore,
                                                      project: Project) -> None:
        ledger.record(make_event("SubjectRegistered"))
        project()
        tables = store.tables()
        assert READ_TABLES <= set(tables)
        assert tables == sorted(tables)

    # the read-only view -------------------------------------------------------------------
    def test_the_view_sees_the_projected_rows(self, ledger: Ledger, store: ProjectionStore,
                                              project: Project) -> None:
        ledger.record_many([make_event("SubjectRegistered"), make_event("LoggedIn")])
        project()
        anna = ledger.subject_id("cowrite", email=ANNA)
        with store.read_only() as con:
            assert controllers_knowing(con, anna) == ["cowrite"]
            assert [e.type for e in timeline(con, "cowrite", anna)] == ["SubjectRegistered",
                                                                         "LoggedIn"]

    def test_the_view_runs_the_decision_queries(self, ledger: Ledger, store: ProjectionStore,
                                                project: Project) -> None:
        """The population decisions are computed into a temporary table on the view."""
        ledger.record(make_event("SubjectRegistered"))
        project()
        with store.read_only() as con:
            decisions = population_decisions(con, {"cowrite": load_policy("cowrite")},
                                             parse_timestamp("2026-03-05T12:00:00Z"))
        assert [(d.controller, d.action) for d in decisions] == [("cowrite", "keep")]

    @pytest.mark.parametrize("statement", [
        "DELETE FROM events",
        "INSERT INTO ledger_position VALUES ('p', 'l', 0, 99, NULL, 2, NULL)",
        "CREATE TABLE intruder (i INTEGER)",
        "DROP TABLE consent_state",
    ])
    def test_the_view_cannot_change_the_tables(self, ledger: Ledger, store: ProjectionStore,
                                               project: Project, statement: str) -> None:
        ledger.record_many([make_event("SubjectRegistered"), make_event("LoggedIn")])
        project()
        tables = store.tables()
        with store.read_only() as con, pytest.raises(LedgerError):
            con.execute(statement)
        assert store.position() == 2 and store.tables() == tables
        with store.read_only() as con:
            assert con.execute("SELECT count(*) FROM events").fetchone() == (2,)

    def test_the_view_is_closed_on_leaving(self, ledger: Ledger, store: ProjectionStore,
                                           project: Project) -> None:
        ledger.record(make_event("SubjectRegistered"))
        project()
        with store.read_only() as con:
            pass
        with pytest.raises(LedgerError, match="closed"):
            con.execute("SELECT 1")
