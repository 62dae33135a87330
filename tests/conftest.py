from __future__ import annotations

import itertools
import json
import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import duckdb
import pytest

import projections
from ledger.app.service import Ledger
from ledger.contracts.schemas import default_registry
from ledger.domain.clock import FixedClock
from ledger.domain.events import Event
from ledger.domain.intake import Intake
from ledger.domain.timeutil import parse_timestamp

_ids = itertools.count(1)

# A valid body for every producer event type (sweep types are built by the ledger itself).
BODIES: dict[str, dict[str, Any]] = {
    "SubjectRegistered": {"relation": "user", "account_ref": "cw-000042"},
    "PersonalDataUpdated": {"fields": ["address"], "origin": "register:SPAR"},
    "NewsletterSubscribed": {"list": "weekly", "channel": "email"},
    "Unsubscribed": {"list": "*", "channel": "*", "via": "link"},
    "ConsentGiven": {
        "purpose": "newsletter", "notice_id": "nl-terms", "notice_version": "3",
        "notice_sha256": "a" * 64, "language": "sv", "ui_action": "Skicka", "channel": "web",
    },
    "ConsentWithdrawn": {"purpose": "profiling", "via": "settings"},
    "ObjectionRaised": {"purpose": "marketing", "via": "email"},
    "LoggedIn": {"app": "cowrite", "method": "bankid"},
    "ServiceUsed": {"app": "cowrite", "feature": "cv_builder"},
    "InvoiceUsageRecorded": {
        "billed_party": "Matchning Norr AB", "units": 3, "unit": "document",
        "amount_minor": 44_700, "currency": "SEK", "invoice_ref": "INV-2026-0042",
    },
    "DataShared": {"recipient_kind": "coach", "recipient": "Matchning Norr AB", "basis": "consent"},
    "RightsRequested": {"request_id": "rq-1", "right": "erasure"},
    "RightsRequestClosed": {"request_id": "rq-1", "outcome": "fulfilled"},
}


@pytest.fixture(scope="module")
def intake() -> Intake:
    """The pure intake with the default controllers (no data directory)."""
    return Intake(default_registry(), ["coegi", "cowrite"])


def event_id() -> str:
    # Unique across processes too (the pid above the counter, clear of the version and variant
    # bits): a helper process restarts the counter, and a reused id with other content is a
    # conflict (issue 9, row 6).
    return str(uuid.UUID(int=(os.getpid() << 80) | next(_ids), version=4))


def make_event(event_type: str = "LoggedIn", **overrides: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "type": event_type,
        "event_id": event_id(),
        "controller": "cowrite",
        "occurred_at": "2026-03-01T09:30:00Z",
        "source": "web",
        "actor": "subject",
        "subject": {"email": "Anna.Svensson@example.se"},
        **BODIES[event_type],
        "pii": {"name": "Anna Svensson", "phone": "+46 70 123 45 67"},
    }
    event.update(overrides)
    return {k: v for k, v in event.items() if v is not ...}


# The demo (``ledger demo``) of a few subjects: built once per test process, read-only.
DEMO_SUBJECTS, DEMO_SEED, DEMO_NOW = 80, 7, "2026-11-01"


@pytest.fixture(scope="session")
def demo_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data directory after ``ledger demo``; shared by the modules of a test process, so a
    test that writes to it copies it first."""
    from click.testing import CliRunner

    import cli

    path = tmp_path_factory.mktemp("demo") / "ledger-data"
    result = CliRunner().invoke(cli.main, ["--data", str(path), "--now", DEMO_NOW, "demo",
                                           "--subjects", str(DEMO_SUBJECTS), "--sweeps", "end", "--seed",
                                           str(DEMO_SEED), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert summary["rejected"] == 0 and summary["accepted"] > DEMO_SUBJECTS * 5
    assert set(summary["subjects"]) == {"coegi", "cowrite"}
    return path


@pytest.fixture(scope="session")
def initialised(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``Ledger.init`` once per test process (it fsyncs a key vault: slow on a busy disk)."""
    path = tmp_path_factory.mktemp("initialised") / "ledger-data"
    Ledger.init(path)
    return path


@pytest.fixture
def data_dir(initialised: Path, tmp_path: Path) -> Path:
    """A freshly initialised data directory: a copy of ``initialised``, modes kept (so the
    tests of one process share its master key and controller secrets)."""
    path = tmp_path / "ledger-data"
    shutil.copytree(initialised, path)
    return path


@pytest.fixture
def ledger(data_dir: Path) -> Iterator[Ledger]:
    with Ledger.open(data_dir) as opened:
        opened.clock = FixedClock(parse_timestamp("2026-03-05T12:00:00Z"))
        yield opened


# --- projections ---------------------------------------------------------------------

ANNA = "Anna.Svensson@example.se"


@pytest.fixture
def anna(ledger: Ledger) -> str:
    return ledger.subject_id("cowrite", email=ANNA)


@pytest.fixture
def sweep_event(ledger: Ledger, anna: str) -> Callable[..., Event]:
    """Records an event the retention sweep would append (producers may not publish them)."""

    def record(event_type: str, occurred_at: str, **body: Any) -> Event:
        t = parse_timestamp(occurred_at)
        event = Event(event_type, str(uuid.uuid4()), "cowrite", anna, t, ledger.clock.now(),
                      "ledger", "system:sweep", body)
        ledger.record(event)
        return event

    return record


@pytest.fixture
def projected(ledger: Ledger, tmp_path: Path) -> Iterator[Callable[[], duckdb.DuckDBPyConnection]]:
    """Projects into a fresh file and opens it read-only with the plain duckdb module."""
    path = tmp_path / "projections.duckdb"
    connections: list[duckdb.DuckDBPyConnection] = []

    def run() -> duckdb.DuckDBPyConnection:
        for c in connections:
            c.close()
        projections.project(ledger, path=path)
        connections.append(duckdb.connect(str(path), read_only=True))
        return connections[-1]

    yield run
    for c in connections:
        c.close()
