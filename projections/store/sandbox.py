"""The sandbox for user SQL (SPEC §7a): every DuckDB connection that runs SQL a person typed
(``ledger query``, ``--db FILE``, ``--shards GLOB``, anything later) comes from
``user_sql_connection`` and runs it through ``run_user_query``.

What holds:

- the projections are opened read-only (a shard is ATTACHed ``READ_ONLY``), and the only
  files the connection may touch are those;
- before any user SQL runs, external access is off (no file functions -- ``read_blob``,
  ``read_text``, ``read_csv``, ``glob``, ``COPY``, ``ATTACH`` ... -- no extension install or
  load) and the configuration is locked, so no statement can switch it back;
- exactly one statement runs, and it must be a plain query (``SELECT``, ``WITH``, ``FROM``,
  ``VALUES``, ``DESCRIBE``, ``SHOW``, ``SUMMARIZE``); everything else -- DDL, DML, ``SET``,
  ``PRAGMA``, ``CALL``, ``CHECKPOINT``, ``ATTACH``/``DETACH``, ``EXPLAIN`` (``EXPLAIN
  ANALYZE`` would execute its statement) -- is refused before it reaches DuckDB;
- table functions are an allow-list (``range``, ``unnest``, the ``duckdb_*`` catalog views,
  ...): a query cannot reach ``read_*``, ``glob``, ``query()``, ``checkpoint()`` or the
  logging and profiling switches, even nested in a CTE, a subquery or ``DESCRIBE``;
- DuckDB spills to a private temporary directory, never next to the projections.

What does not: a query can still use a lot of CPU and memory (no time limit), and it sees
everything in the projections (pseudonyms, event bodies; never natural identifiers or
decrypted personal data, which the projections do not hold).
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import duckdb

from ledger.domain.errors import UsageError
from projections.store.duckdb_store import ProjectionStoreError, _one_line


class SQLRefused(UsageError):
    """User SQL that the sandbox does not run (exit 2, one line)."""


DUCKDB_MAGIC = b"DUCK"  # bytes 8..12 of every DuckDB database file

# Settings fixed at connect time; lock_configuration comes last, after any trusted setup.
_LOCKED_DOWN: dict[str, Any] = {
    "enable_external_access": False,
    "autoinstall_known_extensions": False,
    "autoload_known_extensions": False,
    "allow_community_extensions": False,
}
_AFTER_SETUP = (
    "SET enable_external_access = false",
    "SET autoinstall_known_extensions = false",
    "SET autoload_known_extensions = false",
    "SET allow_community_extensions = false",
    "SET lock_configuration = true",
)

# Table functions a query may call: generators and read-only catalog views. Everything else
# (read_*, glob, sniff_csv, parquet_*, query, query_table, checkpoint, enable_logging,
# enable_profiling, external resources, python/arrow scans ...) is refused.
ALLOWED_TABLE_FUNCTIONS = frozenset({
    "range", "generate_series", "unnest", "repeat", "repeat_row", "json_each", "json_tree",
    "duckdb_columns", "duckdb_constraints", "duckdb_databases", "duckdb_dependencies",
    "duckdb_functions", "duckdb_indexes", "duckdb_keywords", "duckdb_schemas",
    "duckdb_sequences", "duckdb_settings", "duckdb_tables", "duckdb_types", "duckdb_views",
    "pragma_table_info", "pragma_show", "pragma_version", "pragma_platform",
    "pragma_database_size", "pg_timezone_names", "icu_calendar_names",
})

_REFUSED = "only one read-only SELECT statement runs, with no file access"


def is_duckdb_file(path: str | Path) -> bool:
    """True for a regular file that starts like a DuckDB database (checked by its header, so
    nothing else -- the log, the key vault, a CSV -- is ever handed to DuckDB)."""
    try:
        with open(path, "rb") as f:
            header = f.read(12)
    except OSError:
        return False
    return len(header) == 12 and header[8:12] == DUCKDB_MAGIC


def _check_file(path: Path) -> None:
    if not path.exists():
        raise UsageError(f"no projections at {path}: run `ledger project` first")
    if not path.is_file() or not is_duckdb_file(path):
        raise UsageError(f"{path} is not a DuckDB projections file")


@contextmanager
def user_sql_connection(
    db: str | Path | None = None,
    *,
    attach: Sequence[tuple[str, str | Path]] = (),
    setup: Sequence[str] = (),
) -> Iterator[duckdb.DuckDBPyConnection]:
    """A connection for user SQL: ``db`` opened read-only (or an in-memory database), each
    ``(alias, path)`` of ``attach`` ATTACHed READ_ONLY, the trusted ``setup`` statements run
    (e.g. views over the shards), then external access disabled and the configuration
    locked. Only then is the connection handed out."""
    with tempfile.TemporaryDirectory(prefix="ledger-query-") as spill:
        config = {**_LOCKED_DOWN, "temp_directory": spill}
        if db is not None:
            db = Path(db)
            _check_file(db)
        for _, path in attach:
            _check_file(Path(path))
        try:
            if db is not None:
                con = duckdb.connect(str(db), read_only=True, config=config)
            else:
                # In memory: ATTACH needs file access, which is switched off after the shards
                # are attached (they stay readable; nothing else becomes so).
                con = duckdb.connect(":memory:", config={k: v for k, v in config.items()
                                                         if k != "enable_external_access"})
        except duckdb.Error as e:
            raise ProjectionStoreError(f"cannot open {db}: {_one_line(e)}") from None
        try:
            for alias, path in attach:
                try:
                    con.execute(f"ATTACH {_literal(Path(path))} AS {_identifier(alias)} (READ_ONLY)")
                except duckdb.Error as e:
                    raise ProjectionStoreError(f"cannot open shard {path}: {_one_line(e)}") from None
            for statement in setup:
                con.execute(statement)
            for statement in _AFTER_SETUP:
                con.execute(statement)
            yield con
        finally:
            con.close()


def checked_statement(con: duckdb.DuckDBPyConnection, sql: str) -> duckdb.Statement:
    """The single plain query in ``sql``, or SQLRefused. Parsed by DuckDB's own parser, so
    what is checked is exactly what runs."""
    try:
        statements = duckdb.extract_statements(sql)
    except duckdb.Error as e:
        raise UsageError(f"query: {_one_line(e)}") from None
    if not statements:
        raise SQLRefused(f"query: refused (no SQL statement given): {_REFUSED}")
    if len(statements) > 1:
        raise SQLRefused(f"query: refused ({len(statements)} statements): {_REFUSED}")
    statement = statements[0]
    if statement.type != duckdb.StatementType.SELECT:
        raise SQLRefused(f"query: refused ({statement.type.name} statement): {_REFUSED}")
    for name in _table_functions(con, statement.query):
        if name not in ALLOWED_TABLE_FUNCTIONS:
            raise SQLRefused(f"query: refused (table function {name}): {_REFUSED}")
    return statement


def run_user_query(con: duckdb.DuckDBPyConnection, sql: str) -> tuple[list[str], list[tuple[Any, ...]]]:
    """Runs one user query on a ``user_sql_connection``: (column names, rows)."""
    statement = checked_statement(con, sql)
    try:
        cursor = con.execute(statement)
        if cursor.description is None:
            return [], []
        return [d[0] for d in cursor.description], cursor.fetchall()
    except duckdb.Error as e:
        raise UsageError(f"query: {_one_line(e)}") from None


def _table_functions(con: duckdb.DuckDBPyConnection, sql: str) -> list[str]:
    """Names of every table function the query calls, at any depth (from DuckDB's own
    serialisation of the parsed statement)."""
    try:
        row = con.execute("SELECT json_serialize_sql(?::VARCHAR)", [sql]).fetchone()
        tree = json.loads(row[0]) if row else {"error": True}
    except (duckdb.Error, ValueError):
        tree = {"error": True}
    if tree.get("error"):
        raise SQLRefused(f"query: refused (the statement cannot be checked): {_REFUSED}")
    names: list[str] = []
    stack: list[Any] = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if node.get("type") == "TABLE_FUNCTION":
                function = node.get("function") or {}
                names.append(str(function.get("function_name", "?")).lower())
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return names


def _literal(path: Path) -> str:
    return "'" + str(path).replace("'", "''") + "'"


def _identifier(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


# --- the output side: where a replay may write --------------------------------------------


def check_replay_target(target: str | Path, data_dir: str | Path, live: str | Path,
                        *, force: bool) -> None:
    """Refuses (UsageError, before any effect) a ``replay --into`` target that is the live
    projections file, any path in the data directory (existing or not, however spelled:
    ``..``, a symlink to it or to a directory in it, a hard link to one of its files), or an
    existing file that is not a ledger projections file -- even with ``force``."""
    target = Path(target)
    data = Path(data_dir).resolve()
    where = {target.resolve(), target.absolute().parent.resolve() / target.name}
    if Path(live).resolve() in where:
        raise UsageError("that is the live projections file; choose another file",
                         parameter="into")
    if any(p == data or data in p.parents for p in where):
        raise UsageError(f"{target} is in the data directory {data}; choose a file outside it",
                         parameter="into")
    if not (target.exists() or target.is_symlink()):
        return
    if not force:
        from ledger.domain.errors import TargetExists

        raise TargetExists(target, "into")
    if not target.is_file():
        raise UsageError(f"{target} is not a regular file; it is never replaced",
                         parameter="into")
    st = target.stat()
    for p in data.iterdir():
        try:
            other = p.stat()
        except OSError:
            continue
        if (other.st_dev, other.st_ino) == (st.st_dev, st.st_ino):
            raise UsageError(f"{target} is the same file as {p} in the data directory; "
                             "choose another file", parameter="into")
    if not _is_projections_file(target):
        raise UsageError(f"{target} is not a ledger projections file; it is never "
                         "replaced (remove it yourself or choose another file)", parameter="into")


def _is_projections_file(path: Path) -> bool:
    """A DuckDB file (by its header) holding the ledger's ``ledger_position`` table."""
    if not is_duckdb_file(path):
        return False
    try:
        con = duckdb.connect(str(path), read_only=True, config={**_LOCKED_DOWN})
    except duckdb.Error:
        return False
    try:
        row = con.execute("SELECT count(*) FROM duckdb_tables() "
                          "WHERE table_name = 'ledger_position'").fetchone()
        return bool(row and row[0])
    except duckdb.Error:
        return False
    finally:
        con.close()
