"""The DuckDB adapter: the projection tables (SPEC §4) in one file, written in batches.

``apply`` writes a decoded page, its fold and the new log position in one DuckDB
transaction (exactly-once, SPEC §7): a crash before COMMIT leaves the file as of the previous
page, and the projector resumes from the stored position. Columns go in as Arrow tables and
each table changes with one set-based statement per page, never row by row.

The log position is the ``eventsourcing`` library's tracking concept: this store is a
``TrackingRecorder`` (``insert_tracking`` / ``max_tracking_id``), with one ``ledger_position``
row per (projection, log, partition), so a Kafka log's per-partition offsets fit as more rows.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from collections.abc import Iterable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import astuple, dataclass
from pathlib import Path
from typing import Any, Final

import duckdb
import pyarrow as pa
from eventsourcing.persistence import Tracking, TrackingRecorder

from ledger.adapters.files import storage_error
from ledger.config import private_files
from ledger.contracts.schemas import SchemaRegistry
from ledger.domain.errors import CorruptFile, LedgerError, UsageError
from ledger.domain.vocabulary import RELATIONSHIP_STARTS
from projections.engine.decode import DecodedPage, ProjectionError
from projections.engine.fold import (
    CLOCKS,
    MERGE_RULES,
    SUBJECT_TYPES,
    Append,
    EventColumns,
    HistoryEvent,
    LatestWins,
    Rows,
    request_rows,
    subject_status,
)

logger = logging.getLogger(__name__)

PROJECTION = "projections"
FORMAT: Final = 3  # bump when a table changes shape; old files then need --rebuild


class ProjectionStoreError(LedgerError):
    """The projections file cannot be opened, read or written."""


class ProjectionsLocked(ProjectionStoreError):
    """Another process holds the projections file: a condition of the setup (exit 2), not a
    finding (exit 1 means "not permitted" for ``ledger permits``)."""

    exit_code = 2


REBUILD_ADVICE: Final = "run `ledger project --rebuild`"
_HEADER_BYTES: Final = 3 * 4096  # DuckDB's file header and its two database headers
IN_MEMORY: Final = ":memory:"  # DuckDB's name for a database with no file


def store_error(path: Path, e: Exception, doing: str) -> LedgerError:
    """A damaged projections file or a full disk is one clear error (exit 2) naming the file
    and what to do; anything else a ProjectionStoreError."""
    return (storage_error(path, e, what="projections file", remedy=REBUILD_ADVICE, doing=doing)
            or ProjectionStoreError(f"{doing} {path} failed: {_one_line(e)}"))


class GuardedConnection:
    """A read connection whose DuckDB errors become ``store_error`` (one line naming the file
    and what to do): blocks are read lazily, so a damaged block surfaces at whatever query
    first touches it, in any reader. Results that are the connection itself stay guarded."""

    def __init__(self, con: duckdb.DuckDBPyConnection, path: Path) -> None:
        self._con = con
        self._path = path

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._con, name)
        if not callable(attribute):
            return attribute

        def guarded(*args: Any, **kwargs: Any) -> Any:
            try:
                result = attribute(*args, **kwargs)
            except duckdb.Error as e:
                raise store_error(self._path, e, "reading") from None
            return self if result is self._con else result

        return guarded

    def __enter__(self) -> GuardedConnection:
        return self

    def __exit__(self, *exc: object) -> None:
        self._con.close()


def check_not_truncated(con: duckdb.DuckDBPyConnection, path: Path) -> None:
    """DuckDB reads blocks lazily, so a truncated file opens and then fails at some later
    query: a file shorter than its header and the blocks in use is truncated. (Free blocks at
    the end may legitimately be cut off, so the bound counts only the blocks in use.)"""
    if str(path) == IN_MEMORY:  # no file to be cut short
        return
    try:
        row = con.execute("SELECT block_size, used_blocks FROM pragma_database_size() "
                          "WHERE database_name = current_database()").fetchone()
    except duckdb.Error as e:
        raise store_error(path, e, "reading") from None
    if row is None:
        return
    expected = _HEADER_BYTES + int(row[0]) * int(row[1])
    size = os.stat(path).st_size
    if size < expected:
        raise CorruptFile(f"{path} is not a valid projections file (truncated: {size:,} of "
                          f"{expected:,} bytes): {REBUILD_ADVICE}")


@dataclass(frozen=True, slots=True)
class Table:
    name: str
    columns: tuple[tuple[str, str], ...]  # (name, DuckDB type)
    key: tuple[str, ...] = ()

    def ddl(self) -> str:
        cols = [f'"{n}" {t}' for n, t in self.columns]
        if self.key:
            cols.append(f"PRIMARY KEY ({', '.join(_q(k) for k in self.key)})")
        return f"CREATE TABLE IF NOT EXISTS {self.name} ({', '.join(cols)})"

    @property
    def names(self) -> list[str]:
        return [n for n, _ in self.columns]


_LWW = (
    ("since", "TIMESTAMP"), ("recorded_at", "TIMESTAMP"), ("event_id", "VARCHAR"),
    ("position", "BIGINT"),
)

TABLES: Final = (
    Table("events", (
        ("position", "BIGINT"), ("event_id", "VARCHAR"), ("type", "VARCHAR"),
        ("schema_version", "INTEGER"), ("controller", "VARCHAR"), ("subject", "VARCHAR"),
        ("occurred_at", "TIMESTAMP"), ("recorded_at", "TIMESTAMP"), ("source", "VARCHAR"),
        ("actor", "VARCHAR"), ("has_pii", "BOOLEAN"), ("body", "JSON"),
    )),
    Table("consent_state", (
        ("controller", "VARCHAR"), ("subject", "VARCHAR"), ("purpose", "VARCHAR"),
        ("status", "VARCHAR"), *_LWW, ("notice_id", "VARCHAR"), ("notice_version", "VARCHAR"),
        ("notice_sha256", "VARCHAR"), ("language", "VARCHAR"), ("ui_action", "VARCHAR"),
        ("channel", "VARCHAR"), ("via", "VARCHAR"),
    ), ("controller", "subject", "purpose")),
    Table("subscriptions", (
        ("controller", "VARCHAR"), ("subject", "VARCHAR"), ("list", "VARCHAR"),
        ("channel", "VARCHAR"), ("status", "VARCHAR"), *_LWW, ("via", "VARCHAR"),
        ("double_opt_in", "BOOLEAN"),
    ), ("controller", "subject", "list", "channel")),
    Table("activity_clock", (
        ("controller", "VARCHAR"), ("subject", "VARCHAR"), ("first_seen_at", "TIMESTAMP"),
        *((c, "TIMESTAMP") for c in CLOCKS), ("last_event_at", "TIMESTAMP"),
        ("event_count", "BIGINT"),
    ), ("controller", "subject")),
    Table("pseudonymisation_status", (
        ("controller", "VARCHAR"), ("subject", "VARCHAR"), ("status", "VARCHAR"),
        ("since", "TIMESTAMP"), ("erase_due_at", "TIMESTAMP"), ("reason", "VARCHAR"),
        ("request_id", "VARCHAR"), ("event_id", "VARCHAR"),
        # The current relationship (SPEC §5, fold.Relationship): its number, what started it,
        # and the erasure that closed the previous one.
        ("relationship", "INTEGER"), ("relationship_since", "TIMESTAMP"),
        ("relationship_event_id", "VARCHAR"), ("previous_erased_at", "TIMESTAMP"),
        ("previous_erased_position", "BIGINT"),
    ), ("controller", "subject")),
    Table("rights_requests", (
        ("controller", "VARCHAR"), ("subject", "VARCHAR"), ("request_id", "VARCHAR"),
        ("requested_right", "VARCHAR"), ("scope", "VARCHAR"), ("received_at", "TIMESTAMP"),
        ("due_at", "TIMESTAMP"), ("closed_at", "TIMESTAMP"), ("outcome", "VARCHAR"),
        ("request_event_id", "VARCHAR"), ("close_event_id", "VARCHAR"),
    ), ("controller", "subject", "request_id")),
    Table("disclosures", (
        ("position", "BIGINT"), ("event_id", "VARCHAR"), ("controller", "VARCHAR"),
        ("subject", "VARCHAR"), ("recipient_kind", "VARCHAR"), ("recipient", "VARCHAR"),
        ("basis", "VARCHAR"), ("shared_at", "TIMESTAMP"),
    )),
    # The rights and sweep events of each subject, and its sign-ups, subscriptions and
    # consents (which can start a new relationship): what the per-subject refolds read.
    Table("subject_history", (
        ("controller", "VARCHAR"), ("subject", "VARCHAR"), ("position", "BIGINT"),
        ("type", "VARCHAR"), ("occurred_at", "TIMESTAMP"), ("event_id", "VARCHAR"),
        ("request_id", "VARCHAR"), ("requested_right", "VARCHAR"), ("scope", "VARCHAR"),
        ("outcome", "VARCHAR"), ("reason", "VARCHAR"), ("erase_due_at", "TIMESTAMP"),
    )),
    # The notice registry (NoticePublished): one row per published (notice, version, language).
    Table("notices", (
        ("position", "BIGINT"), ("event_id", "VARCHAR"), ("controller", "VARCHAR"),
        ("notice_id", "VARCHAR"), ("version", "VARCHAR"), ("language", "VARCHAR"),
        ("title", "VARCHAR"), ("sha256", "VARCHAR"), ("published_at", "TIMESTAMP"),
        ("recorded_at", "TIMESTAMP"), ("text", "VARCHAR"),
    )),
    # Filled by the retention sweep (a later issue); created here so the file's shape is whole.
    Table("retention_decisions", (
        ("controller", "VARCHAR"), ("subject", "VARCHAR"), ("as_of", "TIMESTAMP"),
        ("action", "VARCHAR"), ("due_at", "TIMESTAMP"), ("rule", "VARCHAR"),
        ("policy", "VARCHAR"), ("policy_hash", "VARCHAR"), ("evidence", "VARCHAR[]"),
    ), ("controller", "subject")),
    Table("projection_errors", (
        ("position", "BIGINT"), ("recorded_at", "TIMESTAMP"), ("event_type", "VARCHAR"),
        ("reason", "VARCHAR"),
    )),
    Table("ledger_position", (
        ("projection", "VARCHAR"), ("log", "VARCHAR"), ("partition", "INTEGER"),
        ("position", "BIGINT"), ("recorded_at", "TIMESTAMP"), ("format", "INTEGER"),
        ("as_of", "TIMESTAMP"),  # set on replays: the knowledge time the file was built for
    ), ("projection", "log", "partition")),
)
TABLE: Final = {t.name: t for t in TABLES}

# Bulk loading (a rebuild, a replay, the first projection of a log): pages only append -
# events, and the latest-wins rows into unkeyed staging tables - and the keyed tables, the
# clocks and the refolds are computed once at the end (``finish_bulk``). The merge rules are
# associative, so reducing everything once equals reducing page by page; and every page still
# commits with its position, so a crash in the middle resumes the bulk load.
STAGED: Final = tuple(n for n, r in MERGE_RULES.items() if isinstance(r, LatestWins))
_BULK_DDL: Final = (
    *(f"CREATE TABLE IF NOT EXISTS {n}_staged AS SELECT * FROM {n} LIMIT 0" for n in STAGED),
    "CREATE TABLE IF NOT EXISTS bulk_load (first_position BIGINT)",
)
# ledger_position.as_of says how a file was made, not what it holds: not fingerprinted, so
# a replay as of T and a rebuild of the same log prefix have the same fingerprint.
_UNFINGERPRINTED: Final = {"ledger_position": {"as_of"}}

_ARROW: Final = {
    "VARCHAR": pa.string(), "BIGINT": pa.int64(), "INTEGER": pa.int32(),
    "BOOLEAN": pa.bool_(), "TIMESTAMP": pa.int64(),  # µs; cast to timestamp[us] below
}


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _arrow(values: Any, arrow_type: pa.DataType) -> pa.Array:
    """A column (list or Arrow array) as an Arrow array of the given type."""
    if isinstance(values, pa.Array):
        return values if values.type == arrow_type else values.cast(arrow_type)
    return pa.array(values, arrow_type)


def _timestamp_array(values: Any) -> pa.Array:
    """A column of UTC microseconds as an Arrow timestamp[us] array (DuckDB TIMESTAMP), the
    vectorised counterpart of ``ledger.timeutil.to_naive_utc``."""
    return _arrow(values, pa.int64()).cast(pa.timestamp("us"))


def _is_column(value: Any) -> bool:
    return isinstance(value, (list, pa.Array))


def _pylist(values: Any) -> list[Any]:
    return values.to_pylist() if isinstance(values, pa.Array) else list(values)


class DuckDBStore(TrackingRecorder):
    """The projections file. Open one writer at a time (DuckDB locks the file)."""

    def __init__(
        self,
        path: Path,
        registry: SchemaRegistry,
        *,
        read_only: bool = False,
        memory_limit: str | None = "512MB",
    ) -> None:
        self.path = path
        self.registry = registry
        self.read_only = read_only
        if read_only and not path.exists():
            raise UsageError(f"no projections at {path}: run `ledger project` first")
        config: dict[str, str | bool | int | float | list[str]] = (
            {"memory_limit": memory_limit} if memory_limit else {})
        # A writer creates the file and, at each commit, its .wal: 0600 while it is open.
        self._private = ExitStack()
        if not read_only:
            self._private.enter_context(private_files())
        try:
            try:
                self.con = duckdb.connect(str(path), read_only=read_only, config=config)
            except duckdb.Error as e:
                if is_lock_error(e):
                    raise ProjectionsLocked(f"cannot open {path}: {_one_line(e)}") from None
                raise store_error(path, e, "opening") from None
            try:
                check_not_truncated(self.con, path)
                self._registered = 0
                self._bulk_io_on = False
                if not read_only:
                    try:
                        self._create_tables()
                    except duckdb.Error as e:
                        raise store_error(path, e, "opening") from None
                self._check_format()
            except BaseException:
                self.con.close()
                raise
        except BaseException:
            self._private.close()
            raise

    # tables -------------------------------------------------------------------------------
    def _create_tables(self) -> None:
        with self._transaction():
            for t in TABLES:
                self.con.execute(t.ddl())
            for ddl in _BULK_DDL:
                self.con.execute(ddl)

    def _check_format(self) -> None:
        try:
            rows = self.con.execute("SELECT DISTINCT format FROM ledger_position").fetchall()
        except duckdb.Error:
            raise ProjectionStoreError(f"{self.path} is not a projections file") from None
        if any(r[0] != FORMAT for r in rows):
            raise ProjectionStoreError(
                f"{self.path} was written in projection format {rows[0][0]}, this version "
                f"writes {FORMAT}: run `ledger project --rebuild`"
            )

    def reset(self) -> None:
        """Empties every table in place. ``project --rebuild`` does not use it: it builds a
        new file and renames it over this one (projector.rebuild)."""
        with self._transaction():
            for name in [*(t.name for t in TABLES), *(f"{n}_staged" for n in STAGED), "bulk_load"]:
                self.con.execute(f"DELETE FROM {name}")

    # bulk loading -------------------------------------------------------------------------
    def bulk_start(self) -> int | None:
        """The first position of an unfinished bulk load, else None."""
        row = self.con.execute("SELECT min(first_position) FROM bulk_load").fetchone()
        return None if row is None else row[0]

    def begin_bulk(self, first_position: int) -> None:
        if self.bulk_start() is None:
            with self._transaction():
                self.con.execute("INSERT INTO bulk_load VALUES (?)", [first_position])

    def _bulk_io(self, on: bool) -> None:
        """During a bulk load DuckDB would checkpoint at almost every commit (each page is
        more than the 16 MB WAL threshold), and a checkpoint costs more the larger the file:
        checkpoint once at the end instead. Commits stay durable in the WAL meanwhile."""
        if on == self._bulk_io_on:
            return
        if on:
            self.con.execute("SET checkpoint_threshold = '4GB'")
        else:
            self.con.execute("RESET checkpoint_threshold")
            self.con.execute("CHECKPOINT")
        self._bulk_io_on = on

    def finish_bulk(self) -> None:
        """Reduces the staged rows into the keyed tables, computes the clocks and refolds
        the subjects of the bulk-loaded range, in one transaction."""
        first = self.bulk_start()
        if first is None:
            return
        try:
            with self._transaction():
                last, _ = self.position()
                for table in STAGED:
                    self._merge_from(table, f"{table}_staged", into_empty=first == 1)
                    self.con.execute(f"DELETE FROM {table}_staged")
                self._update_clocks(first, last, into_empty=first == 1)
                self._add_subjects(first, last, into_empty=first == 1)
                touched = {(c, s) for c, s in self.con.execute(
                    "SELECT DISTINCT controller, subject FROM subject_history "
                    f"WHERE position >= ? AND (type NOT IN ({_in_list(RELATIONSHIP_STARTS)}) "
                    "OR EXISTS (SELECT 1 FROM subject_history x WHERE x.type = 'SubjectErased' "
                    "AND x.controller = subject_history.controller "
                    "AND x.subject = subject_history.subject))", [first]).fetchall()}
                if touched:
                    self._refold_subjects(touched)
                self._drop_earlier_relationships()
                self.con.execute("DELETE FROM bulk_load")
            self._bulk_io(False)
        except duckdb.Error as e:
            raise store_error(self.path, e, "projecting into") from None
        finally:
            self._unregister_all()

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        self.con.begin()
        try:
            yield
        except BaseException:
            self.con.rollback()
            raise
        self.con.commit()

    def close(self) -> None:
        try:
            self.con.close()  # checkpoints: may still write the file
        except duckdb.FatalException:
            pass  # invalidated by an earlier error, which was raised already
        except duckdb.Error as e:
            raise store_error(self.path, e, "closing") from None
        finally:
            self._private.close()

    # tracking (eventsourcing's TrackingRecorder) -------------------------------------------
    def max_tracking_id(self, application_name: str) -> int | None:
        row = self.con.execute(
            "SELECT max(position) FROM ledger_position WHERE projection = ? AND log = ?",
            [PROJECTION, application_name],
        ).fetchone()
        return None if row is None else row[0]

    def insert_tracking(self, tracking: Tracking, recorded_at: int | None = None,
                        partition: int = 0) -> None:
        self.con.execute(
            "INSERT INTO ledger_position VALUES (?, ?, ?, ?, make_timestamp(?), ?, NULL) "
            "ON CONFLICT DO UPDATE SET position = excluded.position, "
            "recorded_at = excluded.recorded_at, format = excluded.format",
            [PROJECTION, tracking.application_name, partition, tracking.notification_id,
             recorded_at, FORMAT],
        )

    def set_as_of(self, as_of: int) -> None:
        self.con.execute("UPDATE ledger_position SET as_of = make_timestamp(?)", [as_of])

    # applying a page ----------------------------------------------------------------------
    def apply(self, page: DecodedPage, changes: list[Rows], tracking: Tracking,
              partition: int = 0) -> None:
        """Writes the page's events, its state changes and the new position (of the log's
        ``partition``: Kafka workers track one per partition) atomically."""
        try:
            bulk = self.bulk_start() is not None
            self._bulk_io(bulk)
            with self._transaction():
                first, last = page.first_position, page.last_position
                if page.groups:
                    self._insert_events(page.groups)
                    if not bulk:
                        self._update_clocks(first, last)
                        self._add_subjects(first, last)
                for table, rows in _by_table(changes).items():
                    self._merge(table, rows, staged=bulk)
                if not bulk:
                    touched = _touched_subjects(page.groups) | self._restarted(page.groups)
                    if touched:
                        self._refold_subjects(touched)
                    self._drop_earlier_relationships()
                if page.errors:
                    self._insert_errors(page.errors)
                self.insert_tracking(tracking, page.last_recorded_at, partition)
        except duckdb.Error as e:
            raise store_error(self.path, e, "projecting into") from None
        finally:
            self._unregister_all()

    def _register(self, table: pa.Table) -> str:
        self._registered += 1
        name = f"_batch_{self._registered}"
        self.con.register(name, table)
        return name

    def _unregister_all(self) -> None:
        try:
            for i in range(1, self._registered + 1):
                self.con.unregister(f"_batch_{i}")
        except duckdb.FatalException:
            pass  # the database was invalidated by the error being raised (e.g. a full disk)
        self._registered = 0

    def _insert_events(self, groups: list[EventColumns]) -> None:
        selects = [self._events_select(g) for g in groups]
        self.con.execute(
            f"INSERT INTO events {' UNION ALL '.join(selects)} ORDER BY position"
        )

    def _events_select(self, g: EventColumns) -> str:
        columns: dict[str, pa.Array] = {
            "position": _arrow(g.position, pa.int64()),
            "event_id": _arrow(g.event_id, pa.string()),
            "controller": _arrow(g.controller, pa.string()),
            "subject": _arrow(g.subject, pa.string()),
            "occurred_at": _timestamp_array(g.occurred_at),
            "recorded_at": _timestamp_array(g.recorded_at),
            "source": _arrow(g.source, pa.string()),
            "actor": _arrow(g.actor, pa.string()),
            "has_pii": _arrow(g.has_pii, pa.bool_()),
        }
        body: list[str] = []
        for f in self.registry.body_fields(g.type):
            name = f["name"]
            array, expr = _body_column(f["type"], g.body[name], f"b_{name}")
            columns[f"b_{name}"] = array
            body.append(f"{_q(name)} := {expr}")
        view = self._register(pa.table(columns))
        body_json = f"to_json(struct_pack({', '.join(body)}))" if body else "'{}'::JSON"
        return (
            f"SELECT position, event_id, '{g.type}', {g.version}, controller, subject, "
            f"occurred_at, recorded_at, source, actor, has_pii, {body_json} FROM {view}"
        )

    def _update_clocks(self, first: int, last: int, *, into_empty: bool = False) -> None:
        clocks = ", ".join(
            f"max(occurred_at) FILTER (WHERE type IN ({_in_list(types)})) AS {c}"
            for c, types in CLOCKS.items()
        )
        updates = ", ".join(
            ["first_seen_at = least(activity_clock.first_seen_at, excluded.first_seen_at)"]
            + [f"{c} = greatest(activity_clock.{c}, excluded.{c})" for c in CLOCKS]
            + ["last_event_at = greatest(activity_clock.last_event_at, excluded.last_event_at)",
               "event_count = activity_clock.event_count + excluded.event_count"]
        )
        # Events of an erased earlier relationship count for nothing (fold.Relationship).
        self.con.execute(
            f"INSERT INTO activity_clock SELECT controller, subject, min(occurred_at), {clocks}, "
            f"max(occurred_at), count(*) FROM events WHERE position BETWEEN ? AND ? "
            f"AND NOT {_EARLIER_RELATIONSHIP} GROUP BY controller, subject "
            + ("" if into_empty else f"ON CONFLICT DO UPDATE SET {updates}"),
            [first, last],
        )

    def _recount_clocks(self, subjects: list[tuple[str, str]]) -> None:
        """The clocks of subjects whose current relationship changed, from its events only."""
        clocks = ", ".join(
            f"max(occurred_at) FILTER (WHERE type IN ({_in_list(types)})) AS {c}"
            for c, types in CLOCKS.items()
        )
        controllers, names = zip(*subjects, strict=True)
        view = self._register(pa.table({"controller": pa.array(controllers, pa.string()),
                                        "subject": pa.array(names, pa.string())}))
        self.con.execute(
            f"INSERT OR REPLACE INTO activity_clock SELECT controller, subject, min(occurred_at), "
            f"{clocks}, max(occurred_at), count(*) FROM events SEMI JOIN {view} "
            f"USING (controller, subject) WHERE NOT {_EARLIER_RELATIONSHIP} "
            "GROUP BY controller, subject")

    def _drop_earlier_relationships(self) -> None:
        """Consent and subscription rows of erased earlier relationships are removed (a late
        event of one may have merged in). Relationship boundaries only move later, so what is
        dropped never belongs to the current relationship."""
        if self.con.execute("SELECT 1 FROM pseudonymisation_status WHERE relationship > 1 "
                            "LIMIT 1").fetchone() is None:
            return
        for table in ("consent_state", "subscriptions"):
            self.con.execute(
                f"DELETE FROM {table} USING pseudonymisation_status p WHERE p.relationship > 1 "
                f"AND p.controller = {table}.controller AND p.subject = {table}.subject "
                f"AND ({table}.since < p.previous_erased_at OR ({table}.since = "
                f"p.previous_erased_at AND {table}.position <= p.previous_erased_position))")

    def _restarted(self, groups: Iterable[EventColumns]) -> set[tuple[str, str]]:
        """Subjects with a sign-up, subscription or consent in the page and an erasure in their
        history: the event may start a new relationship, so they are refolded."""
        starts: set[tuple[str, str]] = set()
        for g in groups:
            if g.type in RELATIONSHIP_STARTS:
                starts.update(zip(_pylist(g.controller), _pylist(g.subject), strict=True))
        if not starts:
            return set()
        controllers, names = zip(*sorted(starts), strict=True)
        view = self._register(pa.table({"controller": pa.array(controllers, pa.string()),
                                        "subject": pa.array(names, pa.string())}))
        return {(c, s) for c, s in self.con.execute(
            f"SELECT DISTINCT controller, subject FROM subject_history SEMI JOIN {view} "
            "USING (controller, subject) WHERE type = 'SubjectErased'").fetchall()}

    def _add_subjects(self, first: int, last: int, *, into_empty: bool = False) -> None:
        self.con.execute(
            "INSERT INTO pseudonymisation_status (controller, subject, status, relationship) "
            "SELECT DISTINCT controller, subject, 'active', 1 FROM events "
            "WHERE position BETWEEN ? AND ? " + ("" if into_empty else "ON CONFLICT DO NOTHING"),
            [first, last],
        )

    def _merge(self, table: str, rows: list[Rows], *, staged: bool = False) -> None:
        spec = TABLE[table]
        view = self._register(_arrow_rows(spec, rows))
        cols = ", ".join(_q(c) for c in spec.names)
        rule = MERGE_RULES[table]
        if isinstance(rule, Append):
            self.con.execute(f"INSERT INTO {table} SELECT {cols} FROM {view} ORDER BY position")
        elif staged:
            self.con.execute(f"INSERT INTO {table}_staged SELECT {cols} FROM {view}")
        else:
            self._merge_from(table, view)

    def _merge_from(self, table: str, source: str, *, into_empty: bool = False) -> None:
        """Merges rows from ``source`` into a latest-wins table: per key the greatest
        (since, position) of the source, and it replaces the table's row only if greater."""
        spec = TABLE[table]
        rule = MERGE_RULES[table]
        assert isinstance(rule, LatestWins)
        cols = ", ".join(_q(c) for c in spec.names)
        key = ", ".join(_q(k) for k in rule.key)
        order = ", ".join(f"{_q(o)} DESC" for o in rule.order)
        updates = ", ".join(f"{_q(c)} = excluded.{_q(c)}" for c in spec.names if c not in rule.key)
        reduced = (f"INSERT INTO {table} SELECT {cols} FROM {source} "
                   f"QUALIFY row_number() OVER (PARTITION BY {key} ORDER BY {order}) = 1")
        if into_empty:  # a bulk load from position 1: nothing to merge with
            self.con.execute(reduced)
            return
        newer = _lexicographic_greater(rule.order, "excluded", table)
        self.con.execute(f"{reduced} ON CONFLICT DO UPDATE SET {updates} WHERE {newer}")

    def _refold_subjects(self, touched: set[tuple[str, str]]) -> None:
        controllers, subjects = zip(*sorted(touched), strict=True)
        view = self._register(pa.table({"controller": pa.array(controllers, pa.string()),
                                        "subject": pa.array(subjects, pa.string())}))
        rows = self.con.execute(
            "SELECT h.controller, h.subject, h.type, h.position, epoch_us(h.occurred_at), "
            "h.event_id, h.request_id, h.requested_right, h.scope, h.outcome, h.reason, "
            f"epoch_us(h.erase_due_at) FROM subject_history h SEMI JOIN {view} t "
            "USING (controller, subject)"
        ).fetchall()
        history: dict[tuple[str, str], list[HistoryEvent]] = {k: [] for k in touched}
        for c, s, typ, pos, occ, eid, rid, right, scope, outcome, reason, erase_due in rows:
            body = {"request_id": rid, "right": right, "scope": scope, "outcome": outcome,
                    "reason": reason, "erase_due_at": erase_due}
            history[(c, s)].append(HistoryEvent(typ, pos, occ, eid, body))
        before = dict.fromkeys(touched, (1, None))
        for c, s, number, after_position in self.con.execute(
                "SELECT controller, subject, relationship, previous_erased_position "
                f"FROM pseudonymisation_status SEMI JOIN {view} USING (controller, subject)"
        ).fetchall():
            before[(c, s)] = (number or 1, after_position)
        status_rows: list[tuple[Any, ...]] = []
        request_table: list[tuple[Any, ...]] = []
        changed: list[tuple[str, str]] = []  # subjects whose current relationship changed
        for (c, s), events in sorted(history.items()):
            st = subject_status(events)
            rel = st.relationship
            after_at, after_position = rel.after if rel.after is not None else (None, None)
            status_rows.append((c, s, st.status, st.since, st.erase_due_at, st.reason,
                                st.request_id, st.event_id, rel.number, rel.since,
                                rel.event_id, after_at, after_position))
            request_table.extend((c, s, *astuple(r)) for r in request_rows(events))
            if (rel.number, after_position) != before[(c, s)]:
                changed.append((c, s))
        self._upsert_rows("pseudonymisation_status", status_rows)
        self._upsert_rows("rights_requests", request_table)
        if changed:
            self._recount_clocks(changed)

    def _upsert_rows(self, table: str, rows: list[tuple[Any, ...]]) -> None:
        """Upserts a refold's rows (every key it ever produced is produced again)."""
        if not rows:
            return
        spec = TABLE[table]
        columns = {n: list(v) for n, v in zip(spec.names, zip(*rows, strict=True), strict=True)}
        view = self._register(_arrow_table(spec, columns))
        self.con.execute(f"INSERT OR REPLACE INTO {table} SELECT * FROM {view}")

    def _insert_errors(self, errors: list[ProjectionError]) -> None:
        spec = TABLE["projection_errors"]
        view = self._register(_arrow_table(spec, {
            "position": [e.position for e in errors],
            "recorded_at": [e.recorded_at for e in errors],
            "event_type": [e.event_type for e in errors],
            "reason": [e.reason for e in errors],
        }))
        self.con.execute(f"INSERT INTO projection_errors SELECT * FROM {view} ORDER BY position")

    # reading ------------------------------------------------------------------------------
    def fingerprint(self) -> str:
        """A content hash of every table, independent of physical row order: the same log
        prefix gives the same fingerprint (SPEC §4)."""
        digest = hashlib.sha256()
        for t in TABLES:
            skip = _UNFINGERPRINTED.get(t.name, set())
            cols = ", ".join(f"{_q(c)} := {_q(c)}" for c in t.names if c not in skip)
            count, xor = self.con.execute(
                f"SELECT count(*), bit_xor(md5_number(CAST(struct_pack({cols}) AS VARCHAR))) "
                f"FROM {t.name}"
            ).fetchone()  # type: ignore[misc]
            digest.update(f"{t.name}:{count}:{xor or 0}\n".encode())
        return digest.hexdigest()

    def position(self) -> tuple[int, int | None]:
        """(log position, its recorded_at in µs) the tables reflect; (0, None) when empty."""
        row = self.con.execute(
            "SELECT max(position), epoch_us(max(recorded_at)) FROM ledger_position"
        ).fetchone()
        if row is None or row[0] is None:
            return 0, None
        return int(row[0]), row[1]


def _body_column(avro_type: Any, values: Any, name: str) -> tuple[pa.Array, str]:
    """An Arrow column for a body field and the SQL expression that puts it in the JSON."""
    if isinstance(avro_type, list):  # ["null", T]: nullable T
        avro_type = next(t for t in avro_type if t != "null")
    col = _q(name)
    if isinstance(avro_type, dict):
        kind = avro_type.get("type")
        if avro_type.get("logicalType") == "timestamp-micros":
            return _timestamp_array(values), col
        if kind == "array" and avro_type.get("items") == "string":
            return _arrow(values, pa.list_(pa.string())), col
        return pa.array([None if v is None else json.dumps(v, sort_keys=True)
                         for v in _pylist(values)], pa.string()), f"{col}::JSON"
    simple = {"string": pa.string(), "long": pa.int64(), "int": pa.int32(),
              "boolean": pa.bool_(), "double": pa.float64(), "float": pa.float32()}
    if avro_type in simple:
        return _arrow(values, simple[avro_type]), col
    return pa.array([None if v is None else json.dumps(v) for v in _pylist(values)],
                    pa.string()), f"{col}::JSON"


def _arrow_rows(spec: Table, rows: list[Rows]) -> pa.Table:
    tables = []
    for r in rows:
        n = next(len(v) for v in r.columns.values() if _is_column(v))
        tables.append(_arrow_table(spec, {
            c: (v if _is_column(v) else [v] * n) for c, v in r.columns.items()
        }))
    return pa.concat_tables(tables) if len(tables) > 1 else tables[0]


def _arrow_table(spec: Table, columns: dict[str, Any]) -> pa.Table:
    arrays = {}
    for name, sql_type in spec.columns:
        values = columns[name]
        arrays[name] = _timestamp_array(values) if sql_type == "TIMESTAMP" else _arrow(values, _ARROW[sql_type])
    return pa.table(arrays)


def _by_table(changes: Iterable[Rows]) -> dict[str, list[Rows]]:
    grouped: dict[str, list[Rows]] = {}
    for r in changes:
        grouped.setdefault(r.table, []).append(r)
    return grouped


def _touched_subjects(groups: Iterable[EventColumns]) -> set[tuple[str, str]]:
    touched: set[tuple[str, str]] = set()
    for g in groups:
        if g.type in SUBJECT_TYPES:
            touched.update(zip(_pylist(g.controller), _pylist(g.subject), strict=True))
    return touched


# Whether an events row belongs to an erased earlier relationship of its subject: at or before
# the erasure that closed the previous relationship (event time, then position).
_EARLIER_RELATIONSHIP: Final = (
    "EXISTS (SELECT 1 FROM pseudonymisation_status p WHERE p.relationship > 1 "
    "AND p.controller = events.controller AND p.subject = events.subject "
    "AND (events.occurred_at < p.previous_erased_at OR (events.occurred_at = "
    "p.previous_erased_at AND events.position <= p.previous_erased_position)))")


def _lexicographic_greater(order: Sequence[str], new: str, old: str) -> str:
    """SQL for (new.a, new.b, ...) > (old.a, old.b, ...)."""
    terms = []
    for i, col in enumerate(order):
        equal = [f"{new}.{_q(c)} = {old}.{_q(c)}" for c in order[:i]]
        terms.append("(" + " AND ".join([*equal, f"{new}.{_q(col)} > {old}.{_q(col)}"]) + ")")
    return " OR ".join(terms)


def _in_list(values: Iterable[str]) -> str:
    return ", ".join("'" + v.replace("'", "''") + "'" for v in sorted(values))


def is_lock_error(e: Exception) -> bool:
    """Another process holds the file (not, say, a checksum error "in block at ...")."""
    text = str(e)
    return "Could not set lock" in text or "Conflicting lock" in text


def _one_line(e: Exception) -> str:
    text = re.sub(r"\s+", " ", str(e)).strip()
    if "Could not set lock" in text or "Conflicting lock" in text:
        return ("the file is locked by another process (DuckDB allows one writer; is "
                "`ledger project --follow` running?)")
    return text[:300]
