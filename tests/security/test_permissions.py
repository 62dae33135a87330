"""Row 10 of issue 9: the data directory is 0700 and every file in it 0600 whatever the
umask, set when a file is created (SQLite's -wal/-shm and DuckDB's .wal included), and checked
when the ledger is opened: a loose file is tightened with a warning, a loose master.key is
refused."""

from __future__ import annotations

import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tests.security.helpers import NOW, events_file, ledger, one_line_error


def modes(data: Path) -> dict[str, int]:
    return {p.name: stat.S_IMODE(p.lstat().st_mode) for p in data.iterdir()}


def assert_private(data: Path) -> None:
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    loose = {name: oct(m) for name, m in modes(data).items() if m != 0o600}
    assert not loose, loose


@pytest.mark.parametrize("umask", [0o000, pytest.param(0o022, marks=pytest.mark.slow)])  # fast tier: the loosest
def test_row10_every_file_private_under_any_umask(tmp_path: Path, umask: int) -> None:
    data = tmp_path / "data"
    assert ledger("--data", str(data), "init", umask=umask).returncode == 0
    assert_private(data)
    lines = events_file(tmp_path / "in.jsonl", 30, rejected=1)
    published = ledger("--data", str(data), "--now", NOW, "publish", str(lines), umask=umask)
    assert published.returncode == 1 and "accepted 30" in published.stdout  # 1 rejected line
    assert ledger("--data", str(data), "project", umask=umask).returncode == 0
    files = set(modes(data))
    assert {"ledger.toml", "master.key", "keys.sqlite", "log.sqlite", "projections.duckdb",
            "dead-letters.jsonl", "write.lock"} <= files, files
    assert_private(data)


def test_row10_init_tightens_an_existing_open_directory(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    data.chmod(0o755)
    assert ledger("--data", str(data), "init").returncode == 0
    assert_private(data)


# The Python API (no CLI around it) under umask 000, with its SQLite and DuckDB connections
# still open, so that the -wal/-shm files and DuckDB's .wal exist while their modes are read.
API_SCRIPT = r"""
import json, os, stat, sys
from pathlib import Path
os.umask(0)
from ledger.app.service import Ledger
from projections.store.duckdb_store import DuckDBStore
data = Path(sys.argv[1])
Ledger.init(data)
with Ledger.open(data, now="2026-03-05T12:00:00Z") as ledger:
    ledger.publish([json.dumps({"type": "LoggedIn", "event_id": "00000000-0000-4000-8000-000000000001",
        "controller": "cowrite", "occurred_at": "2026-03-01T09:30:00Z", "source": "web",
        "actor": "subject", "subject": {"email": "anna@example.se"}, "app": "cowrite",
        "method": "bankid"}).encode(), b"not json"])
    store = DuckDBStore(data / "projections.duckdb", ledger.registry)
    store.con.execute("SET checkpoint_threshold = '1GB'")
    store.con.execute("INSERT INTO projection_errors VALUES (1, NULL, 'x', 'y')")
    print(json.dumps({p.name: stat.S_IMODE(p.stat().st_mode) for p in data.iterdir()}))
    store.close()
print(json.dumps({p.name: stat.S_IMODE(p.stat().st_mode) for p in data.iterdir()}))
print(stat.S_IMODE(data.stat().st_mode))
"""


def test_row10_python_api_and_wal_files_under_umask_000(tmp_path: Path) -> None:
    data = tmp_path / "data"
    run = subprocess.run([sys.executable, "-c", API_SCRIPT, str(data)], capture_output=True,
                         text=True, cwd=Path(__file__).resolve().parents[2], timeout=120)
    assert run.returncode == 0, run.stderr
    import json

    open_modes, closed_modes, dir_mode = run.stdout.strip().splitlines()
    while_open = json.loads(open_modes)
    for wal in ("log.sqlite-wal", "log.sqlite-shm", "keys.sqlite-wal", "keys.sqlite-shm",
                "projections.duckdb.wal"):
        assert wal in while_open, sorted(while_open)
    assert {n: oct(m) for n, m in while_open.items() if m != 0o600} == {}
    assert {n: oct(m) for n, m in json.loads(closed_modes).items() if m != 0o600} == {}
    assert int(dir_mode) == 0o700


@pytest.mark.slow
def test_row10_loose_files_are_tightened_with_a_warning(tmp_path: Path) -> None:
    data = tmp_path / "data"
    assert ledger("--data", str(data), "init").returncode == 0
    events = events_file(tmp_path / "in.jsonl", 5)
    assert ledger("--data", str(data), "--now", NOW, "publish", str(events)).returncode == 0
    data.chmod(0o755)
    for name in ("log.sqlite", "keys.sqlite", "ledger.toml", "write.lock"):
        (data / name).chmod(0o644)
    result = ledger("--data", str(data), "subject", "id", "--email", "a@example.se",
                    "--controller", "cowrite")
    assert result.returncode == 0, result.stderr
    warnings = result.stderr.strip().splitlines()
    assert len(warnings) == 5 and all(w.startswith("warning: ") for w in warnings), warnings
    assert any("log.sqlite" in w and "0644" in w for w in warnings), warnings
    assert_private(data)
    again = ledger("--data", str(data), "subject", "id", "--email", "a@example.se",
                   "--controller", "cowrite")
    assert again.returncode == 0 and again.stderr == ""


def test_row10_a_loose_master_key_is_refused(tmp_path: Path) -> None:
    data = tmp_path / "data"
    assert ledger("--data", str(data), "init").returncode == 0
    (data / "master.key").chmod(0o640)
    result = ledger("--data", str(data), "subject", "id", "--email", "a@example.se",
                    "--controller", "cowrite")
    assert result.returncode == 2
    assert "master.key" in one_line_error(result)
    assert stat.S_IMODE((data / "master.key").stat().st_mode) == 0o640  # not silently fixed


def test_row10_ledger_toml_is_private_under_umask_000(tmp_path: Path) -> None:
    data = tmp_path / "data"
    assert ledger("--data", str(data), "init", umask=0).returncode == 0
    assert ledger("--data", str(data), "controller", "add", "newco", "--policy", "coegi",
                  umask=0).returncode == 0
    assert stat.S_IMODE((data / "ledger.toml").stat().st_mode) == 0o600
    assert_private(data)
