"""Kill the publisher with SIGKILL mid-batch: every event it reported accepted is in the log,
the log reopens cleanly, its chain is intact and every stored blob still decrypts (keys are
durable before the ciphertext that needs them)."""

from __future__ import annotations

import itertools
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from ledger.app.service import Ledger
from tests.conftest import make_event

ROOT = Path(__file__).resolve().parents[2]
CHUNK = 300

CHILD = """
import sys
from ledger.domain.clock import FixedClock
from ledger.app.service import Ledger
from tests.integration.test_crash import chunk_events
ledger = Ledger.open(sys.argv[1])
ledger.clock = FixedClock(1_772_700_000_000_000)
for n in range(10_000):
    ledger.record_many(chunk_events(n))
    print(n, flush=True)
"""


def chunk_events(n: int) -> list[dict]:
    events = []
    for i in range(CHUNK):
        eid = str(uuid.uuid5(uuid.NAMESPACE_OID, f"crash-{n}-{i}"))
        person = f"person{(n * CHUNK + i) % 997}@example.se"
        events.append(make_event(event_id=eid, subject={"email": person},
                                 pii={"name": f"Person {i}"}))
    return events


# The fast tier runs trial 0; the slow tier the other random kill times too.
@pytest.mark.parametrize("trial", [0, *(pytest.param(t, marks=pytest.mark.slow) for t in (1, 2, 3))])
def test_sigkill_loses_no_acknowledged_event(data_dir: Path, trial: int) -> None:
    rng = random.Random(trial)
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(data_dir)], cwd=ROOT, stdout=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert child.stdout is not None
    wanted = rng.randint(1, 4)
    acknowledged = -1
    while acknowledged + 1 < wanted:
        line = child.stdout.readline()
        assert line, "the publisher died on its own"
        acknowledged = int(line)
    time.sleep(rng.uniform(0, 0.05))  # land inside the next batch
    child.send_signal(signal.SIGKILL)
    child.wait()
    # Anything acknowledged after our last read was also durable; count what we saw.
    with Ledger.open(data_dir) as ledger:
        records = list(ledger.log.read())
        stored_ids = {r.event_id for r in records}
        for n in range(acknowledged + 1):
            assert {e["event_id"] for e in chunk_events(n)} <= stored_ids
        assert len(records) % CHUNK == 0, "a batch was half-appended"
        assert [r.position for r in records] == list(range(1, len(records) + 1))
        for before, after in itertools.pairwise(records):
            assert after.prev_hash == before.hash
        for record in records[:: CHUNK // 3]:
            event = ledger.codec.decode(record.payload)
            assert ledger.personal_data(event) is not None
