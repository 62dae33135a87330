"""Record first, then act, for the sweep's signed checkpoint (issue 13 §2): a real ``ledger
sweep`` SIGKILLed after its events and effects are done but before it signs leaves the sweep's
record whole and no checkpoint; the next sweep at the same clock appends nothing and signs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from ledger import config as cfg
from tests.conftest import make_event

ROOT = Path(__file__).resolve().parents[2]
LEDGER = [sys.executable, str(ROOT / "cli.py")]
# The signer key of golang/mod sumdb/note/note_test.go (commit fe2ec04f).
PETER_SKEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
PETER_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"


def _run(*args: str, env: dict[str, str] | None = None, input: str | None = None,
         ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*LEDGER, *args], cwd=ROOT, capture_output=True, text=True, input=input,
                          env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}, timeout=120)


@pytest.mark.slow
def test_killed_before_signing_the_next_sweep_signs(tmp_path: Path) -> None:
    data = tmp_path / "d"
    assert _run("--data", str(data), "init").returncode == 0
    events = "".join(json.dumps(make_event("LoggedIn")) + "\n" for _ in range(4))
    assert _run("--data", str(data), "--now", "2026-03-05", "publish", "-", input=events).returncode == 0
    key = tmp_path / "checkpoint.key"
    key.write_text(PETER_SKEY + "\n")
    os.chmod(key, 0o600)
    with open(data / cfg.CONFIG_FILE, "a", encoding="utf-8") as f:
        f.write(f'\n[audit]\ncheckpoint_key = "{key}"\n')

    sweep = ("--data", str(data), "--now", "2027-06-01", "sweep", "--json")
    killed = _run(*sweep, env={"LEDGER_TEST_KILL_AT": "sweep:signing:1"})
    assert killed.returncode == -signal.SIGKILL
    size = json.loads(_run("--data", str(data), "audit", "digest").stdout)["size"]
    assert size > 4  # the sweep's events are in the log
    assert not (data / "checkpoints").exists()

    again = _run(*sweep)
    assert again.returncode == 0, again.stderr
    report = json.loads(again.stdout)
    assert report["appended"] == {}
    target = data / "checkpoints" / f"{size}.checkpoint"
    assert report["checkpoint"] == {"file": str(target), "size": size, "written": True,
                                    "signed_by": "PeterNeumann+c74f20a3", "error": None}
    verified = _run("--data", str(data), "audit", "verify", "--checkpoint", str(target),
                    "--key", PETER_VKEY)
    assert verified.returncode == 0, verified.stdout + verified.stderr
