"""The public projection tables written as Parquet files (SPEC §1: analysts read Parquet).

The library writes with DuckDB's own ``COPY … TO`` on a connection it opened itself, never
through the user-SQL sandbox (which rightly refuses file output). Only the tables of schema
``main`` are public: internal working tables live elsewhere and are not exported."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from ledger.adapters import killpoints
from projections.store.read_model import ReadConnection

_PUBLIC_TABLES_SQL: Final = (
    "SELECT table_name FROM information_schema.tables WHERE table_catalog = current_database() "
    "AND table_schema = 'main' AND table_type = 'BASE TABLE' ORDER BY 1")
_COLUMNS_SQL: Final = (
    "SELECT column_name, data_type FROM information_schema.columns WHERE table_catalog = "
    "current_database() AND table_schema = 'main' AND table_name = ? ORDER BY ordinal_position")


@dataclass(frozen=True, slots=True)
class ColumnSchema:
    name: str
    type: str  # the DuckDB type; Parquet readers see its logical equivalent


@dataclass(frozen=True, slots=True)
class TableFile:
    """One exported table: its file, row count, columns and content hash."""

    table: str
    file: str
    rows: int
    columns: tuple[ColumnSchema, ...]
    content: str  # count and order-independent xor of row hashes, as in `fingerprint`


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def public_tables(con: ReadConnection) -> list[str]:
    return [str(r[0]) for r in con.execute(_PUBLIC_TABLES_SQL).fetchall()]


def table_content(con: ReadConnection, relation: str, columns: list[str]) -> tuple[int, str]:
    """(rows, a content hash independent of row order) of a table or a Parquet file: the same
    SQL reads either, so an analyst can check an export with plain DuckDB."""
    if not columns:
        return 0, "0"
    cols = ", ".join(f"{_q(c)} := {_q(c)}" for c in columns)
    row = con.execute(f"SELECT count(*), coalesce(bit_xor(md5_number(CAST(struct_pack({cols}) "
                      f"AS VARCHAR))), 0) FROM {relation}").fetchone()
    assert row is not None
    return int(row[0]), str(row[1])


def content_fingerprint(tables: list[TableFile]) -> str:
    """One hash over every exported table's row count and content hash."""
    digest = hashlib.sha256()
    for t in sorted(tables, key=lambda t: t.table):
        digest.update(f"{t.table}:{t.rows}:{t.content}\n".encode())
    return digest.hexdigest()


def write_parquet_tables(con: ReadConnection, directory: Path) -> list[TableFile]:
    """Writes each public table to ``directory/<table>.parquet`` (zstd) and describes it."""
    written: list[TableFile] = []
    for table in public_tables(con):
        columns = tuple(ColumnSchema(str(n), str(t))
                        for n, t in con.execute(_COLUMNS_SQL, [table]).fetchall())
        target = directory / f"{table}.parquet"
        literal = str(target).replace("'", "''")
        con.execute(f"COPY (SELECT * FROM main.{_q(table)}) TO '{literal}' "
                    "(FORMAT parquet, COMPRESSION zstd)")
        rows, content = table_content(con, f"main.{_q(table)}", [c.name for c in columns])
        written.append(TableFile(table, target.name, rows, columns, content))
        killpoints.reached("export.parquet.table")
    return written
