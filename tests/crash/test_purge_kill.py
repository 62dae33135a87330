"""`ledger dead-letters purge` SIGKILLed at every step (issue 9, row 5's new entry point): the
next purge finishes the job, the file always parses, nothing after T is lost, and no key or
temporary file of the expired months is left behind."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ledger.app.service import Ledger
from ledger.domain.clock import FixedClock
from ledger.domain.timeutil import parse_timestamp

ROOT = Path(__file__).resolve().parents[2]
LEDGER = [sys.executable, "-c", "import cli; cli.main()"]


def _ledger(data: Path, *args: str, kill_at: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("LEDGER_NOW", None)
    if kill_at:
        env["LEDGER_TEST_KILL_AT"] = kill_at
    return subprocess.run([*LEDGER, "--data", str(data), *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)


def _secrets(data: Path) -> list[str]:
    import sqlite3

    with sqlite3.connect(data / "keys.sqlite") as con:
        return sorted(r[0] for r in con.execute("SELECT name FROM secrets WHERE name LIKE 'dead-letters%'"))


@pytest.fixture
def data(tmp_path: Path) -> Path:
    """Rejected lines of no subject in three months: each month its own dead-letter key."""
    data = tmp_path / "d"
    Ledger.init(data)
    with Ledger.open(data) as ledger:
        for when in ("2026-01-10", "2026-02-10", "2026-03-10"):
            ledger.clock = FixedClock(parse_timestamp(when))
            assert ledger.publish([f"not json {when}\n".encode()] * 2).rejected == 2
    return data


# The fast tier kills where a purge once left its temporary copy; the slow tier at every step.
@pytest.mark.parametrize("kill_at", ["dead-letters:temp-written:1", *(
    pytest.param(k, marks=pytest.mark.slow) for k in (
        "dead-letters:rewritten:1", "dead-letters:key-destroyed:1", "dead-letters:key-destroyed:2"))])
def test_row05_purge_sigkilled_then_purged_again_leaves_nothing_expired(data: Path, kill_at: str) -> None:
    killed = _ledger(data, "dead-letters", "purge", "--before", "2026-03-01", kill_at=kill_at)
    assert killed.returncode == -9, (killed.returncode, killed.stderr)
    listed = _ledger(data, "dead-letters", "--decrypt", "--json")  # the file parses, any state
    assert listed.returncode == 0, listed.stderr
    again = _ledger(data, "dead-letters", "purge", "--before", "2026-03-01", "--json")
    assert again.returncode == 0, again.stderr
    entries = json.loads(_ledger(data, "dead-letters", "--decrypt", "--json").stdout)
    assert [e["rejected_at"][:7] for e in entries] == ["2026-03", "2026-03"]
    assert {e["input_status"] for e in entries} == {"readable"}
    assert _secrets(data) == ["dead-letters/2026-03"]
    assert not [p.name for p in data.iterdir() if p.name.startswith(".dead-letters")]
