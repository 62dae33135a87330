"""Shared by the security and crash tests: the real ``ledger`` CLI in a subprocess."""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
from pathlib import Path

LEDGER = str(Path(sys.executable).with_name("ledger"))
NOW = "2026-03-05T12:00:00Z"


def ledger(*args: str, umask: int | None = None, fsize: int | None = None,
           input: bytes | None = None, env: dict[str, str] | None = None,
           ) -> subprocess.CompletedProcess[str]:
    """Runs ``ledger ARGS`` as a separate process, optionally under a umask or a file-size
    limit (RLIMIT_FSIZE with SIGXFSZ ignored: writes past it fail with EFBIG, as on a full
    disk)."""

    def setup() -> None:
        if umask is not None:
            os.umask(umask)
        if fsize is not None:
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
            resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))

    full_env = {k: v for k, v in os.environ.items() if not k.startswith("LEDGER_")}
    full_env.update(env or {})
    return subprocess.run([LEDGER, *args], preexec_fn=setup, capture_output=True,
                          input=input.decode() if input is not None else None, text=True,
                          env=full_env, timeout=300)


def line(**overrides: object) -> str:
    event = {
        "type": "LoggedIn", "controller": "cowrite", "occurred_at": "2026-03-01T09:30:00Z",
        "source": "web", "actor": "subject", "subject": {"email": "anna@example.se"},
        "app": "cowrite", "method": "bankid", "pii": {"name": "Anna Svensson"},
        **overrides,
    }
    return json.dumps(event)


def events_file(path: Path, n: int, *, rejected: int = 0) -> Path:
    """``n`` valid LoggedIn lines for a few subjects, then ``rejected`` malformed lines."""
    import uuid

    lines = [line(event_id=str(uuid.UUID(int=i + 1, version=4)),
                  subject={"email": f"person{i % 50}@example.se"}) for i in range(n)]
    lines += ["this is not json"] * rejected
    path.write_text("\n".join(lines) + "\n")
    return path


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    """The single stderr line of a failed command (asserts there is exactly one)."""
    lines = result.stderr.strip().splitlines()
    assert "Traceback" not in result.stderr, result.stderr
    assert len(lines) == 1, result.stderr
    return lines[0]
