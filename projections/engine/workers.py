"""Projection workers for a partitioned log (Kafka, SPEC §9).

A worker ``i/n`` owns the partitions ``p % n == i`` (static assignment, no consumer group)
and projects them into its own DuckDB file, a shard. Its position is a vector: one
``ledger_position`` row per partition, committed with the tables in the same transaction as
each page (exactly-once, as for the embedded log). A subject's events all live in one
partition, so the per-subject tables split cleanly across shards, and the shards queried
together (``query_shards``) hold what one projection of the whole log holds.

Pages never span partitions: the store's incremental steps select a page's events by
position range, which is contiguous only inside a partition. An event produced twice is
applied once: the reader skips repeats within a run, and a resumed run also checks the
shard's ``events`` table.

``content_fingerprint`` hashes the tables without log positions (which differ between an
embedded log and a Kafka topic), over any number of shard files: the same events give the
same fingerprint, however they were logged, partitioned and sharded."""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import duckdb
import pyarrow as pa
from eventsourcing.persistence import Tracking

from ledger.contracts.schemas import SchemaRegistry
from ledger.domain.chain import LogRecord, RecordPage
from ledger.domain.errors import UsageError
from projections.engine.decode import DecodedPage, PageDecoder
from projections.engine.fold import Rows, fold
from projections.engine.prefetch import read_ahead
from projections.store.duckdb_store import (
    PROJECTION,
    TABLES,
    DuckDBStore,
    ProjectionStoreError,
    _one_line,
)

PAGE_SIZE = 50_000


class PartitionedLog(Protocol):
    """What a worker needs from a log: its partitions and a reader per partition (an
    ``EventLog`` whose ``partitioned`` is True)."""

    name: str

    def partitions(self) -> list[int]: ...

    def read_partition(self, partition: int, offset: int = 0, *, recorded_by: int | None = None,
                       with_duplicates: bool = False, scan_prefix: bool = True
                       ) -> Iterator[LogRecord]: ...


@dataclass(frozen=True, slots=True)
class Worker:
    index: int
    count: int

    @classmethod
    def parse(cls, text: str) -> Worker:
        index, slash, count = text.partition("/")
        if not (slash and index.isdigit() and count.isdigit()) or not 0 <= int(index) < int(count):
            raise UsageError(f"expected I/N with 0 <= I < N, e.g. 0/2, got {text[:20]!r}",
                             parameter="worker")
        return cls(int(index), int(count))

    def owns(self, partition: int) -> bool:
        return partition % self.count == self.index

    @property
    def whole(self) -> bool:
        return self.count == 1


def shard_name(log_name: str, worker: Worker) -> str:
    suffix = "" if worker.whole else f".shard-{worker.index}-of-{worker.count}"
    return f"projections.{log_name}{suffix}.duckdb"


@dataclass(frozen=True, slots=True)
class WorkerReport:
    events: int  # records read in this run
    errors: int  # of which went to projection_errors
    duplicates: int  # second copies of an event id, skipped
    position: int  # the largest position the shard reflects (one per partition: offsets)
    offsets: dict[int, int]  # partition -> the next offset to read
    seconds: float

    @property
    def events_per_second(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {"events": self.events, "errors": self.errors, "duplicates": self.duplicates,
                "position": self.position, "offsets": {str(p): o for p, o in self.offsets.items()},
                "seconds": round(self.seconds, 3), "events_per_second": round(self.events_per_second)}


def stored_offsets(store: DuckDBStore, log_name: str) -> dict[int, int]:
    """partition -> the next offset to read, from the shard's ledger_position rows."""
    from ledger.adapters.kafka_log import split_position

    rows = store.con.execute(
        "SELECT partition, position FROM ledger_position WHERE projection = ? AND log = ?",
        [PROJECTION, log_name]).fetchall()
    return {int(p): split_position(int(pos))[1] + 1 for p, pos in rows}


class PartitionProjector:
    """Brings one shard up to date with the partitions its worker owns."""

    def __init__(self, log: PartitionedLog, store: DuckDBStore, registry: SchemaRegistry, *,
                 worker: Worker = Worker(0, 1), page_size: int = PAGE_SIZE) -> None:
        self.log = log
        self.store = store
        self.decoder = PageDecoder(registry)
        self.worker = worker
        self.page_size = page_size
        self.log_name = log.name

    def run(self, *, recorded_by: int | None = None, progress: Any = None,
            stop: threading.Event | None = None) -> WorkerReport:
        started = time.perf_counter()
        offsets = stored_offsets(self.store, self.log_name)
        resumed = bool(offsets) or self._has_events()
        if not resumed:  # a shard from nothing: load in bulk, reduce once at the end
            self.store.begin_bulk(1)
        partitions = [p for p in self.log.partitions() if self.worker.owns(p)]
        events = errors = duplicates = 0
        for partition, records, page, changes in self._prepared(partitions, offsets, recorded_by,
                                                                resumed, stop):
            last = records[-1]
            self.store.apply(page, changes, Tracking(self.log_name, last.position), partition)
            offsets[partition] = _offset(last.position) + 1
            events += len(records)
            errors += len(page.errors)
            duplicates += len(records) - sum(len(g.event_id) for g in page.groups) - len(page.errors)
            if progress:
                progress(len(records))
        self.store.finish_bulk()
        position, _ = self.store.position()
        return WorkerReport(events, errors, duplicates, position, dict(sorted(offsets.items())),
                            time.perf_counter() - started)

    def _has_events(self) -> bool:
        row = self.store.con.execute("SELECT count(*) > 0 FROM events").fetchone()
        return bool(row and row[0])

    def _pages(self, partition: int, offset: int, recorded_by: int | None) -> Iterator[list[LogRecord]]:
        page: list[LogRecord] = []
        for record in self.log.read_partition(partition, offset, recorded_by=recorded_by,
                                              scan_prefix=False):
            page.append(record)
            if len(page) >= self.page_size:
                yield page
                page = []
        if page:
            yield page

    def _decode(self, records: list[LogRecord], check_store: bool) -> tuple[DecodedPage, list[Rows]]:
        fresh = records
        if check_store:  # a resumed shard: drop events it already holds (produced twice)
            known = self._known({r.event_id for r in records})
            fresh = [r for r in records if r.event_id not in known]
        last = records[-1]
        if not fresh:
            return DecodedPage(last.position, last.position, last.recorded_at), []
        page = self.decoder.decode(RecordPage([r.position for r in fresh],
                                              [r.recorded_at for r in fresh],
                                              [r.payload for r in fresh]))
        page.last_recorded_at = last.recorded_at
        return page, fold(page.groups)

    def _known(self, event_ids: set[str]) -> set[str]:
        ids = pa.table({"event_id": pa.array(sorted(event_ids), pa.string())})
        con = self.store.con.cursor()  # its own cursor: the reader thread runs this
        try:
            con.register("_page_ids", ids)
            return {r[0] for r in con.execute(
                "SELECT event_id FROM events SEMI JOIN _page_ids USING (event_id)").fetchall()}
        finally:
            con.close()

    def _prepared(
        self, partitions: list[int], offsets: dict[int, int], recorded_by: int | None,
        check_store: bool, stop: threading.Event | None,
    ) -> Iterator[tuple[int, list[LogRecord], DecodedPage, list[Rows]]]:
        """Pages read, decoded and folded one ahead by a reader thread."""
        pages = ((p, records, *self._decode(records, check_store))
                 for p in partitions
                 for records in self._pages(p, offsets.get(p, 0), recorded_by))
        return read_ahead(pages, "partition-reader", stop)


def _offset(position: int) -> int:
    from ledger.adapters.kafka_log import split_position

    return split_position(position)[1]


# --- shards together --------------------------------------------------------------------


def expand(patterns: Iterable[str]) -> list[Path]:
    """Files named by paths or glob patterns, sorted; UsageError if one names nothing."""
    import glob

    paths: list[Path] = []
    for pattern in patterns:
        found = sorted(glob.glob(pattern)) if glob.has_magic(pattern) else [pattern]
        found = [f for f in found if Path(f).is_file()]
        if not found:
            raise UsageError(f"no projections file matches {pattern!r}")
        paths.extend(Path(f) for f in found)
    return sorted(set(paths))


def _attached(paths: list[Path]) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    try:
        for i, path in enumerate(paths):
            con.execute(f"ATTACH '{_literal(path)}' AS shard{i} (READ_ONLY)")
    except duckdb.Error as e:
        con.close()
        raise ProjectionStoreError(f"cannot open shard {path}: {_one_line(e)}") from None
    return con


def _literal(path: Path) -> str:
    return str(path).replace("'", "''")


def query_shards(paths: list[Path], sql: str) -> tuple[list[str], list[tuple[Any, ...]]]:
    """Runs one user query over shard files as one, in the SQL sandbox (projections/store/sandbox.py):
    every shard ATTACHed READ_ONLY, every table a view over the union of the shards' tables,
    then file access off and the configuration locked before the query runs."""
    from projections.store.sandbox import run_user_query, user_sql_connection

    views = [f"CREATE TEMP VIEW {t.name} AS "
             + " UNION ALL BY NAME ".join(f"SELECT * FROM shard{i}.{t.name}" for i in range(len(paths)))
             for t in TABLES]
    with user_sql_connection(attach=[(f"shard{i}", p) for i, p in enumerate(paths)],
                             setup=views) as con:
        return run_user_query(con, sql)


def content_fingerprint(paths: list[Path]) -> str:
    """A hash of every table's rows without log positions (and without ledger_position), over
    all the files together: equal for the same events whatever log, partitioning and
    sharding they went through. Row digests are XORed, so shards combine in any order."""
    con = _attached(paths)
    try:
        digest = hashlib.sha256()
        for t in TABLES:
            if t.name == "ledger_position":
                continue
            cols = ", ".join(f'"{c}" := "{c}"' for c in t.names if c != "position")
            count, xor = 0, 0
            for i in range(len(paths)):
                n, x = con.execute(
                    f"SELECT count(*), bit_xor(md5_number(CAST(struct_pack({cols}) AS VARCHAR))) "
                    f"FROM shard{i}.{t.name}").fetchone()  # type: ignore[misc]
                count, xor = count + n, xor ^ int(x or 0)
            digest.update(f"{t.name}:{count}:{xor}\n".encode())
        return digest.hexdigest()
    finally:
        con.close()
