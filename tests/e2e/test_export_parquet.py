"""Issue 12 §4: `ledger export parquet DIR [--as-of T]` writes one Parquet file per public
table and a manifest, readable by plain DuckDB and pyarrow; DIR appears whole or not at all,
also under SIGKILL; a directory holding anything but an earlier export is refused."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import duckdb
import pyarrow.parquet as pq
import pytest

from projections.store.parquet_export import table_content
from tests.security.helpers import NOW, events_file, ledger, one_line_error

EVENTS = 300
# Each case runs the real CLI in subprocesses (about a second each): the slow tier. The fast
# tier has the in-process round trip on the shared demo below.
slow = pytest.mark.slow


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("export")
    data = root / "data"
    assert ledger("--data", str(data), "init").returncode == 0
    first = events_file(root / "in.jsonl", EVENTS)
    assert ledger("--data", str(data), "--now", NOW, "publish", str(first)).returncode == 0
    later = root / "later.jsonl"  # more events, recorded a day later
    later.write_text(first.read_text().replace("00000000-0000-4000-8000-0000", "11111111-0000-"
                                               "4000-8000-0000"))
    assert ledger("--data", str(data), "--now", "2026-03-06T12:00:00Z", "publish",
                  str(later)).returncode == 0
    return data


def export(data: Path, target: Path, *extra: str, env: dict[str, str] | None = None,
           ) -> Any:
    return ledger("--data", str(data), "export", "parquet", str(target), "--json", *extra,
                  env=env)


def manifest_of(target: Path) -> dict[str, Any]:
    manifest: dict[str, Any] = json.loads((target / "manifest.json").read_text())
    return manifest


@slow
def test_export_reads_back_with_duckdb_and_pyarrow(data: Path, tmp_path: Path) -> None:
    target = tmp_path / "out"
    result = export(data, target)
    assert result.returncode == 0, result.stderr
    manifest = manifest_of(target)
    assert json.loads(result.stdout)["fingerprint"] == manifest["fingerprint"]
    assert manifest["format"] == "consent-ledger/parquet-export/1"
    assert manifest["log_position"] == 2 * EVENTS
    tables = {t["table"]: t for t in manifest["tables"]}
    assert {"events", "consent_state", "activity_clock", "disclosures"} <= set(tables)
    assert tables["events"]["rows"] == 2 * EVENTS
    assert sorted(p.name for p in target.iterdir()) == sorted(
        [t["file"] for t in tables.values()] + ["manifest.json"])
    con = duckdb.connect()
    for name, t in tables.items():
        path = str(target / t["file"])
        arrow = pq.read_table(path)
        names = [c["name"] for c in t["columns"]]
        assert arrow.num_rows == t["rows"], name
        assert arrow.schema.names == names, name
        assert con.execute("SELECT count(*) FROM read_parquet(?)", [path]).fetchone() == (
            t["rows"],)
        # the manifest's content hash is checkable from the Parquet file alone
        assert table_content(con, f"read_parquet('{path}')", names) == (t["rows"], t["content"])
    assert os.stat(target).st_mode & 0o077 == 0


@slow
def test_export_as_of_holds_only_what_was_known(data: Path, tmp_path: Path) -> None:
    target = tmp_path / "then"
    result = export(data, target, "--as-of", "2026-03-05T18:00:00Z")
    assert result.returncode == 0, result.stderr
    manifest = manifest_of(target)
    assert manifest["log_position"] == EVENTS
    assert manifest["as_of"].startswith("2026-03-05T18:00:00")
    events = next(t for t in manifest["tables"] if t["table"] == "events")
    assert events["rows"] == EVENTS


@slow
def test_an_earlier_export_is_replaced_and_a_foreign_directory_refused(
        data: Path, tmp_path: Path) -> None:
    target = tmp_path / "out"
    assert export(data, target, "--as-of", "2026-03-05T18:00:00Z").returncode == 0
    result = export(data, target)
    assert result.returncode == 0, result.stderr
    assert manifest_of(target)["log_position"] == 2 * EVENTS
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # no temporary directory left
    (target / "notes.txt").write_text("mine")
    refused = export(data, target)
    assert refused.returncode == 2
    assert "not empty and not an earlier export" in one_line_error(refused)
    assert (target / "notes.txt").read_text() == "mine"


@slow
@pytest.mark.parametrize("case", ["file", "symlink", "inside-data", "no-parent", "bad-as-of",
                                  "hostile-name"])
def test_hostile_targets_are_one_line_usage_errors(data: Path, tmp_path: Path, case: str) -> None:
    target = tmp_path / "out"
    extra: tuple[str, ...] = ()
    if case == "file":
        target.write_text("x")
    elif case == "symlink":
        (tmp_path / "elsewhere").mkdir()
        target.symlink_to(tmp_path / "elsewhere")
    elif case == "inside-data":
        target = data / "export"
    elif case == "no-parent":
        target = tmp_path / "missing" / "out"
    elif case == "bad-as-of":
        extra = ("--as-of", "yesterday'; DROP TABLE events")
    result = export(data, target, *extra) if case != "hostile-name" else None
    if result is None:  # a quote in the name must reach COPY as data, not SQL
        target = tmp_path / "it's \"odd\"; --"
        ok = export(data, target)
        assert ok.returncode == 0, ok.stderr
        assert manifest_of(target)["log_position"] == 2 * EVENTS
        return
    assert result.returncode == 2, result.stderr
    one_line_error(result)
    if case == "symlink":
        assert list((tmp_path / "elsewhere").iterdir()) == []
    assert not (data / "export").exists()


def leftovers(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if p.name.endswith(".partial"))


@slow
@pytest.mark.parametrize("point", ["export.parquet.table:3", "export.parquet.place:1"])
def test_sigkill_mid_export_leaves_the_old_export_or_none(
        data: Path, tmp_path: Path, point: str) -> None:
    kill = {"LEDGER_TEST_KILL_AT": point}
    fresh = tmp_path / "fresh"
    died = export(data, fresh, env=kill)
    assert died.returncode == -9
    assert not fresh.exists()  # no export rather than half of one
    assert leftovers(tmp_path)

    old = tmp_path / "old"
    assert export(data, old, "--as-of", "2026-03-05T18:00:00Z").returncode == 0
    before = {p.name: p.read_bytes() for p in old.iterdir()}
    assert export(data, old, env=kill).returncode == -9
    assert {p.name: p.read_bytes() for p in old.iterdir()} == before  # the old one, whole

    for target in (fresh, old):  # the next run clears the dead runs' directories
        again = export(data, target)
        assert again.returncode == 0, again.stderr
    assert leftovers(tmp_path) == []
    assert manifest_of(old)["log_position"] == manifest_of(fresh)["log_position"] == 2 * EVENTS


def test_fast_export_of_the_demo_round_trips(demo_data: Path, tmp_path: Path) -> None:
    from click.testing import CliRunner

    import cli

    data = tmp_path / "data"
    shutil.copytree(demo_data, data)
    target = tmp_path / "out"
    result = CliRunner().invoke(cli.main, ["--data", str(data), "export", "parquet",
                                           str(target), "--json"])
    assert result.exit_code == 0, result.output
    manifest = manifest_of(target)
    assert json.loads(result.output)["log_position"] == manifest["log_position"] > 0
    con = duckdb.connect()
    for t in manifest["tables"]:
        path = str(target / t["file"])
        names = [c["name"] for c in t["columns"]]
        assert pq.read_table(path).schema.names == names
        assert table_content(con, f"read_parquet('{path}')", names) == (t["rows"], t["content"])
    refused = CliRunner().invoke(cli.main, ["--data", str(data), "export", "parquet",
                                            str(tmp_path)])
    assert refused.exit_code == 2 and "not an earlier export" in refused.output
