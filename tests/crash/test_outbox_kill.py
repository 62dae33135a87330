"""Recording an outbox report is one append (record first, there is nothing to act on after):
a SIGKILL before the append leaves nothing recorded and the message pending; a SIGKILL after it
leaves the report durable, and reporting again is a duplicate. Real processes, real SIGKILL at
the named points (``LEDGER_TEST_KILL_AT``, ledger/adapters/killpoints.py)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from ledger.app.outbox import pending
from ledger.app.service import Ledger
from tests.integration.test_outbox import build_history

ROOT = Path(__file__).resolve().parents[2]
LEDGER = [sys.executable, str(ROOT / "cli.py")]

pytestmark = pytest.mark.slow  # a subprocess per kill


def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*LEDGER, *args], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}, timeout=120)


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    path = tmp_path_factory.mktemp("outbox-kill") / "d"
    return path, build_history(path)


@pytest.mark.parametrize("point, recorded", [("outbox:locked", False), ("outbox:appended", True)])
def test_a_kill_around_the_append_is_harmless(history: tuple[Path, str], tmp_path: Path,
                                              point: str, recorded: bool) -> None:
    data = tmp_path / "d"
    shutil.copytree(history[0], data)
    notice_id = history[1]
    killed = _run("--data", str(data), "--now", "2026-06-30", "outbox", "delivered", notice_id,
                  env={"LEDGER_TEST_KILL_AT": f"{point}:1"})
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    with Ledger.open(data, now="2026-06-30") as ledger:
        still = [m.message_id for m in pending(ledger, kind="deletion_notice")]
    assert still == ([] if recorded else [notice_id])
    again = _run("--data", str(data), "--now", "2026-06-30", "outbox", "delivered", notice_id)
    assert again.returncode == 0, again.stderr
    assert ("already recorded (duplicate)" in again.stdout) == recorded
    verify = _run("--data", str(data), "audit", "verify")
    assert verify.returncode == 0, verify.stdout + verify.stderr
