"""Row 13 of issue 9: a damaged file of the data directory or a full disk is one line on
stderr naming the file and what to do, exit 2, and nothing else changes. Each case runs the
real CLI in a subprocess."""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.security.helpers import NOW, events_file, ledger, line, one_line_error
from tests.tiers import fast_rows

FILES = ("ledger.toml", "master.key", "keys.sqlite", "log.sqlite", "projections.duckdb",
         "dead-letters.jsonl")


@pytest.fixture(scope="module")
def good(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data directory with a few thousand events, projected, and a rejected line."""
    root = tmp_path_factory.mktemp("good")
    data = root / "data"
    assert ledger("--data", str(data), "init").returncode == 0
    events = events_file(root / "in.jsonl", 3000, rejected=1)
    assert ledger("--data", str(data), "--now", NOW, "publish", str(events)).returncode == 1
    assert ledger("--data", str(data), "project").returncode == 0
    return data


def digests(data: Path) -> dict[str, str]:
    return {name: hashlib.sha256((data / name).read_bytes()).hexdigest()
            for name in FILES if (data / name).exists()}


def truncate(name: str, fraction: float) -> Callable[[Path], None]:
    def damage(data: Path) -> None:
        path = data / name
        os.truncate(path, int(path.stat().st_size * fraction))
    return damage


def overwrite(name: str, offset: float, size: int) -> Callable[[Path], None]:
    def damage(data: Path) -> None:
        path = data / name
        with open(path, "r+b") as f:
            f.seek(int(path.stat().st_size * offset) // 4096 * 4096)
            f.write(b"\xff" * size)
    return damage


def scatter(name: str, size: int = 5000) -> Callable[[Path], None]:
    """Damages every 256 KiB block past the headers: a checksum error at whatever query first
    reads one (DuckDB reads blocks lazily, after the file opened fine)."""
    def damage(data: Path) -> None:
        path = data / name
        with open(path, "r+b") as f:
            for offset in range(3 * 4096 + 4096, path.stat().st_size, 256 * 1024):
                f.seek(offset)
                f.write(b"\xa5" * size)
    return damage


def binary_master_key(data: Path) -> None:
    (data / "master.key").write_bytes(bytes(range(256))[128:192])


def damaged_config(data: Path) -> None:
    (data / "ledger.toml").write_bytes(b"\xff\xfe[controllers.\x00")


SUBJECT_ID = ("subject", "id", "--email", "a@example.se", "--controller", "cowrite")
PUBLISH = ("--now", "2026-03-06T00:00:00Z", "publish", "IN")
PERMITS = ("permits", "--email", "person1@example.se", "--controller", "cowrite", "newsletter")

# (case, damage, damaged file, command, words the message must hold)
CASES = [
    ("vault truncated to a page", truncate("keys.sqlite", 0.0625), "keys.sqlite", SUBJECT_ID,
     "backup"),
    ("vault half truncated", truncate("keys.sqlite", 0.5), "keys.sqlite", PUBLISH, "backup"),
    ("vault emptied", truncate("keys.sqlite", 0), "keys.sqlite", SUBJECT_ID, "backup"),
    ("vault header overwritten", overwrite("keys.sqlite", 0, 100), "keys.sqlite", SUBJECT_ID,
     "backup"),
    ("log half truncated: publish", truncate("log.sqlite", 0.5), "log.sqlite", PUBLISH, "backup"),
    ("log half truncated: project", truncate("log.sqlite", 0.5), "log.sqlite", ("project",),
     "backup"),
    ("log header overwritten", overwrite("log.sqlite", 0, 100), "log.sqlite", PUBLISH, "backup"),
    ("log middle overwritten: verify", overwrite("log.sqlite", 0.5, 8 * 4096), "log.sqlite",
     ("audit", "verify"), "backup"),
    ("log middle overwritten: rebuild", overwrite("log.sqlite", 0.5, 8 * 4096), "log.sqlite",
     ("project", "--rebuild"), "backup"),
    ("projections truncated: project", truncate("projections.duckdb", 0.5),
     "projections.duckdb", ("project",), "--rebuild"),
    ("projections truncated: permits", truncate("projections.duckdb", 0.5),
     "projections.duckdb", PERMITS, "--rebuild"),
    ("projections truncated: decisions", truncate("projections.duckdb", 0.5),
     "projections.duckdb", ("--now", NOW, "decisions"), "--rebuild"),
    ("projections truncated to the header", truncate("projections.duckdb", 0.001),
     "projections.duckdb", ("project",), "--rebuild"),
    ("projections blocks overwritten: decisions", scatter("projections.duckdb"),
     "projections.duckdb", ("--now", NOW, "decisions"), "--rebuild"),
    ("projections blocks overwritten: permits", scatter("projections.duckdb"),
     "projections.duckdb", PERMITS, "--rebuild"),
    ("projections blocks overwritten: sweep", scatter("projections.duckdb"),
     "projections.duckdb", ("--now", NOW, "sweep", "--dry-run"), "--rebuild"),
    ("projections blocks overwritten: explain", scatter("projections.duckdb"),
     "projections.duckdb", ("--now", NOW, "explain", "--email", "person1@example.se",
                            "--controller", "cowrite"), "--rebuild"),
    # The entry points issue 9 added: damaged files are one line and exit 2 there too.
    ("vault half truncated: audit erasures", truncate("keys.sqlite", 0.5), "keys.sqlite",
     ("audit", "erasures"), "backup"),
    ("log header overwritten: audit erasures", overwrite("log.sqlite", 0, 100), "log.sqlite",
     ("audit", "erasures"), "backup"),
    ("vault half truncated: dead-letters purge", truncate("keys.sqlite", 0.5), "keys.sqlite",
     ("dead-letters", "purge", "--before", "2030-01-01"), "backup"),
    ("binary master.key", binary_master_key, "master.key", SUBJECT_ID, "backup"),
    ("binary ledger.toml", damaged_config, "ledger.toml", SUBJECT_ID, "ledger.toml"),
]


# The fast tier damages each kind of file once; the full suite every row.
FAST = {"vault half truncated", "log header overwritten", "projections truncated: permits",
        "projections blocks overwritten: sweep", "binary ledger.toml"}


@pytest.mark.parametrize(("case", "damage", "damaged", "command", "advice"),
                         fast_rows(CASES, FAST))
def test_row13_corrupt_file(good: Path, tmp_path: Path, case: str,
                            damage: Callable[[Path], None], damaged: str,
                            command: tuple[str, ...], advice: str) -> None:
    data = tmp_path / "data"
    shutil.copytree(good, data)
    damage(data)
    before = digests(data)
    events = events_file(tmp_path / "more.jsonl", 20)
    args = [str(events) if a == "IN" else a for a in command]
    result = ledger("--data", str(data), *args)
    assert result.returncode == 2, (result.returncode, result.stderr)
    message = one_line_error(result)
    assert damaged in message and advice in message, message
    assert digests(data) == before  # nothing else changed (nor the damaged file itself)


def test_row13_full_disk_at_the_vault(good: Path, tmp_path: Path) -> None:
    """New subjects need new keys: the vault's write fails first (SQLite then says
    'cannot rollback' over the disk I/O error)."""
    data = tmp_path / "data"
    shutil.copytree(good, data)
    before = digests(data)
    import uuid

    events = tmp_path / "more.jsonl"
    events.write_text("".join(
        line(event_id=str(uuid.UUID(int=10_000 + i, version=4)),
             subject={"email": f"newcomer{i}@example.se"}) + "\n" for i in range(3000)))
    # Writes past 100 kB fail (EFBIG, as on a full disk): the vault's WAL gets there first
    result = ledger("--data", str(data), "--now", "2026-03-06T00:00:00Z", "publish",
                    str(events), fsize=100_000)
    assert result.returncode == 2, result.stderr
    message = one_line_error(result)
    assert "keys.sqlite" in message and "disk" in message, message
    assert digests(data) == before
    verify = ledger("--data", str(data), "audit", "verify")
    assert verify.returncode == 0 and "ok: 3,000 records" in verify.stdout, verify.stdout


def test_row13_full_disk_at_the_log(good: Path, tmp_path: Path) -> None:
    """Known subjects (keys exist): the log's append is what fails; nothing is half-appended."""
    data = tmp_path / "data"
    shutil.copytree(good, data)
    before = digests(data)
    import uuid

    events = events_file(tmp_path / "more.jsonl", 3000)
    text = events.read_text()
    for i in range(3000):  # new event ids, same subjects
        text = text.replace(str(uuid.UUID(int=i + 1, version=4)),
                            str(uuid.UUID(int=10_000 + i, version=4)), 1)
    events.write_text(text)
    # Writes past 200 kB fail (EFBIG, as on a full disk): the log's WAL gets there
    result = ledger("--data", str(data), "--now", "2026-03-06T00:00:00Z", "publish",
                    str(events), fsize=200_000)
    assert result.returncode == 2, result.stderr
    message = one_line_error(result)
    assert "log.sqlite" in message and "disk" in message, message
    assert digests(data)["log.sqlite"] == before["log.sqlite"]
    assert digests(data)["dead-letters.jsonl"] == before["dead-letters.jsonl"]
    verify = ledger("--data", str(data), "audit", "verify")
    assert verify.returncode == 0 and "ok: 3,000 records" in verify.stdout, verify.stdout
