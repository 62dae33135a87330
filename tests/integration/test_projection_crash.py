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
from typing import Any

import pytest

import projections
from ledger.app.service import Ledger
from ledger.domain.chain import PendingRecord
from ledger.domain.events import Event
from projections.engine.projector import Projector
from projections.store.duckdb_store import DuckDBStore

TRIALS = 20  # the slow tier; the fast tier runs FAST_TRIALS of the same trials
FAST_TRIALS = 4
EVENTS = 2_000
PAGE = 80  # many small commits, so kills land before, inside and after them

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


T0 = 1_767_225_600_000_000  # record i is recorded at T0 + i


def build_log(ledger: Ledger, rng: random.Random) -> None:
    t0 = T0
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


def project_in_child(data_dir: Path, db: Path, rebuild: bool, done: Any) -> None:
    def progress(n: int) -> None:  # called after each page's commit
        with done.get_lock():
            done.value += n

    with Ledger.open(data_dir) as ledger:
        projections.project(ledger, path=db, rebuild=rebuild, page_size=PAGE, progress=progress)


def project_prefix(ledger: Ledger, db: Path, records: int) -> None:
    """A file that reflects the first ``records`` records (recorded_at is T0 + index)."""
    store = DuckDBStore(db, ledger.registry)
    try:
        Projector(ledger.log, store, ledger.registry, page_size=PAGE).run(
            recorded_by=T0 + records - 1)
    finally:
        store.close()


def test_sigkill_at_random_points_then_resume_equals_rebuild_fast(data_dir: Path,
                                                                  tmp_path: Path) -> None:
    """The first FAST_TRIALS trials (a fresh load, a catch-up, a rebuild, a catch-up), for the
    fast tier."""
    sigkill_and_resume(data_dir, tmp_path, FAST_TRIALS)


@pytest.mark.slow
def test_sigkill_at_random_points_then_resume_equals_rebuild(data_dir: Path, tmp_path: Path) -> None:
    sigkill_and_resume(data_dir, tmp_path, TRIALS)


def sigkill_and_resume(data_dir: Path, tmp_path: Path, trials: int) -> None:
    rng = random.Random(20260305)
    ledger = Ledger.open(data_dir)
    build_log(ledger, rng)
    clean = tmp_path / "clean.duckdb"
    projections.project(ledger, path=clean, page_size=PAGE)
    expected = projections.fingerprint(clean, ledger.registry)

    fork = multiprocessing.get_context("fork")
    db = tmp_path / "crashed.duckdb"
    killed_at: list[int] = []
    for trial in range(trials):
        # a fresh bulk load, an incremental catch-up from a random prefix, or a rebuild of a
        # complete file
        mode = ("fresh", "incremental", "rebuild", "incremental")[trial % 4]
        if mode != "rebuild":
            for p in (db, db.with_name(db.name + ".wal")):
                p.unlink(missing_ok=True)
        if mode == "incremental":
            project_prefix(ledger, db, rng.randrange(1, EVENTS))
        done = fork.Value("i", 0)
        child = fork.Process(target=project_in_child, args=(data_dir, db, mode == "rebuild", done))
        child.start()
        # kill once a random number of records is committed, a random moment later: inside a
        # page, its commit, the final reduce or checkpoint, or after the end
        target = rng.randrange(0, EVENTS + PAGE)
        deadline = time.monotonic() + 30
        while done.value < target and child.is_alive() and time.monotonic() < deadline:
            time.sleep(0.001)
        time.sleep(rng.uniform(0.0, 0.05))
        if child.is_alive():  # is_alive() reaps a child that already finished
            os.kill(child.pid, signal.SIGKILL)  # type: ignore[arg-type]
        child.join()
        killed_at.append(projections.stored_position(db))
        projections.project(ledger, path=db, page_size=PAGE)
        assert projections.fingerprint(db, ledger.registry) == expected, (
            f"trial {trial} ({mode}): killed at position {killed_at[-1]}")
    ledger.close()
    # the kills really landed mid-projection, not only before the start or after the end
    assert len({p for p in killed_at if 0 < p < EVENTS}) >= trials // 4, killed_at
