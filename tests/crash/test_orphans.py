"""Row 16 of issue 9: a SIGKILLed ``ledger demo`` leaves no processes behind. Its parallel
publish starts worker processes (and multiprocessing's resource tracker); once the parent
is killed, every child of it is gone within 5 seconds."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LEDGER = Path(sys.executable).with_name("ledger")


def children(pid: int) -> dict[int, str]:
    """pid -> command line of every live (not zombie) process whose parent is ``pid``."""
    found: dict[int, str] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue
        state, ppid = stat[stat.rindex(")") + 2:].split()[:2]
        if int(ppid) == pid and state != "Z":
            found[int(entry)] = cmdline.replace(b"\0", b" ").decode(errors="replace")
    return found


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2:].split()[0] != "Z"


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc (Linux)")
@pytest.mark.parametrize("settle", [pytest.param(0.0, marks=pytest.mark.slow), 1.5],
                         ids=["while-starting", "while-working"])  # the fast tier: while working
def test_row16_workers_die_with_parent(tmp_path: Path, settle: float) -> None:
    # 1,000 subjects are ~31,000 events: more than PARALLEL_AFTER packages, so the publish
    # goes to 2 worker processes.
    parent = subprocess.Popen(
        [str(LEDGER), "--data", str(tmp_path / "data"), "--now", "2026-11-01", "demo",
         "--subjects", "1000", "--sweeps", "end", "--workers", "2"],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    seen: dict[int, str] = {}
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and parent.poll() is None:
            seen.update(children(parent.pid))
            if sum("spawn_main" in c for c in seen.values()) >= 2:
                break
            time.sleep(0.02)
        assert sum("spawn_main" in c for c in seen.values()) >= 2, seen
        time.sleep(settle)  # 0: kill while the workers still start; 1.5: while they work
        seen.update(children(parent.pid))
        assert parent.poll() is None, "the demo finished before it could be killed"
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait()
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and any(alive(p) for p in seen):
            time.sleep(0.1)
        left = {p: c for p, c in seen.items() if alive(p)}
        assert not left, f"orphans 5 s after the parent was killed: {left}"
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
        for pid in seen:  # never leave our own strays behind, even when the test fails
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
