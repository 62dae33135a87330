"""The embedded event log: the ``eventsourcing`` library's SQLite application recorder.

Its ``stored_events`` table gives durable (WAL, synchronous=FULL), gapless, totally ordered
positions (the rowid, which the library calls the notification id). Each event is stored as
one row: ``originator_id`` = event_id (the table's primary key makes appends idempotent),
``originator_version`` = 1, ``topic`` = the event type, ``state`` = the record frame
``prev_hash (32) || recorded_at (8, big-endian) || Avro single-object bytes``.

A side table ``content_digests (position, digest)``, written in the same transaction, holds
each record's content digest (``PendingRecord.digest``): the same event id with another digest
is a ``Conflict``. Records appended before digests existed have no row there."""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Iterator, Sequence
from pathlib import Path
from uuid import UUID

from eventsourcing.persistence import PersistenceError, StoredEvent
from eventsourcing.sqlite import SQLiteApplicationRecorder, SQLiteDatastore

from ledger.adapters.files import storage_error
from ledger.config import private_files
from ledger.domain.chain import (
    GENESIS_HASH,
    Conflict,
    LogHead,
    LogRecord,
    PendingRecord,
    RecordPage,
)
from ledger.domain.errors import ClockError, LedgerError, LogError
from ledger.domain.timeutil import format_micros
from ledger.ports import EventLog

_FRAME = 40  # prev_hash (32) + recorded_at (8)
_ORIGINATOR_VERSION = 1
_IN_CHUNK = 500  # bound on SQL parameters per IN (...) query
_CACHE_KIB = 64 * 1024  # page cache for appends: the event-id index is touched at random
# Checkpoint less often than SQLite's default (1,000 pages): random index pages dirtied by
# many commits are then copied into the database file once instead of once per commit.
_CHECKPOINT_PAGES = 20_000


def _log_error(path: Path, e: Exception, doing: str) -> LedgerError:
    """A damaged log.sqlite or a full disk: one clear error (exit 2) naming the file and what
    to do; any other database error stays a LogError."""
    error = storage_error(path, e, what="event log", doing=doing,
                          remedy="restore it from a backup (`ledger audit verify` checks one)")
    return error or LogError(f"{doing} {path} failed: {e}")


def _frame(prev_hash: bytes, recorded_at: int, payload: bytes) -> bytes:
    return prev_hash + recorded_at.to_bytes(8, "big", signed=True) + payload


def _unframe(position: int, originator_id: str, topic: str, state: bytes) -> LogRecord:
    if len(state) < _FRAME:
        raise LogError(f"position {position}: record frame is truncated")
    return LogRecord(
        position=position,
        event_id=str(UUID(originator_id)),
        event_type=topic,
        recorded_at=int.from_bytes(state[32:40], "big", signed=True),
        prev_hash=bytes(state[:32]),
        payload=bytes(state[_FRAME:]),
    )


class SQLiteEventLog(EventLog):
    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self.datastore = SQLiteDatastore(str(path), originator_id_type="uuid", lock_timeout=30)
            self.recorder = SQLiteApplicationRecorder(self.datastore)
            with private_files():  # log.sqlite is 0600; SQLite gives -wal/-shm the same mode
                self.recorder.create_table()
                # Content digests by position (sequential inserts: cheap), written in the
                # append's transaction; records from before digests have none.
                with self.datastore.transaction(commit=True) as cursor:
                    cursor.execute("CREATE TABLE IF NOT EXISTS content_digests "
                                   "(position INTEGER PRIMARY KEY, digest BLOB NOT NULL)")
        except (PersistenceError, sqlite3.Error) as e:
            if hasattr(self, "datastore"):
                self.datastore.close()
            raise _log_error(path, e, "opening") from None

    def append(self, records: Sequence[PendingRecord]) -> list[int | Conflict | None]:
        if not records:
            return []
        try:
            with self.datastore.get_connection(commit=True) as conn:
                cursor = conn.cursor()
                cursor.execute("PRAGMA synchronous=FULL")
                cursor.execute(f"PRAGMA cache_size=-{_CACHE_KIB}")
                cursor.execute(f"PRAGMA wal_autocheckpoint={_CHECKPOINT_PAGES}")
                # IMMEDIATE: take the write lock before reading the head, so the chain and the
                # duplicate check cannot race another writer process.
                cursor.execute("BEGIN IMMEDIATE")
                try:
                    result = self._append_locked(cursor, records)
                except BaseException:
                    conn.rollback()
                    raise
                conn.commit()
                return result
        except (PersistenceError, sqlite3.Error) as e:
            raise _log_error(self.path, e, "appending to") from None

    def _append_locked(self, cursor, records: Sequence[PendingRecord]) -> list[int | Conflict | None]:  # type: ignore[no-untyped-def]
        head = self._head(cursor)
        existing = self._existing(cursor, [r.event_id for r in records])
        stored_digests = self._digests(cursor, [existing[r.event_id] for r in records
                                                if r.digest is not None and r.event_id in existing])
        prev_hash, last_recorded = head.hash, head.recorded_at
        stored: list[StoredEvent] = []
        # Per record: ("new", index into stored) | ("dup", None) | ("conflict", position or
        # -(index into stored + 1) for a record of this same batch, known)
        plan: list[tuple[str, int, bool]] = []
        batch: dict[str, tuple[int, bytes | None]] = {}  # event id -> (index, digest)
        for r in records:
            if r.event_id in existing:
                position = existing[r.event_id]
                if r.digest is None:
                    plan.append(("dup", 0, True))
                elif position not in stored_digests:
                    plan.append(("conflict", position, False))
                else:
                    same = stored_digests[position] == r.digest
                    plan.append(("dup", 0, True) if same else ("conflict", position, True))
                continue
            if r.event_id in batch:
                index, digest = batch[r.event_id]
                if r.digest is None or digest is None or digest == r.digest:
                    plan.append(("dup", 0, True))
                else:
                    plan.append(("conflict", -(index + 1), True))
                continue
            if r.recorded_at < last_recorded:
                raise ClockError(
                    f"the ledger clock {format_micros(r.recorded_at)} is behind the log's last "
                    f"recorded_at {format_micros(last_recorded)}; recorded_at never decreases"
                )
            batch[r.event_id] = (len(stored), r.digest)
            frame = _frame(prev_hash, r.recorded_at, r.payload)
            # The recorder stores a UUID as its hex; handing it the hex saves a parse per event.
            stored.append(StoredEvent(r.event_id.replace("-", ""), _ORIGINATOR_VERSION,
                                      r.event_type, frame))
            prev_hash = hashlib.sha256(frame).digest()
            last_recorded = r.recorded_at
            plan.append(("new", len(stored) - 1, True))
        positions = list(self.recorder._insert_events(cursor, stored) or []) if stored else []
        digests = [(positions[i], d) for i, d in batch.values() if d is not None]
        if digests:
            cursor.executemany("INSERT INTO content_digests (position, digest) VALUES (?, ?)", digests)
        out: list[int | Conflict | None] = []
        for kind, n, known in plan:
            if kind == "new":
                out.append(positions[n])
            elif kind == "dup":
                out.append(None)
            else:
                out.append(Conflict(n if n > 0 else positions[-n - 1], known))
        return out

    def _existing(self, cursor, event_ids: list[str]) -> dict[str, int]:  # type: ignore[no-untyped-def]
        """Event id -> position, for those of these ids already in the log."""
        found: dict[str, int] = {}
        hexes = {e.replace("-", "").lower(): e for e in event_ids}
        keys = list(hexes)
        for i in range(0, len(keys), _IN_CHUNK):
            chunk = keys[i : i + _IN_CHUNK]
            cursor.execute(
                "SELECT originator_id, rowid FROM stored_events WHERE originator_id IN "
                f"({','.join('?' * len(chunk))})",
                chunk,
            )
            found.update((hexes[row[0]], row[1]) for row in cursor.fetchall())
        return found

    def _digests(self, cursor, positions: list[int]) -> dict[int, bytes]:  # type: ignore[no-untyped-def]
        found: dict[int, bytes] = {}
        for i in range(0, len(positions), _IN_CHUNK):
            chunk = positions[i : i + _IN_CHUNK]
            cursor.execute(
                "SELECT position, digest FROM content_digests WHERE position IN "
                f"({','.join('?' * len(chunk))})", chunk)
            found.update((row[0], bytes(row[1])) for row in cursor.fetchall())
        return found

    def _head(self, cursor) -> LogHead:  # type: ignore[no-untyped-def]
        cursor.execute("SELECT rowid, state FROM stored_events ORDER BY rowid DESC LIMIT 1")
        row = cursor.fetchone()
        if row is None:
            return LogHead(0, GENESIS_HASH, 0)
        state = row[1]
        return LogHead(
            row[0], hashlib.sha256(state).digest(), int.from_bytes(state[32:40], "big", signed=True)
        )

    def head(self) -> LogHead:
        try:
            with self.datastore.transaction(commit=False) as cursor:
                return self._head(cursor)
        except (PersistenceError, sqlite3.Error) as e:
            raise _log_error(self.path, e, "reading") from None

    def contains(self, event_ids: Sequence[str]) -> set[str]:
        try:
            with self.datastore.transaction(commit=False) as cursor:
                return set(self._existing(cursor, list(event_ids)))
        except (PersistenceError, sqlite3.Error) as e:
            raise _log_error(self.path, e, "reading") from None

    def read(
        self, start: int = 1, *, recorded_by: int | None = None, limit: int | None = None
    ) -> Iterator[LogRecord]:
        page = 10_000
        position = max(start, 1)
        remaining = limit
        while remaining is None or remaining > 0:
            size = page if remaining is None else min(page, remaining)
            try:
                batch = self.recorder.select_notifications(position, size)
            except (PersistenceError, sqlite3.Error) as e:
                raise _log_error(self.path, e, "reading") from None
            for n in batch:
                record = _unframe(n.id, n.originator_id.hex, n.topic, n.state)  # type: ignore[union-attr]
                if recorded_by is not None and record.recorded_at > recorded_by:
                    return  # recorded_at never decreases along the log
                yield record
            if len(batch) < size:
                return
            position = batch[-1].id + 1
            if remaining is not None:
                remaining -= len(batch)

    def read_pages(
        self, start: int = 1, *, recorded_by: int | None = None, page_size: int = 10_000
    ) -> Iterator[RecordPage]:
        """Bulk read for the projector: a separate read-only sqlite3 connection that skips the
        event-id and hash columns the projector does not need (several times faster than
        ``read`` on millions of records)."""
        try:
            conn = sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=ro", uri=True)
        except sqlite3.Error as e:
            raise _log_error(self.path, e, "reading") from None
        try:
            position = max(start, 1)
            while True:
                try:
                    rows = conn.execute(
                        "SELECT rowid, substr(state, 33, 8), substr(state, 41) FROM stored_events "
                        "WHERE rowid >= ? ORDER BY rowid LIMIT ?",
                        (position, page_size),
                    ).fetchall()
                except sqlite3.Error as e:
                    raise _log_error(self.path, e, "reading") from None
                if not rows:
                    return
                positions, stamps, payloads = map(list, zip(*rows, strict=True))
                recorded = [int.from_bytes(s, "big", signed=True) for s in stamps]
                if recorded_by is not None and recorded[-1] > recorded_by:
                    # recorded_at never decreases: cut the page at the first later record
                    cut = next(i for i, r in enumerate(recorded) if r > recorded_by)
                    if cut:
                        yield RecordPage(positions[:cut], recorded[:cut], payloads[:cut])
                    return
                yield RecordPage(positions, recorded, payloads)
                if len(rows) < page_size:
                    return
                position = positions[-1] + 1
        finally:
            conn.close()

    def close(self) -> None:
        self.datastore.close()
