"""Deterministic crash points for the SIGKILL tests (issue 9 row 2).

``LEDGER_TEST_KILL_AT=<name>:<n>`` makes the process SIGKILL itself the n-th time it passes the
named point. Without that variable (every real run) ``reached`` is a dictionary lookup and
nothing else: no effect, no output."""

from __future__ import annotations

import os
import signal

_ENV = "LEDGER_TEST_KILL_AT"
_hits: dict[str, int] = {}


def reached(name: str) -> None:
    spec = os.environ.get(_ENV)
    if not spec:
        return
    point, _, count = spec.rpartition(":")
    if point != name:
        return
    _hits[name] = _hits.get(name, 0) + 1
    if _hits[name] == int(count or 1):
        os.kill(os.getpid(), signal.SIGKILL)
