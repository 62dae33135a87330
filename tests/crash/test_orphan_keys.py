"""A failed append leaves no data keys for events that never reached the log (SPEC §7a):
a real full disk (RLIMIT_FSIZE) and a real SIGKILL between the vault and the log."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from ledger.app.service import Ledger
from tests.conftest import make_event

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}

CHILD = """
import json, os, resource, signal, sys
from ledger.domain.clock import FixedClock
from ledger.domain.errors import LedgerError
from ledger.app.service import Ledger
from tests.crash.test_orphan_keys import batch
ledger = Ledger.open(sys.argv[1])
ledger.clock = FixedClock(1_772_700_000_000_000)
print(json.dumps(ledger.record_many(batch("acked", 5)).as_dict()), flush=True)
if sys.argv[2].startswith("full-disk"):
    # The disk fills up: no file may grow beyond the largest one now (the vault's few new key
    # rows fit in its write-ahead log; the log's megabytes of new events do not).
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    data = sys.argv[1]
    limit = max(os.path.getsize(os.path.join(data, f)) for f in os.listdir(data)) + 64 * 1024
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))
if sys.argv[2].startswith("kill:"):
    os.environ["LEDGER_TEST_CRASH_AT"] = sys.argv[2][5:]
try:
    ledger.record_many(batch("lost", 60))
except LedgerError as e:
    print("failed:", e, flush=True)
    if sys.argv[2] != "full-disk-then-space":
        sys.exit(3)
    resource.setrlimit(resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
    print(json.dumps(ledger.record_many(batch("lost", 60)).as_dict()), flush=True)
    sys.exit(4)
print("appended", flush=True)
"""


def batch(tag: str, n: int) -> list[dict]:
    return [make_event(subject={"email": f"{tag}{i}@example.se"}, pii={"note": "x" * 30_000})
            for i in range(n)]


def _subjects_with_keys(data_dir: Path) -> set[str]:
    con = sqlite3.connect(data_dir / "keys.sqlite")
    try:
        return {row[0] for row in con.execute("SELECT subject FROM data_keys")}
    finally:
        con.close()


def _check(data_dir: Path) -> None:
    with Ledger.open(data_dir) as ledger:
        events = [e for _, e in ledger.events()]
        logged = {e.subject for e in events}
        assert len(events) == 5
        for e in events:  # keys of acknowledged events are kept
            assert ledger.personal_data(e)["pii"] == {"note": "x" * 30_000}
    assert _subjects_with_keys(data_dir) == logged


def test_row15_a_full_disk_leaves_no_orphan_keys(data_dir: Path) -> None:
    child = subprocess.run([sys.executable, "-c", CHILD, str(data_dir), "full-disk"], cwd=ROOT,
                           env=ENV, capture_output=True, text=True, timeout=120)
    assert child.returncode == 3, (child.stdout, child.stderr)
    assert "failed:" in child.stdout
    _check(data_dir)


def test_row15_after_a_full_disk_the_same_ledger_appends_again_and_keeps_its_keys(data_dir: Path) -> None:
    child = subprocess.run([sys.executable, "-c", CHILD, str(data_dir), "full-disk-then-space"],
                           cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=120)
    assert child.returncode == 4, (child.stdout, child.stderr)
    assert json.loads(child.stdout.splitlines()[-1])["accepted"] == 60
    with Ledger.open(data_dir) as ledger:
        events = [e for _, e in ledger.events()]
        assert len(events) == 65
        for e in events:
            assert ledger.personal_data(e)["pii"] == {"note": "x" * 30_000}
        logged = {e.subject for e in events}
    assert _subjects_with_keys(data_dir) == logged


@pytest.mark.parametrize("point", ["after-keys", "after-append"])
def test_row15_sigkill_between_vault_and_log_leaves_no_orphan_keys(data_dir: Path, point: str) -> None:
    child = subprocess.run([sys.executable, "-c", CHILD, str(data_dir), f"kill:{point}"],
                           cwd=ROOT, env=ENV, capture_output=True,
                           text=True, timeout=120)
    assert child.returncode == -9, (child.stdout, child.stderr)
    assert json.loads(child.stdout.splitlines()[0])["accepted"] == 5
    if point == "after-keys":
        _check(data_dir)
    else:  # the log append committed before the kill: every key is kept, every event reads
        with Ledger.open(data_dir) as ledger:
            events = [e for _, e in ledger.events()]
            assert len(events) == 65
            for e in events:
                assert ledger.personal_data(e)["pii"] == {"note": "x" * 30_000}
