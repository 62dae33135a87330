"""The baseline for bench_projection.py: the projection a user of the ``eventsourcing`` library
would write first. One aggregate per subject, events decoded and applied one by one, and each
event's changed rows plus the tracking position written row by row in one transaction per
event (as ``eventsourcing.projection.Projection.process_event`` does with its view)."""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass, field
from functools import singledispatchmethod
from pathlib import Path
from typing import Any

import duckdb
from eventsourcing.persistence import Tracking, TrackingRecorder
from eventsourcing.projection import Projection

from ledger.adapters.sqlite_log import SQLiteEventLog
from ledger.contracts.codec import AvroCodec
from ledger.contracts.schemas import default_registry
from ledger.domain.events import Event
from ledger.domain.vocabulary import ACTIVITY_TYPES


@dataclass
class SubjectAggregate:
    """Everything projected about one subject, mutated event by event."""

    consents: dict[str, tuple[str, int, int]] = field(default_factory=dict)  # purpose -> (status, at, pos)
    first_seen_at: int | None = None
    last_activity_at: int | None = None
    last_event_at: int | None = None

    def apply(self, e: Event, position: int) -> None:
        at = e.occurred_at
        self.first_seen_at = at if self.first_seen_at is None else min(self.first_seen_at, at)
        self.last_event_at = at if self.last_event_at is None else max(self.last_event_at, at)
        if e.type in ACTIVITY_TYPES:
            self.last_activity_at = at if self.last_activity_at is None else max(self.last_activity_at, at)
        status = {"ConsentGiven": "granted", "ConsentWithdrawn": "withdrawn",
                  "ObjectionRaised": "objected"}.get(e.type)
        if status:
            old = self.consents.get(e.body["purpose"])
            if old is None or (at, position) > (old[1], old[2]):
                self.consents[e.body["purpose"]] = (status, at, position)


class NaiveView(TrackingRecorder):
    """The materialised view: DuckDB (the projection's target) or SQLite (the row store an
    eventsourcing user might reach for first)."""

    def __init__(self, path: Path, store: str = "duckdb") -> None:
        if store == "sqlite":
            self.con: Any = sqlite3.connect(str(path), isolation_level=None)
            self.con.execute("PRAGMA journal_mode=WAL")
        else:
            self.con = duckdb.connect(str(path))
        self.con.execute("CREATE TABLE events (position BIGINT, event_id VARCHAR, type VARCHAR, "
                         "controller VARCHAR, subject VARCHAR, occurred_at BIGINT, body VARCHAR)")
        self.con.execute("CREATE TABLE consent_state (controller VARCHAR, subject VARCHAR, "
                         "purpose VARCHAR, status VARCHAR, since BIGINT, position BIGINT, "
                         "PRIMARY KEY (controller, subject, purpose))")
        self.con.execute("CREATE TABLE activity_clock (controller VARCHAR, subject VARCHAR, "
                         "first_seen_at BIGINT, last_activity_at BIGINT, last_event_at BIGINT, "
                         "PRIMARY KEY (controller, subject))")
        self.con.execute("CREATE TABLE tracking (name VARCHAR PRIMARY KEY, position BIGINT)")

    def insert_tracking(self, tracking: Tracking) -> None:
        self.con.execute("INSERT OR REPLACE INTO tracking VALUES (?, ?)",
                         [tracking.application_name, tracking.notification_id])

    def max_tracking_id(self, application_name: str) -> int | None:
        row = self.con.execute("SELECT position FROM tracking WHERE name = ?",
                               [application_name]).fetchone()
        return None if row is None else row[0]


class NaiveProjection(Projection[NaiveView]):
    name = "naive"

    def __init__(self, view: NaiveView, commit_every: int = 1) -> None:
        super().__init__(view)
        self.aggregates: dict[tuple[str, str], SubjectAggregate] = {}
        self.commit_every = commit_every  # 1: a transaction per event, as process_event does
        self.pending = 0

    @singledispatchmethod
    def process_event(self, domain_event: Any, tracking: Tracking) -> None:
        raise NotImplementedError

    @process_event.register
    def _(self, e: Event, tracking: Tracking) -> None:
        key = (e.controller, e.subject)
        agg = self.aggregates.setdefault(key, SubjectAggregate())
        agg.apply(e, tracking.notification_id)
        con = self.view.con
        if self.pending == 0:
            con.execute("BEGIN")
        con.execute("INSERT INTO events VALUES (?, ?, ?, ?, ?, ?, ?)",
                    [tracking.notification_id, e.event_id, e.type, e.controller, e.subject,
                     e.occurred_at, repr(e.body)])
        con.execute("INSERT OR REPLACE INTO activity_clock VALUES (?, ?, ?, ?, ?)",
                    [*key, agg.first_seen_at, agg.last_activity_at, agg.last_event_at])
        if "purpose" in e.body and e.type != "RightsRequested":
            purpose = e.body["purpose"]
            if purpose in agg.consents:
                status, at, pos = agg.consents[purpose]
                con.execute("INSERT OR REPLACE INTO consent_state VALUES (?, ?, ?, ?, ?, ?)",
                            [*key, purpose, status, at, pos])
        self.view.insert_tracking(tracking)
        self.pending += 1
        if self.pending >= self.commit_every:
            con.execute("COMMIT")
            self.pending = 0

    def flush(self) -> None:
        if self.pending:
            self.view.con.execute("COMMIT")
            self.pending = 0


def run_naive(data_dir: Path, target: Path, limit: int, max_seconds: float,
              commit_every: int = 1, store: str = "duckdb") -> tuple[int, float]:
    codec = AvroCodec(default_registry())
    log = SQLiteEventLog(data_dir / "log.sqlite")
    projection = NaiveProjection(NaiveView(target, store), commit_every)
    started = time.perf_counter()
    n = 0
    for record in log.read(1, limit=limit):
        projection.process_event(codec.decode(record.payload), Tracking("embedded", record.position))
        n += 1
        if n % 1000 == 0 and time.perf_counter() - started > max_seconds:
            break
    projection.flush()
    return n, time.perf_counter() - started
