"""Issue 9 row 2: record first, then act. The sweep's SubjectErased / SubjectPseudonymised are
durable in the log before keys are shredded or sealed; any open of the ledger completes what a
crash left undone; ``ledger audit erasures`` checks the invariant (every SubjectErased has its
keys destroyed, every destroyed key has a SubjectErased).

Real processes, real SIGKILL: the sweep runs as ``ledger sweep`` in a subprocess and is killed
either at a named point (``LEDGER_TEST_KILL_AT=<point>:<n>``, see ledger/adapters/killpoints.py) or after
a random delay; the test process then opens the ledger as any command would."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ledger.app.service import Ledger
from ledger.domain.clock import FixedClock
from ledger.domain.timeutil import parse_timestamp
from tests.conftest import make_event

ROOT = Path(__file__).resolve().parents[2]
LEDGER = [sys.executable, str(ROOT / "cli.py")]
SWEEP_AT = "2026-08-03"  # the inactive subjects' notices end; the new requests pseudonymise
INACTIVE = [f"inactive{i}@example.se" for i in range(5)]  # erased by the swept run
REQUESTERS = [f"requester{i}@example.se" for i in range(3)]  # pseudonymised by it
BILLED = "billed@example.se"  # erased except bookkeeping (legal hold)

# Named kill points the sweep passes through, with how many times each is reached.
POINTS = [("sweep:locked", 1), ("sweep:intents", 1), ("sweep:appended", 1),
          ("vault:complete", 1), ("vault:complete", 3), ("vault:complete", 6),
          ("vault:complete", 9), ("vault:completed", 1), ("sweep:done", 1)]


def _run(*args: str, env: dict[str, str] | None = None, input: str | None = None,
         ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*LEDGER, *args], cwd=ROOT, capture_output=True, text=True,
                          input=input, env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
                          timeout=120)


def _publish(ledger: Ledger, when: str, event_type: str, email: str, **kw: object) -> None:
    ledger.clock = FixedClock(parse_timestamp(when))
    ledger.record(make_event(event_type, occurred_at=when, subject={"email": email},
                             pii={"name": "A Person"}, **kw))


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small history, swept once on 2026-07-20 (notices sent); on 2026-08-03 five inactive
    subjects and one billed subject are due for erasure and three for pseudonymisation."""
    from ledger.app.sweep import sweep

    path = tmp_path_factory.mktemp("history") / "d"
    Ledger.init(path)
    with Ledger.open(path) as ledger:
        for email in [*INACTIVE, *REQUESTERS, BILLED]:
            _publish(ledger, "2025-06-01", "SubjectRegistered", email)
        for email in [*INACTIVE, *REQUESTERS, BILLED]:
            _publish(ledger, "2026-01-10", "LoggedIn", email)
        _publish(ledger, "2026-01-10", "InvoiceUsageRecorded", BILLED)
        ledger.clock = FixedClock(parse_timestamp("2026-07-20"))
        sweep(ledger, controller="cowrite")
        for n, email in enumerate(REQUESTERS):
            _publish(ledger, "2026-07-25", "LoggedIn", email)
            _publish(ledger, "2026-07-25", "RightsRequested", email, request_id=f"rq-{n}",
                     right="erasure")
    return path


@pytest.fixture
def data(history: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "d"
    shutil.copytree(history, copy)
    return copy


def _keys(data: Path) -> dict[tuple[str, str, str], tuple[int, int]]:
    con = sqlite3.connect(data / "keys.sqlite")
    try:
        return {(c, s, k): (g, sealed) for c, s, k, g, sealed in con.execute(
            "SELECT controller, subject, category, generation, sealed FROM data_keys")}
    finally:
        con.close()


def _erasures_ok(data: Path) -> None:
    result = _run("--data", str(data), "audit", "erasures", "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    assert json.loads(result.stdout)["findings"] == []


def _decisions_ok(data: Path) -> None:
    result = _run("--data", str(data), "audit", "decisions", "--json")
    assert result.returncode == 0, result.stdout + result.stderr


def _check_after_crash(data: Path, *, sweep_again: bool = True) -> None:
    """Open the ledger as any command does, then: the invariant holds and every sweep decision
    in the log, the interrupted run's included, is justified; with ``sweep_again``, a sweep at
    the same clock finishes the job (erased keys gone, sealed keys sealed) and both still hold."""
    from ledger.app.audit_decisions import audit as audit_decisions
    from ledger.app.erasure_audit import audit_erasures
    from ledger.app.sweep import sweep

    with Ledger.open(data, now=SWEEP_AT) as ledger:  # the open completes what was recorded
        assert audit_erasures(ledger).findings == []
        if not sweep_again:
            assert audit_decisions(ledger).ok
            return
        sweep(ledger, controller="cowrite")
        assert audit_erasures(ledger).findings == []
        assert audit_decisions(ledger).ok
        erased = {ledger.subject_id("cowrite", email=e) for e in [*INACTIVE, BILLED]}
        sealed = {ledger.subject_id("cowrite", email=e) for e in REQUESTERS}
    keys = _keys(data)
    # Of the erased subjects only the billed one's bookkeeping key (legal hold) remains.
    assert [k[2] for k in keys if k[1] in erased] == ["bookkeeping"]
    assert {k[1] for k in keys if k[1] in sealed} == sealed
    assert all(keys[k][1] == 1 for k in keys if k[1] in sealed)


def _kill_trial(data: Path, point: tuple[str, int] | None, delay: float | None = None) -> str:
    """Runs ``ledger sweep``; SIGKILLs it at the named point (it kills itself) or after the
    delay. Returns how it ended."""
    env = {"PYTHONPATH": str(ROOT)}
    if point is not None:
        env["LEDGER_TEST_KILL_AT"] = f"{point[0]}:{point[1]}"
    child = subprocess.Popen([*LEDGER, "--data", str(data), "--now", SWEEP_AT, "sweep"],
                             cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                             env={**os.environ, **env})
    try:
        if delay is not None:
            try:
                child.wait(timeout=delay)
            except subprocess.TimeoutExpired:
                child.send_signal(signal.SIGKILL)
        child.wait(timeout=120)
    finally:
        child.kill()
    assert child.stderr is not None
    err = child.stderr.read().decode()
    child.stderr.close()
    assert "Traceback" not in err, err
    if child.returncode != -signal.SIGKILL:
        return f"exit {child.returncode}"
    con = sqlite3.connect(data / "keys.sqlite")
    try:
        pending = con.execute("SELECT count(DISTINCT event_id) FROM pending_effects").fetchone()[0]
    finally:
        con.close()
    return f"killed, {pending} effects pending"


# The fast tier kills inside the record-then-act window; the slow tier at the others too.
@pytest.mark.parametrize("point", [pytest.param(("sweep:appended", 1), marks=pytest.mark.slow),
                                   ("vault:complete", 3),
                                   pytest.param(("sweep:intents", 1), marks=pytest.mark.slow)])
def test_row02_sweep_sigkill_at_named_points_keeps_the_invariant(
        data: Path, point: tuple[str, int]) -> None:
    assert _kill_trial(data, point).startswith("killed")
    _check_after_crash(data)


@pytest.mark.slow
def test_row02_sweep_sigkill_30_times_keeps_the_invariant(history: Path, tmp_path: Path) -> None:
    """Every named point once, then alternately a random delay within the time one sweep
    takes and a random effect inside the window between the record and the act."""
    rng = random.Random(2)
    timing = tmp_path / "timing"
    shutil.copytree(history, timing)
    started = time.monotonic()
    assert _kill_trial(timing, None) == "exit 0"
    duration = time.monotonic() - started
    outcomes: list[str] = []
    i = 0
    while sum(o.startswith("killed") for o in outcomes) < 30:  # a delay may outlive the sweep
        assert i < 45, outcomes
        data = tmp_path / f"t{i}"
        shutil.copytree(history, data)
        if i < len(POINTS):
            outcomes.append(_kill_trial(data, POINTS[i]))
        elif i % 2:
            outcomes.append(_kill_trial(data, None, rng.uniform(0.2, 0.7 * duration)))
        else:  # a random effect inside the record-then-act window
            outcomes.append(_kill_trial(data, ("vault:complete", rng.randint(1, 9))))
        _check_after_crash(data, sweep_again=i % 5 == 0)  # the fast tier sweeps again always
        shutil.rmtree(data)
        i += 1
    print(sorted(outcomes))
    assert sum(o.startswith("killed") and not o.startswith("killed, 0") for o in outcomes) >= 15


def test_row02_sweep_with_now_behind_the_log_destroys_and_seals_nothing(data: Path) -> None:
    with Ledger.open(data) as ledger:
        _publish(ledger, "2026-08-10", "LoggedIn", "someone@example.se")
    before = _keys(data)
    result = _run("--data", str(data), "--now", SWEEP_AT, "sweep")
    assert result.returncode == 2, result.stdout + result.stderr
    assert "behind" in result.stderr and "Traceback" not in result.stderr
    assert _keys(data) == before
    _erasures_ok(data)
    _decisions_ok(data)


PUBLISHER = """
import sys, time, uuid
from pathlib import Path
from ledger.domain.errors import ClockError
from ledger.app.service import Ledger
from tests.conftest import make_event
ledger = Ledger.open(sys.argv[1])
n = retried = 0
deadline = time.monotonic() + 60
while not Path(sys.argv[2]).exists() and time.monotonic() < deadline:
    try:
        # Fresh ids: make_event's counter restarts in this process (a reused id with other
        # content is a conflict, row 6).
        ledger.record(make_event("LoggedIn", occurred_at="2026-08-01T10:00:00Z",
                                 event_id=str(uuid.uuid4()),
                                 subject={"email": f"busy{n % 5}@example.se"}))
    except ClockError:  # row 9: a publisher reads the wall clock before the writer lock
        retried += 1
        continue
    n += 1
    if n == 5:
        print("publishing", flush=True)
print(n, retried, flush=True)
"""


@pytest.mark.slow
def test_row02_publish_during_a_wall_clock_sweep_keeps_the_invariant(data: Path, tmp_path: Path,
                                                                      ) -> None:
    """The wall clock is months after the history: every subject is due. A publisher appends
    one event at a time at the wall clock for as long as the sweep runs; the sweep succeeds,
    and the invariant holds."""
    stop = tmp_path / "stop"
    publisher = subprocess.Popen([sys.executable, "-c", PUBLISHER, str(data), str(stop)],
                                 cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        assert publisher.stdout is not None and publisher.stdout.readline() == "publishing\n"
        swept = _run("--data", str(data), "sweep", "--json")
    finally:
        stop.touch()
        _, err = publisher.communicate(timeout=120)
    assert publisher.returncode == 0, err
    assert swept.returncode == 0, swept.stderr
    # the history's six, and the busy subjects without a relationship (cowrite keeps none)
    assert json.loads(swept.stdout)["appended"].get("SubjectErased", 0) >= 6
    _erasures_ok(data)
    _decisions_ok(data)


def test_row02_active_again_after_a_crash_between_record_and_act(data: Path) -> None:
    assert _kill_trial(data, ("sweep:appended", 1)) == "killed, 9 effects pending"
    with Ledger.open(data) as ledger:  # the person logs in again before any further sweep
        erased = ledger.subject_id("cowrite", email=INACTIVE[0])
        _publish(ledger, "2026-08-04", "LoggedIn", INACTIVE[0])
    assert not [k for k in _keys(data) if k[1] == erased and k[2] == "profile"
                and k[0] == "cowrite" and _keys(data)[k][0] == 1]
    _erasures_ok(data)
    _decisions_ok(data)


def test_row02_audit_erasures_finds_a_shredded_key_without_a_record(data: Path) -> None:
    with Ledger.open(data) as ledger:
        subject = ledger.subject_id("cowrite", email=INACTIVE[0])
        ledger.vault.shred("cowrite", subject, ["profile"])
    result = _run("--data", str(data), "audit", "erasures")
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"cowrite {subject}" in result.stdout and "profile" in result.stdout
    assert "no SubjectErased" in result.stdout
