"""The read model: the projection tables as readers see them, behind a small port.

``ProjectionStore`` is what every reader needs of the read side — a read-only view, the log
position the tables reflect, and which tables there are. ``ProjectionsFile`` is the adapter
for a DuckDB file (the live projections or a replay), ``InMemoryProjections`` the one for an
in-memory DuckDB (tests, throw-away prefixes). The read queries take the view's connection,
``ReadConnection``, so the application layer names no DuckDB type."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Final, Protocol, TypeAlias, cast

import duckdb

from ledger.contracts.schemas import SchemaRegistry
from ledger.domain.errors import UsageError
from projections.store.duckdb_store import (
    IN_MEMORY,
    DuckDBStore,
    GuardedConnection,
    ProjectionsLocked,
    _one_line,
    check_not_truncated,
    is_lock_error,
    store_error,
)

# A read-only connection to the projection tables (what the read queries take).
ReadConnection: TypeAlias = duckdb.DuckDBPyConnection

_TABLES_SQL: Final = ("SELECT table_name FROM duckdb_tables() WHERE database_name = "
                      "current_database() AND NOT temporary ORDER BY 1")


class ProjectionStore(Protocol):
    """The read side's port: what readers need of a projection store."""

    def read_only(self) -> AbstractContextManager[ReadConnection]:
        """A view of the tables that cannot change them, closed on leaving."""

    def position(self) -> int:
        """The log position the tables reflect (0 before anything was projected)."""

    def tables(self) -> list[str]:
        """The names of the projection tables, sorted (empty before any were created)."""


def read_only_connection(path: str | Path) -> ReadConnection:
    """A read-only connection to a projections file; a clear error if it is missing or
    cannot be opened (e.g. a follower holds the lock)."""
    path = Path(path)
    if not path.exists():
        raise UsageError(f"no projections at {path}: run `ledger project` first")
    try:
        con = duckdb.connect(str(path), read_only=True)
    except duckdb.Error as e:
        if is_lock_error(e):
            raise ProjectionsLocked(f"cannot open {path}: {_one_line(e)}") from None
        raise store_error(path, e, "opening") from None
    try:
        check_not_truncated(con, path)
    except BaseException:
        con.close()
        raise
    return cast(ReadConnection, GuardedConnection(con, path))


def table_names(con: ReadConnection) -> list[str]:
    return [r[0] for r in con.execute(_TABLES_SQL).fetchall()]


def tracked_position(con: ReadConnection) -> int:
    """The position in ``ledger_position``; 0 without the table (a crash came after the file
    was created and before its tables were committed)."""
    if "ledger_position" not in table_names(con):
        return 0
    row = con.execute("SELECT coalesce(max(position), 0) FROM ledger_position").fetchone()
    return int(row[0]) if row else 0


@contextmanager
def read_only_cursor(writer: duckdb.DuckDBPyConnection, path: Path) -> Iterator[ReadConnection]:
    """A view on a writer's database that cannot change its tables: a cursor in a read-only
    transaction (which, like a read-only file, still allows temporary tables). For databases
    that cannot be opened a second time read-only: an in-memory one, or a file its writer
    still holds. Its errors name ``path``, like a file's read-only connection."""
    cursor = writer.cursor()
    try:
        cursor.execute("BEGIN TRANSACTION READ ONLY")
        yield cast(ReadConnection, GuardedConnection(cursor, path))
    finally:
        cursor.close()  # rolls the read-only transaction back


class ProjectionsFile:
    """A projections file (DuckDB): readers open it read-only, so a writer elsewhere is
    refused while they read, and they never change it."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    @contextmanager
    def read_only(self) -> Iterator[ReadConnection]:
        con = read_only_connection(self.path)
        try:
            yield con
        finally:
            con.close()

    def position(self) -> int:
        if not self.path.exists():
            return 0
        with self.read_only() as con:  # guarded: a damaged block is a store error
            return tracked_position(con)

    def tables(self) -> list[str]:
        if not self.path.exists():
            return []
        with self.read_only() as con:
            return table_names(con)


class InMemoryProjections:
    """Projections in an in-memory DuckDB: ``store`` is the writer a projector fills; readers
    get a ``read_only_cursor`` on the same database. Gone when closed."""

    def __init__(self, registry: SchemaRegistry) -> None:
        self.store = DuckDBStore(Path(IN_MEMORY), registry, memory_limit=None)

    def read_only(self) -> AbstractContextManager[ReadConnection]:
        return read_only_cursor(self.store.con, self.store.path)

    def position(self) -> int:
        with self.read_only() as con:
            return tracked_position(con)

    def tables(self) -> list[str]:
        with self.read_only() as con:
            return table_names(con)

    def close(self) -> None:
        self.store.close()
