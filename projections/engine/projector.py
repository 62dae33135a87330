"""The projector: reads the log from the stored position, decodes, folds and commits page by
page. Entry points for the CLI and the Python API: ``project`` (incremental or ``rebuild``),
``follow``, ``replay`` (as of a knowledge time, into a separate file), ``fingerprint``,
``query`` and ``summary``.

Reading and decoding run in a background thread one page ahead of the writer: DuckDB releases
the GIL while it executes, so on two cores the next page decodes while this one commits."""

from __future__ import annotations

import bisect
import glob
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Protocol, cast

import duckdb
from eventsourcing.persistence import Tracking

from ledger.adapters.files import fsync_directory, fsync_file, process_alive
from ledger.contracts.schemas import SchemaRegistry
from ledger.domain.chain import RecordPage
from ledger.domain.errors import UsageError
from ledger.domain.retention.policy import Duration
from ledger.ports import EventLog
from projections.engine.decode import DecodedPage, PageDecoder
from projections.engine.fold import Rows, fold
from projections.engine.prefetch import read_ahead
from projections.engine.workers import (
    PartitionedLog,
    PartitionProjector,
    Worker,
    WorkerReport,
    shard_name,
)
from projections.store.duckdb_store import (
    DuckDBStore,
    ProjectionStoreError,
    _one_line,
    is_lock_error,
)
from projections.store.read_model import ProjectionsFile
from projections.store.read_model import read_only_connection as read_only_connection


class LogSource(Protocol):
    """What the projector reads from an opened ledger (``ledger.app.service.Ledger`` is one):
    the log, the schemas to decode it, and the data directory its projections live in."""

    @property
    def log(self) -> EventLog: ...

    @property
    def registry(self) -> SchemaRegistry: ...

    @property
    def data_dir(self) -> Path: ...

logger = logging.getLogger(__name__)

PROJECTIONS_FILE: Final = "projections.duckdb"
# One DuckDB row group per page: a full row group is written straight to the file at commit
# (no second copy through the WAL), and no partial row groups pile up to be merged later.
PAGE_SIZE: Final = 122_880
Progress = Callable[[int], None]


@dataclass(frozen=True, slots=True)
class ProjectReport:
    events: int  # records read from the log in this run (including ones that failed to decode)
    errors: int  # of which went to projection_errors
    position: int  # the log position the tables now reflect
    seconds: float

    @property
    def events_per_second(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {"events": self.events, "errors": self.errors, "position": self.position,
                "seconds": round(self.seconds, 3),
                "events_per_second": round(self.events_per_second)}


class Projector:
    """Brings a store up to date with a log (the position is the store's tracking)."""

    def __init__(
        self,
        log: EventLog,
        store: DuckDBStore,
        registry: SchemaRegistry,
        *,
        log_name: str = "embedded",
        page_size: int = PAGE_SIZE,
    ) -> None:
        self.log = log
        self.store = store
        self.decoder = PageDecoder(registry)
        self.log_name = log_name
        self.page_size = page_size

    def run(
        self,
        *,
        recorded_by: int | None = None,
        up_to_position: int | None = None,
        progress: Progress | None = None,
        stop: threading.Event | None = None,
    ) -> ProjectReport:
        """Projects from the stored position to the log's end — or only through
        ``up_to_position`` (the auditor replays the prefix a past sweep saw)."""
        started = time.perf_counter()
        start = (self.store.max_tracking_id(self.log_name) or 0) + 1
        if start == 1:  # projecting a whole log: load in bulk, reduce once at the end
            self.store.begin_bulk(start)
        events = errors = 0
        for page, changes in self._prepared(start, recorded_by, stop, up_to_position):
            self.store.apply(page, changes, Tracking(self.log_name, page.last_position))
            events += page.count
            errors += len(page.errors)
            if progress:
                progress(page.count)
        self.store.finish_bulk()
        position, _ = self.store.position()
        report = ProjectReport(events, errors, position, time.perf_counter() - started)
        if events:
            logger.info("projected %d events (%d errors) to position %d in %.2f s", events, errors,
                     position, report.seconds)
        return report

    def _prepared(
        self, start: int, recorded_by: int | None, stop: threading.Event | None,
        up_to_position: int | None = None,
    ) -> Iterator[tuple[DecodedPage, list[Rows]]]:
        """Decoded and folded pages, produced one page ahead by a reader thread."""

        def pages() -> Iterator[tuple[DecodedPage, list[Rows]]]:
            for page in self.log.read_pages(start, recorded_by=recorded_by, page_size=self.page_size):
                last = up_to_position is not None and bool(page.positions) \
                    and page.positions[-1] > up_to_position
                if last:
                    assert up_to_position is not None
                    page = _cut(page, up_to_position)
                if page.positions:
                    decoded = self.decoder.decode(page)
                    yield decoded, fold(decoded.groups)
                if last:
                    return

        return read_ahead(pages(), "projection-reader", stop)


def _cut(page: RecordPage, last_position: int) -> RecordPage:
    """The records of ``page`` at or before ``last_position`` (positions ascend)."""
    n = bisect.bisect_right(page.positions, last_position)
    return RecordPage(page.positions[:n], page.recorded_at[:n], page.payloads[:n])


# --- entry points -----------------------------------------------------------------------


def projections_path(ledger: LogSource, path: str | Path | None = None,
                     worker: Worker | None = None) -> Path:
    """The projections file: DATA/projections.duckdb for the embedded log; for a
    partitioned log DATA/projections.<topic>.duckdb, or one shard file per worker."""
    if path:
        return Path(path)
    if ledger.log.partitioned:
        return ledger.data_dir / shard_name(_log_name(ledger), worker or Worker(0, 1))
    return ledger.data_dir / PROJECTIONS_FILE


def open_store(ledger: LogSource, path: str | Path | None = None,
               worker: Worker | None = None) -> DuckDBStore:
    return DuckDBStore(projections_path(ledger, path, worker), ledger.registry)


def make_projector(ledger: LogSource, store: DuckDBStore, *, worker: Worker | None = None,
                   page_size: int = PAGE_SIZE) -> Projector | PartitionProjector:
    """A partitioned log (Kafka) is projected partition by partition with an offset per
    partition, by a worker owning some or all of them; the embedded log by position."""
    if ledger.log.partitioned:
        return PartitionProjector(cast(PartitionedLog, ledger.log), store, ledger.registry,
                                  worker=worker or Worker(0, 1), page_size=page_size)
    if worker is not None and not worker.whole:
        raise UsageError("only a partitioned log (kafka://) can be shared by workers",
                         parameter="worker")
    return Projector(ledger.log, store, ledger.registry, log_name=_log_name(ledger),
                     page_size=page_size)


def project(
    ledger: LogSource,
    *,
    path: str | Path | None = None,
    rebuild: bool = False,
    progress: Progress | None = None,
    page_size: int = PAGE_SIZE,
    worker: Worker | None = None,
    redecide: Redecide | None = None,
) -> ProjectReport | WorkerReport:
    """Brings the projections up to date with the log (from zero with ``rebuild``, into a
    new file that replaces the old one only when complete: see ``_rebuild``). ``redecide``
    (rebuild only) refills ``retention_decisions`` of the new file before the swap."""
    if rebuild:
        return _rebuild(ledger, projections_path(ledger, path, worker), progress=progress,
                        page_size=page_size, worker=worker, redecide=redecide)
    store = open_store(ledger, path, worker)
    try:
        return make_projector(ledger, store, worker=worker, page_size=page_size
                              ).run(progress=progress)
    finally:
        store.close()


REBUILD_MARK: Final = ".rebuild-"

# Given the new file and controller -> the clock (µs) of its last sweep (read from the old
# file's retention_decisions), recomputes those controllers' decisions into the new file. The
# projections know no policies: the application layer supplies this.
Redecide = Callable[[Path, dict[str, int]], None]


def sweep_clocks(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    """controller -> the clock of its last sweep, as ``retention_decisions`` records it;
    empty when the file has no such table (another format) or no sweep ran."""
    try:
        rows = con.execute("SELECT controller, epoch_us(max(as_of)) FROM retention_decisions "
                           "GROUP BY controller").fetchall()
    except duckdb.Error:
        return {}
    return {str(c): int(t) for c, t in rows if t is not None}


def rebuild_file(target: Path, pid: int | None = None) -> Path:
    """Where a rebuild of ``target`` builds its new file: next to it (same file system, so
    the swap is one rename), named after the rebuilding process."""
    return target.with_name(f"{target.name}{REBUILD_MARK}{os.getpid() if pid is None else pid}")


def _rebuild(
    ledger: LogSource, target: Path, *, progress: Progress | None, page_size: int,
    worker: Worker | None, redecide: Redecide | None = None,
) -> ProjectReport | WorkerReport:
    """Projects the whole log into a new file next to ``target`` and renames it over
    ``target`` only when complete (closed, so checkpointed, and fsynced). Until then the old
    file stays the last good copy, through any failure (an unreadable log, a full disk) or a
    SIGKILL; the leftovers of killed rebuilds are removed by the next one. While it runs, a
    read-only connection holds the old file, so a writer (a follower) can neither be running
    nor start; a damaged old file is simply replaced.

    The decisions as of the last sweep are not in the log: with ``redecide`` they are
    recomputed into the new file, at each controller's last sweep clock read from the old
    file, before the swap (so a SIGKILL never leaves a file without them)."""
    _remove_leftovers(target)
    temp = rebuild_file(target)
    guard = _guard(target)
    clocks = sweep_clocks(guard) if guard is not None and redecide is not None else {}
    try:
        store = DuckDBStore(temp, ledger.registry)
        try:
            report = make_projector(ledger, store, worker=worker, page_size=page_size
                                    ).run(progress=progress)
        finally:
            store.close()
        if redecide is not None and clocks:
            redecide(temp, clocks)
        if _wal(temp).exists():  # close checkpoints; a WAL left over would not follow the rename
            raise ProjectionStoreError(f"rebuilding {target}: {temp} was not checkpointed")
        fsync_file(temp)
        if guard is not None:
            guard.close()
            guard = None
        # The old file's WAL belongs to it: DuckDB refuses a WAL that does not match its file.
        _wal(target).unlink(missing_ok=True)
        os.replace(temp, target)
        fsync_directory(target.parent)
    except BaseException:
        for leftover in (temp, _wal(temp)):
            leftover.unlink(missing_ok=True)
        raise
    finally:
        if guard is not None:
            guard.close()
    return report


def _wal(path: Path) -> Path:
    return path.with_name(path.name + ".wal")


def _guard(target: Path) -> duckdb.DuckDBPyConnection | None:
    """A read-only connection to the old file for the rebuild's duration; refuses while a
    writer holds it. None if there is no old file or it cannot be opened (it is damaged, or
    of another format): it is being replaced."""
    if not target.exists():
        return None
    try:
        return duckdb.connect(str(target), read_only=True)
    except duckdb.Error as e:
        text = str(e).lower()
        if is_lock_error(e) or "different configuration" in text:
            raise ProjectionStoreError(f"cannot rebuild {target}: {_one_line(e)}") from None
        return None


def _remove_leftovers(target: Path) -> None:
    """Removes the files of rebuilds of ``target`` whose process is gone (SIGKILLed)."""
    for leftover in target.parent.glob(f"{glob.escape(target.name)}{REBUILD_MARK}*"):
        pid = leftover.name[len(target.name) + len(REBUILD_MARK):].removesuffix(".wal")
        if not pid.isdigit() or (int(pid) != os.getpid() and process_alive(int(pid))):
            continue
        leftover.unlink(missing_ok=True)



def follow(
    ledger: LogSource,
    *,
    path: str | Path | None = None,
    stop: threading.Event,
    poll_seconds: float = 1.0,
    on_progress: Callable[[ProjectReport | WorkerReport], None] | None = None,
    progress: Progress | None = None,
    worker: Worker | None = None,
) -> ProjectReport:
    """Keeps projecting new records until ``stop`` is set; returns the totals."""
    store = open_store(ledger, path, worker)
    projector = make_projector(ledger, store, worker=worker)
    started = time.perf_counter()
    events = errors = 0
    try:
        while not stop.is_set():
            report = projector.run(progress=progress, stop=stop)
            events, errors = events + report.events, errors + report.errors
            if report.events and on_progress:
                on_progress(report)
            stop.wait(poll_seconds)
        position, _ = store.position()
    finally:
        store.close()
    return ProjectReport(events, errors, position, time.perf_counter() - started)


def replay(
    ledger: LogSource,
    as_of: int,
    into: str | Path,
    *,
    force: bool = False,
    progress: Progress | None = None,
) -> ProjectReport | WorkerReport:
    """Builds the projections as known at ``as_of`` (knowledge time: only records with
    recorded_at <= as_of) into a separate file. The file appears complete or not at all."""
    from projections.store.sandbox import check_replay_target

    target = Path(into)
    check_replay_target(target, ledger.data_dir, projections_path(ledger), force=force)
    partial = target.with_name(target.name + ".partial")
    for leftover in (partial, partial.with_name(partial.name + ".wal")):
        leftover.unlink(missing_ok=True)
    store = DuckDBStore(partial, ledger.registry)
    try:
        report = make_projector(ledger, store).run(recorded_by=as_of, progress=progress)
        store.set_as_of(as_of)
    finally:
        store.close()
    os.replace(partial, target)
    return report


def fingerprint(path: str | Path, registry: SchemaRegistry) -> str:
    store = DuckDBStore(Path(path), registry, read_only=True)
    try:
        return store.fingerprint()
    finally:
        store.close()


def stored_position(path: str | Path) -> int:
    """The log position a projections file reflects (0 if it does not exist yet)."""
    return ProjectionsFile(path).position()


@dataclass(frozen=True, slots=True)
class QueryResult:
    columns: list[str]
    rows: list[tuple[Any, ...]]


def query(path: str | Path, sql: str) -> QueryResult:
    """Runs one user query on a projections file in the SQL sandbox (projections/store/sandbox.py):
    read-only, one SELECT statement, no file access, configuration locked."""
    from projections.store.sandbox import run_user_query, user_sql_connection

    with user_sql_connection(path) as con:
        return QueryResult(*run_user_query(con, sql))


def summary(path: str | Path, as_of: int,
            inactive_after: Mapping[str, Duration] | None = None) -> dict[str, Any]:
    """Per controller: subjects, consents granted / withdrawn / objected, pseudonymisation
    statuses, and subjects active vs inactive at ``as_of`` (last activity within the
    controller's policy's ``inactive_after``; P3Y for a controller without one)."""
    periods = dict(inactive_after or {})
    con = duckdb.connect(str(path), read_only=True)
    try:
        controllers = [r[0] for r in con.execute(
            "SELECT DISTINCT controller FROM activity_clock WHERE subject <> '*' ORDER BY 1"
        ).fetchall()]
        result: dict[str, Any] = {}
        for c in controllers:
            period = periods.get(c, DEFAULT_INACTIVE_AFTER)
            subjects, active = con.execute(
                "SELECT count(*), count(*) FILTER (WHERE last_activity_at >= make_timestamp(?)) "
                "FROM activity_clock WHERE controller = ? AND subject <> '*'",
                [period.subtract(as_of), c]).fetchone()  # type: ignore[misc]
            consents = dict(con.execute(
                "SELECT status, count(*) FROM consent_state WHERE controller = ? GROUP BY 1",
                [c]).fetchall())
            statuses = dict(con.execute(
                "SELECT status, count(*) FROM pseudonymisation_status WHERE controller = ? "
                "AND subject <> '*' GROUP BY 1", [c]).fetchall())
            result[c] = {
                "subjects": subjects,
                "active": active,
                "inactive": subjects - active,
                "inactive_after": str(period),
                "consents_granted": consents.get("granted", 0),
                "consents_withdrawn": consents.get("withdrawn", 0),
                "objections": consents.get("objected", 0),
                "restricted": statuses.get("restricted", 0),
                "pseudonymised": statuses.get("pseudonymised", 0),
                "erased": statuses.get("erased", 0),
            }
        return result
    finally:
        con.close()


DEFAULT_INACTIVE_AFTER: Final = Duration(years=3)


def _log_name(ledger: LogSource) -> str:
    """The tracking name of the ledger's log: a log adapter may name itself (a Kafka log: its
    topic); the embedded log is 'embedded'."""
    return ledger.log.name
