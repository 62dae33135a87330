"""Exactly-once (SPEC §7): SIGKILL the projector at random points and resume; the tables must
equal a clean rebuild every time (same fingerprint), with no loss and no double counting."""

from __future__ import annotations

import multiprocessing
import os
import random
import signal
import time
import uuid
from pathlib import Path

import projections
from ledger.events import Event
from ledger.log import PendingRecord
from ledger.service import Ledger

TRIALS = 24
EVENTS = 4_000
PAGE = 100  # many small commits, so kills land before, inside and after them

TYPES = {
    "LoggedIn": {"app": "cowrite", "method": "bankid"},
    "ServiceUsed": {"app": "cowrite", "feature": "cv"},
    "ConsentGiven": {"purpose": "profiling", "notice_id": "n", "notice_version": "1",
                     "notice_sha256": None, "language": "sv", "ui_action": "Skicka",
                     "channel": "web"},
    "ConsentWithdrawn": {"purpose": "profiling", "via": "settings"},
    "RightsRequested": {"request_id": "rq-1", "right": "restriction", "scope": None},
    "RightsRequestClosed": {"request_id": "rq-1", "outcome": "refused"},
    "DataShared": {"recipient_kind": "coach", "recipient": "Y AB", "basis": "consent"},
}


def build_log(ledger: Ledger, rng: random.Random) -> None:
    t0 = 1_767_225_600_000_000
    pending = []
    for i in range(EVENTS):
        if i % 997 == 0:  # now and then a record no schema knows: a projection error
            pending.append(PendingRecord(str(uuid.uuid4()), "Future", "s", t0 + i,
                                         b"\xc3\x01" + bytes(9)))
            continue
        etype = rng.choice(list(TYPES))
        e = Event(etype, str(uuid.UUID(int=rng.getrandbits(122), version=4)), "cowrite",
                  f"{rng.randrange(300):064x}", t0 + rng.randrange(10**12), t0 + i, "web",
                  "subject", dict(TYPES[etype]))
        pending.append(PendingRecord(e.event_id, e.type, e.subject, e.recorded_at,
                                     ledger.codec.encode(e)))
    ledger.log.append(pending)


def project_in_child(data_dir: Path, db: Path, rebuild: bool) -> None:
    with Ledger.open(data_dir) as ledger:
        projections.project(ledger, path=db, rebuild=rebuild, page_size=PAGE)


def test_sigkill_at_random_points_then_resume_equals_rebuild(data_dir: Path, tmp_path: Path) -> None:
    rng = random.Random(20260305)
    ledger = Ledger.open(data_dir)
    build_log(ledger, rng)
    clean = tmp_path / "clean.duckdb"
    started = time.perf_counter()
    projections.project(ledger, path=clean, page_size=PAGE)
    full_run = time.perf_counter() - started
    expected = projections.fingerprint(clean, ledger.registry)

    fork = multiprocessing.get_context("fork")
    db = tmp_path / "crashed.duckdb"
    killed_at: list[int] = []
    for trial in range(TRIALS):
        rebuild = trial % 3 == 2  # also kill rebuilds that are emptying a projected file
        if trial % 4 == 0:
            for p in (db, db.with_name(db.name + ".wal")):
                p.unlink(missing_ok=True)
        child = fork.Process(target=project_in_child, args=(data_dir, db, rebuild))
        child.start()
        time.sleep(rng.uniform(0.0, full_run * 1.3))
        os.kill(child.pid, signal.SIGKILL)  # type: ignore[arg-type]
        child.join()
        killed_at.append(projections.stored_position(db))
        projections.project(ledger, path=db, page_size=PAGE)
        assert projections.fingerprint(db, ledger.registry) == expected, (
            f"trial {trial}: killed at position {killed_at[-1]}")
    ledger.close()
    # the kills really landed mid-projection, not only before the start or after the end
    assert len({p for p in killed_at if 0 < p < EVENTS}) >= 5, killed_at
