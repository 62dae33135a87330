"""Row 12 of issue 9: ``ledger replay --into FILE --force`` never destroys the log, the key
vault or anything else of the data directory, and never replaces a file that is not a
projections file. Each refusal: one line, exit 2, every file's bytes unchanged."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path

import duckdb
import pytest
from click.testing import CliRunner, Result

import cli
from tests.conftest import make_event


def run(*args: str) -> Result:
    return CliRunner().invoke(cli.main, list(args))


def snapshot(*roots: Path) -> dict[str, str]:
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest()
            for root in roots for p in sorted(root.rglob("*")) if p.is_file() and not p.is_symlink()}


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("replay-into")
    data = root / "ledger-data"
    assert run("--data", str(data), "init").exit_code == 0
    lines = [json.dumps(make_event("SubjectRegistered")), '{"type": "NoSuchType"}']
    (root / "events.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert run("--data", str(data), "publish", str(root / "events.jsonl")).exit_code == 1
    assert run("--data", str(data), "project").exit_code == 0
    assert (data / "dead-letters.jsonl").exists()
    return data


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    path = tmp_path / "elsewhere"
    path.mkdir()
    return path


def replay(data: Path, into: str | Path, *extra: str) -> Result:
    return run("--data", str(data), "replay", "--as-of", "2030-01-01", "--into", str(into),
               "--force", *extra)


def assert_refused(data: Path, outside: Path, into: str | Path) -> None:
    before = snapshot(data, outside)
    result = replay(data, into)
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("Error: --into: ") and result.stderr.count("\n") == 1, result.stderr
    assert snapshot(data, outside) == before


DATA_FILES = ["log.sqlite", "keys.sqlite", "master.key", "ledger.toml", "dead-letters.jsonl",
              "projections.duckdb", "write.lock"]


@pytest.mark.parametrize("name", DATA_FILES)
def test_row12_replay_into_a_data_directory_file_is_refused(data: Path, outside: Path,
                                                            name: str) -> None:
    if not (data / name).exists():
        pytest.skip(f"{name} is not created by this version")
    assert_refused(data, outside, data / name)
    # the same file by a roundabout path, through a symlink and through a hard link
    assert_refused(data, outside, data / ".." / data.name / name)
    (outside / "link.duckdb").symlink_to(data / name)
    assert_refused(data, outside, outside / "link.duckdb")
    assert (outside / "link.duckdb").is_symlink()


def test_row12_replay_into_a_hard_link_to_a_data_directory_file_is_refused(data: Path,
                                                                          outside: Path) -> None:
    os.link(data / "projections.duckdb", outside / "hard.duckdb")
    assert_refused(data, outside, outside / "hard.duckdb")


def test_row12_replay_into_a_new_file_in_the_data_directory_is_refused(data: Path,
                                                                      outside: Path) -> None:
    for name in ("log.sqlite-journal", "keys.sqlite-wal", "audit.duckdb"):
        assert_refused(data, outside, data / name)
        assert not (data / name).exists() and not (data / (name + ".partial")).exists()
    (outside / "data-link").symlink_to(data, target_is_directory=True)
    assert_refused(data, outside, outside / "data-link" / "audit.duckdb")
    assert not (data / "audit.duckdb").exists()


def _text(path: Path) -> None:
    path.write_text("my notes\n", encoding="utf-8")


def _empty(path: Path) -> None:
    path.write_bytes(b"")


def _sqlite(path: Path) -> None:
    import sqlite3

    con = sqlite3.connect(path)
    con.execute("CREATE TABLE t (x)")
    con.commit()
    con.close()


def _other_duckdb(path: Path) -> None:
    con = duckdb.connect(str(path))
    con.execute("CREATE TABLE sales (amount INTEGER)")
    con.close()


@pytest.mark.parametrize("make", [_text, _empty, _sqlite, _other_duckdb],
                         ids=["text", "empty", "sqlite", "other-duckdb"])
def test_row12_replay_into_a_file_that_is_not_a_projections_file_is_refused(
        data: Path, outside: Path, make: Callable[[Path], None]) -> None:
    make(outside / "precious.duckdb")
    assert_refused(data, outside, outside / "precious.duckdb")


def test_row12_replay_into_a_new_file_or_an_old_replay_still_works(data: Path,
                                                                  outside: Path) -> None:
    target = outside / "audit.duckdb"
    assert replay(data, target).exit_code == 0
    again = replay(data, target)
    assert again.exit_code == 0, again.output
    assert "projected 1 events" in again.stdout
    without_force = run("--data", str(data), "replay", "--as-of", "2030-01-01", "--into", str(target))
    assert without_force.exit_code == 2 and "exists (use --force" in without_force.stderr
