"""Row 1 of issue 9 (SPEC §7a): user SQL runs in a sandbox. Every hostile query -- file
functions on the data directory, COPY, EXPORT, ATTACH/DETACH, INSTALL/LOAD, SET/RESET/PRAGMA,
CHECKPOINT, several statements, DDL, DML -- is refused with one line and exit 2 on all three
query paths (the default projections, ``--db FILE``, ``--shards GLOB``), through the real CLI,
and leaves every file's bytes as they were. Legitimate queries still work on all three."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

import cli
from tests.conftest import make_event


@dataclass(frozen=True)
class Fixture:
    data: Path
    replay: Path  # a `ledger replay` file outside the data directory (the --db path)
    shards: list[Path]  # two shard files in the data directory (the --shards path)
    secrets: list[bytes]  # what must never appear in any output
    snapshot: dict[str, str]  # relative path -> sha256 of every file we guard


def run(*args: str) -> Result:
    return CliRunner().invoke(cli.main, list(args))


def snapshot(*roots: Path) -> dict[str, str]:
    """sha256 of every file under the roots (a new or removed file changes it too)."""
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest()
            for root in roots for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fixture]:
    root = tmp_path_factory.mktemp("hostile-sql")
    data = root / "ledger-data"
    assert run("--data", str(data), "init").exit_code == 0
    lines = [json.dumps(make_event(t, occurred_at=f"2026-03-0{i + 1}T09:00:00Z"))
             for i, t in enumerate(["SubjectRegistered", "ConsentGiven", "LoggedIn"])]
    lines.append('{"type": "NoSuchType"}')  # one reject, so dead-letters.jsonl exists
    (root / "events.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    published = run("--data", str(data), "--now", "2026-03-05T12:00:00Z", "publish",
                    str(root / "events.jsonl"))
    assert published.exit_code == 1 and "accepted 3" in published.stdout, published.output
    assert run("--data", str(data), "project").exit_code == 0
    replays = root / "replays"
    replays.mkdir()
    replay = replays / "audit.duckdb"
    made = run("--data", str(data), "replay", "--as-of", "2026-03-06", "--into", str(replay))
    assert made.exit_code == 0, made.output
    shards = [data / f"ledger.events.shard-{i}-of-2.duckdb" for i in range(2)]
    for shard in shards:
        shutil.copyfile(data / "projections.duckdb", shard)
    key = (data / "master.key").read_bytes()
    raw = base64.b64decode(key)
    secrets = [key.strip(), key.hex().encode(), key.hex().upper().encode(), raw,
               raw.hex().encode(), raw.hex().upper().encode(), b"SQLite format 3",
               b"root:x:0:0", b"[controllers"]
    assert (data / "dead-letters.jsonl").exists()
    for d in (data, replays):
        shutil.copytree(d, root / "pristine" / d.name)
    yield Fixture(data, replay, shards, secrets, snapshot(data, replays))


def touched(*roots: Path) -> dict[str, tuple[int, int, int]]:
    """(inode, size, mtime) of every file under the roots: cheap, for deciding to restore
    (each test's own assertion compares the sha256 snapshot)."""
    return {str(p): (s.st_ino, s.st_size, s.st_mtime_ns)
            for root in roots for p in sorted(root.rglob("*")) if p.is_file() and (s := p.stat())}


@pytest.fixture(autouse=True)
def restore(world: Fixture) -> Iterator[None]:
    """Each test starts from the pristine files, so one damaging query fails only its test."""
    before = touched(world.data, world.replay.parent)
    yield
    if touched(world.data, world.replay.parent) != before:
        for d in (world.data, world.replay.parent):
            shutil.rmtree(d)
            shutil.copytree(d.parent / "pristine" / d.name, d)


# --- the three paths ----------------------------------------------------------------------

PATHS = ["default", "db", "shards"]


def query(world: Fixture, path: str, sql: str, *extra: str) -> Result:
    sql = (sql.replace("{data}", str(world.data)).replace("{shard0}", str(world.shards[0]))
           .replace("{db}", str(world.replay)))
    where = {"default": [], "db": ["--db", str(world.replay)],
             "shards": ["--shards", str(world.data / "ledger.events.shard-*-of-2.duckdb")]}[path]
    return run("--data", str(world.data), "query", *where, *extra, "--", sql)


# --- the hostile table ------------------------------------------------------------------

HOSTILE = [
    # file functions on the data directory's secrets, the log and the vault
    "SELECT hex(content) FROM read_blob('{data}/master.key')",
    "SELECT content FROM read_text('{data}/master.key')",
    "SELECT * FROM read_csv('{data}/master.key', header = false)",
    "SELECT * FROM read_csv_auto('/etc/passwd')",
    "SELECT * FROM read_json('{data}/dead-letters.jsonl')",
    "SELECT * FROM read_json_objects('{data}/dead-letters.jsonl')",
    "SELECT * FROM read_ndjson('{data}/dead-letters.jsonl')",
    "SELECT * FROM read_parquet('{data}/log.sqlite')",
    "SELECT content FROM read_blob('{data}/keys.sqlite')",
    "SELECT content FROM read_blob('{data}/log.sqlite')",
    "SELECT content FROM read_text('{data}/ledger.toml')",
    "SELECT * FROM read_duckdb('{data}/projections.duckdb')",
    "SELECT * FROM glob('{data}/*')",
    "SELECT * FROM sniff_csv('{data}/master.key')",
    "SELECT * FROM parquet_metadata('{data}/log.sqlite')",
    "SELECT * FROM parquet_schema('{data}/keys.sqlite')",
    # every other file reader DuckDB has (test_row01_every_duckdb_file_reader_is_in_the_table)
    "SELECT * FROM read_json_auto('{data}/dead-letters.jsonl')",
    "SELECT * FROM read_ndjson_auto('{data}/dead-letters.jsonl')",
    "SELECT * FROM read_json_objects_auto('{data}/dead-letters.jsonl')",
    "SELECT * FROM read_ndjson_objects('{data}/dead-letters.jsonl')",
    "SELECT * FROM read_single_csv_file('{data}/master.key')",
    "SELECT * FROM read_single_json_file('{data}/dead-letters.jsonl')",
    "SELECT * FROM read_single_parquet_file('{data}/log.sqlite')",
    "SELECT * FROM parquet_scan('{data}/log.sqlite')",
    "SELECT * FROM parquet_file_metadata('{data}/log.sqlite')",
    "SELECT * FROM parquet_full_metadata('{data}/log.sqlite')",
    "SELECT * FROM parquet_kv_metadata('{data}/log.sqlite')",
    "SELECT * FROM parquet_page_index('{data}/log.sqlite')",
    "SELECT * FROM parquet_bloom_probe('{data}/log.sqlite', 'state', 1)",
    "SELECT * FROM '{data}/master.key'",
    "SELECT * FROM '{data}/ledger.toml'",
    "FROM read_blob('{data}/master.key') SELECT content",
    # the same, hidden in a CTE, a subquery, a union, a lateral join, query(), DESCRIBE
    "WITH k AS (SELECT content FROM read_blob('{data}/master.key')) SELECT * FROM k",
    "SELECT (SELECT hex(content) FROM read_blob('{data}/master.key')) AS k",
    "SELECT 1 AS x UNION ALL SELECT length(content) FROM read_blob('{data}/master.key')",
    "SELECT * FROM (SELECT '{data}/master.key' AS f) t, LATERAL (SELECT content FROM read_text(t.f))",
    "SELECT * FROM query('SELECT content FROM read_blob(''{data}/master.key'')')",
    "SELECT * FROM query_table('events')",
    "DESCRIBE SELECT * FROM read_text('{data}/master.key')",
    "SUMMARIZE SELECT content FROM read_blob('{data}/master.key')",
    # writing files: COPY, EXPORT, IMPORT
    "COPY (SELECT 1) TO '{data}/log.sqlite'",
    "COPY (SELECT 'x' AS k) TO '{data}/keys.sqlite' (FORMAT csv)",
    "COPY events TO '{data}/events.csv'",
    "COPY events FROM '{data}/dead-letters.jsonl'",
    "EXPORT DATABASE '{data}/export'",
    "IMPORT DATABASE '{data}'",
    # other databases: ATTACH, DETACH, a shard re-opened read-write, USE
    "ATTACH '{data}/projections.duckdb' AS rw",
    "ATTACH '{shard0}' AS rw (READ_WRITE)",
    "ATTACH '{data}/keys.sqlite' AS vault (TYPE sqlite)",
    "ATTACH ':memory:' AS scratch",
    "DETACH shard0",
    "USE memory",
    # extensions
    "INSTALL sqlite",
    "FORCE INSTALL httpfs",
    "LOAD sqlite",
    "LOAD '{data}/master.key'",
    # configuration
    "SET enable_external_access = true",
    "SET lock_configuration = false",
    "RESET enable_external_access",
    "RESET lock_configuration",
    "SET GLOBAL allowed_directories = ['/']",
    "SET temp_directory = '{data}'",
    "SET VARIABLE k = 1",
    "PRAGMA enable_checkpoint_on_shutdown",
    "PRAGMA database_list",
    "PRAGMA import_database('{data}')",
    "CALL pragma_version()",
    "CALL enable_logging()",
    "SELECT * FROM enable_logging()",
    "SELECT * FROM enable_profiling()",
    "SELECT * FROM checkpoint()",
    "SELECT * FROM force_checkpoint()",
    "CHECKPOINT",
    "FORCE CHECKPOINT",
    "VACUUM",
    "EXPLAIN ANALYZE SELECT * FROM read_blob('{data}/master.key')",
    # more than one statement
    "SELECT 1; DELETE FROM events",
    "SELECT 1; COPY (SELECT 1) TO '{data}/log.sqlite'",
    "DETACH shard0; ATTACH '{shard0}' AS shard0; DELETE FROM shard0.events",
    "SELECT 1; SELECT 2",
    "BEGIN TRANSACTION",
    # DDL
    "CREATE TABLE stolen AS SELECT 1",
    "CREATE TEMP TABLE stolen AS SELECT * FROM events",
    "CREATE VIEW v AS SELECT 1",
    "CREATE MACRO m() AS 1",
    "CREATE SECRET (TYPE s3, KEY_ID 'x', SECRET 'y')",
    "CREATE SEQUENCE s",
    "DROP TABLE events",
    "DROP VIEW events",
    "ALTER TABLE events RENAME TO gone",
    # DML
    "INSERT INTO events SELECT * FROM events",
    "UPDATE events SET type = 'x'",
    "DELETE FROM events",
    "DELETE FROM shard0.events",
    "TRUNCATE events",
    "PREPARE p AS SELECT 1",
    # nothing at all
    "",
    " ; ",
    "-- only a comment",
]


def hostile_cases() -> Iterator[object]:
    """Every statement on every path; the fast tier takes each statement on one path, in turn,
    so each statement and each path stays covered there."""
    for n, sql in enumerate(HOSTILE):
        for k, path in enumerate(PATHS):
            marks = () if k == n % len(PATHS) else (pytest.mark.slow,)
            yield pytest.param(sql, path, marks=marks, id=f"{path}-{sql}")


@pytest.mark.parametrize(("sql", "path"), list(hostile_cases()))
def test_row01_hostile_sql_refused(world: Fixture, path: str, sql: str) -> None:
    result = query(world, path, sql, "--json")
    assert result.exit_code == 2, (result.exit_code, result.output[:300])
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("Error: query"), result.stderr
    assert result.stdout == ""
    out = result.stdout_bytes + result.stderr_bytes
    for secret in world.secrets:
        assert secret not in out
    assert snapshot(world.data, world.replay.parent) == world.snapshot


LEGIT = [
    ("SELECT count(*) AS n FROM events", lambda rows, k: rows == [{"n": 3 * k}]),
    ("SELECT type, count(*) AS n FROM events GROUP BY type ORDER BY type;",
     lambda rows, k: [r["type"] for r in rows] == ["ConsentGiven", "LoggedIn", "SubjectRegistered"]),
    ("WITH c AS (SELECT * FROM consent_state) SELECT purpose, status FROM c LIMIT 1",
     lambda rows, k: rows[0] == {"purpose": "newsletter", "status": "granted"}),
    ("FROM ledger_position SELECT max(position) AS p", lambda rows, k: rows == [{"p": 3}]),
    ("SELECT table_name FROM duckdb_tables() WHERE table_name = 'events' LIMIT 1",
     lambda rows, k: True),  # the shards' tables are views in the shards path
    ("SELECT r.range AS i FROM range(2) r", lambda rows, k: rows == [{"i": 0}, {"i": 1}]),
    ("SELECT unnest([1, 2]) AS u", lambda rows, k: len(rows) == 2),
    ("DESCRIBE events", lambda rows, k: any(r["column_name"] == "event_id" for r in rows)),
    ("SELECT 'read_blob(''x'')' AS s", lambda rows, k: rows == [{"s": "read_blob('x')"}]),
]


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize(("sql", "check"), LEGIT, ids=[q for q, _ in LEGIT])
def test_row01_legit_queries_still_work(world: Fixture, path: str, sql: str, check) -> None:
    result = query(world, path, sql, "--json")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert check(rows, 2 if path == "shards" else 1), rows
    assert snapshot(world.data, world.replay.parent) == world.snapshot


DOC_QUERIES = re.findall(r"```sql\n(.*?)```", (Path(__file__).resolve().parents[2] / "docs"
                         / "projections.md").read_text(encoding="utf-8"), re.DOTALL)


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("sql", DOC_QUERIES, ids=range(len(DOC_QUERIES)))
def test_row01_doc_example_queries_run_in_the_sandbox(world: Fixture, path: str, sql: str) -> None:
    result = query(world, path, sql, "--json")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)  # rows of named columns, and nothing written anywhere
    assert isinstance(rows, list) and all(isinstance(r, dict) and r for r in rows), rows
    assert snapshot(world.data, world.replay.parent) == world.snapshot


def test_row01_every_duckdb_file_reader_is_in_the_table() -> None:
    """The table's reach, not its length: every table function this DuckDB has that reads a
    file by name (read_*, parquet_*, sniff_*, glob) is tried on the data directory by some
    hostile query, so a DuckDB upgrade that adds a reader fails here until it is listed (and
    so tried against the sandbox). No query is in the table twice."""
    import duckdb

    con = duckdb.connect()
    try:
        names = {r[0] for r in con.execute(
            "SELECT function_name FROM duckdb_functions() WHERE function_type = 'table' AND "
            "regexp_matches(function_name, '^(read_|parquet_|sniff_|glob$)')").fetchall()}
    finally:
        con.close()
    assert {"read_blob", "read_csv", "glob"} <= names  # the query finds the readers at all
    tried = {n for n in names if any(re.search(rf"\b{n}\(", sql) for sql in HOSTILE)}
    assert names == tried, sorted(names - tried)
    assert len(set(HOSTILE)) == len(HOSTILE)


@pytest.mark.slow
def test_row01_the_reported_queries_through_the_installed_cli(world: Fixture) -> None:
    """The issue's own reproduction, in a real process: exit 2, one line, nothing printed."""
    import subprocess
    import sys

    ledger = Path(sys.executable).with_name("ledger")
    shards = str(world.data / "ledger.events.shard-*-of-2.duckdb")
    for sql in (f"SELECT hex(content) FROM read_blob('{world.data}/master.key')",
                f"COPY (SELECT 1) TO '{world.data}/log.sqlite'",
                f"DETACH shard0; ATTACH '{world.shards[0]}' AS shard0; DELETE FROM shard0.events"):
        done = subprocess.run([str(ledger), "--data", str(world.data), "query", "--shards", shards,
                               sql], capture_output=True, timeout=60)
        assert done.returncode == 2 and done.stdout == b"", done
        assert done.stderr.count(b"\n") == 1 and b"Traceback" not in done.stderr
        assert all(s not in done.stderr for s in world.secrets)
    assert snapshot(world.data, world.replay.parent) == world.snapshot


@pytest.mark.parametrize("name", ["keys.sqlite", "log.sqlite", "master.key", "ledger.toml",
                                  "dead-letters.jsonl"])
@pytest.mark.parametrize("option", ["--db", "--shards"])
def test_row01_db_and_shards_open_duckdb_files_only(world: Fixture, option: str, name: str) -> None:
    result = run("--data", str(world.data), "query", option, str(world.data / name),
                 "SELECT 1")
    assert result.exit_code == 2, result.output
    assert result.stderr == f"Error: {world.data / name} is not a DuckDB projections file\n"
    assert snapshot(world.data, world.replay.parent) == world.snapshot
