"""Row 14 of issue 9: `project --rebuild` builds into a new file next to the projections and
swaps it in with one rename only when complete; a failure (an unreadable log) or a SIGKILL
leaves the last good projections byte-identical, and the next rebuild removes the leftovers."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.security.helpers import LEDGER, NOW, events_file, ledger, one_line_error

EVENTS = 4000


@pytest.fixture(scope="module")
def good(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("rebuild")
    data = root / "data"
    assert ledger("--data", str(data), "init").returncode == 0
    events = events_file(root / "in.jsonl", EVENTS)
    assert ledger("--data", str(data), "--now", NOW, "publish", str(events)).returncode == 0
    assert ledger("--data", str(data), "project").returncode == 0
    assert not (data / "projections.duckdb.wal").exists()
    return data


def count_events(data: Path) -> str:
    result = ledger("--data", str(data), "query", "SELECT count(*) AS n FROM events", "--csv")
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()[1]


def rebuild_leftovers(data: Path) -> list[str]:
    return sorted(p.name for p in data.iterdir() if ".rebuild-" in p.name)


def test_row14_rebuild_on_a_damaged_log_keeps_the_projections(good: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    shutil.copytree(good, data)
    before = (data / "projections.duckdb").read_bytes()
    log = data / "log.sqlite"
    with open(log, "r+b") as f:  # overwrite pages in the middle of the log
        f.seek(log.stat().st_size // 2 // 4096 * 4096)
        f.write(b"\xff" * 8 * 4096)
    result = ledger("--data", str(data), "project", "--rebuild")
    assert result.returncode == 2, result.stderr
    assert "log.sqlite" in one_line_error(result)
    assert (data / "projections.duckdb").read_bytes() == before
    assert count_events(data) == str(EVENTS)
    assert rebuild_leftovers(data) == []


def test_row14_rebuild_replaces_the_file_when_complete(good: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    shutil.copytree(good, data)
    old_inode = (data / "projections.duckdb").stat().st_ino
    result = ledger("--data", str(data), "project", "--rebuild")
    assert result.returncode == 0, result.stderr
    assert (data / "projections.duckdb").stat().st_ino != old_inode  # a new file, renamed in
    assert count_events(data) == str(EVENTS)
    assert rebuild_leftovers(data) == []


def test_row14_sigkill_during_a_rebuild_leaves_the_old_file(good: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    shutil.copytree(good, data)
    target = data / "projections.duckdb"
    before = target.read_bytes()
    child = subprocess.Popen([LEDGER, "--data", str(data), "project", "--rebuild"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    seen = False
    while child.poll() is None and time.monotonic() < deadline:
        if rebuild_leftovers(data):  # the rebuild has started writing its new file
            seen = True
            break
        time.sleep(0.002)
    if child.poll() is None:
        os.kill(child.pid, signal.SIGKILL)
    child.wait()
    assert seen, "no rebuild file appeared next to the projections"
    assert target.read_bytes() == before
    assert count_events(data) == str(EVENTS)
    assert rebuild_leftovers(data)  # the killed rebuild's file ...
    again = ledger("--data", str(data), "project", "--rebuild")
    assert again.returncode == 0, again.stderr
    assert rebuild_leftovers(data) == []  # ... is removed by the next rebuild
    assert count_events(data) == str(EVENTS)


@pytest.mark.slow
def test_row14_rebuild_repairs_a_truncated_projections_file(good: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    shutil.copytree(good, data)
    target = data / "projections.duckdb"
    os.truncate(target, target.stat().st_size // 2)
    result = ledger("--data", str(data), "project", "--rebuild")
    assert result.returncode == 0, result.stderr
    assert count_events(data) == str(EVENTS)


@pytest.mark.slow
def test_row14_a_full_disk_during_a_rebuild_leaves_the_old_file(good: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    shutil.copytree(good, data)
    target = data / "projections.duckdb"
    before = target.read_bytes()
    # Writes past 512 kB fail (EFBIG, as on a full disk): the new file cannot grow
    result = ledger("--data", str(data), "project", "--rebuild", fsize=512 * 1024)
    assert result.returncode == 2, result.stderr
    assert "disk" in one_line_error(result)
    assert target.read_bytes() == before
    assert count_events(data) == str(EVENTS)
    assert rebuild_leftovers(data) == []
