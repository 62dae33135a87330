"""Several writers on one data directory at once (SPEC §7a): real processes, real files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from ledger.app.service import Ledger
from ledger.domain.clock import FixedClock
from ledger.domain.errors import KeyUnavailable
from ledger.domain.timeutil import parse_timestamp
from tests.conftest import make_event

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}
ENV.pop("LEDGER_NOW", None)

SHRED = """
import sys
from ledger.app.service import Ledger
with Ledger.open(sys.argv[1]) as ledger, ledger.writer_lock:
    print(ledger.vault.shred("cowrite", sys.argv[2], ["profile", "bookkeeping"]))
"""


def test_row03_a_key_shredded_by_another_process_is_never_used_for_new_data(data_dir: Path) -> None:
    with Ledger.open(data_dir) as a:
        a.clock = FixedClock(parse_timestamp("2026-03-05T12:00:00Z"))
        first = a.record(make_event(pii={"name": "Anna"}))  # the key is now in A's cache
        other = subprocess.run([sys.executable, "-c", SHRED, str(data_dir), first.subject],
                               cwd=ROOT, env=ENV, capture_output=True, text=True, check=True)
        assert "profile" in other.stdout
        second = a.record(make_event(pii={"name": "Anna again"}))
        assert second.position is not None
        events = {e.event_id: e for _, e in a.events()}
        assert a.personal_data(events[second.event_id])["pii"] == {"name": "Anna again"}
    with Ledger.open(data_dir) as fresh:
        events = {e.event_id: e for _, e in fresh.events()}
        new = events[second.event_id]
        assert fresh.personal_data(new)["pii"] == {"name": "Anna again"}
        assert new.pii is not None and int.from_bytes(new.pii[2:4], "big") == 2  # generation 2
        try:
            fresh.personal_data(events[first.event_id])
        except Exception as e:  # noqa: BLE001 - the shredded one stays unreadable
            assert "shredded" in str(e)
        else:
            raise AssertionError("the shredded key still decrypts")


@pytest.mark.slow
def test_row03_keys_fetched_by_pool_workers_are_checked_too(data_dir: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from ledger.app import service

    monkeypatch.setattr(service, "CHUNK", 100)  # many packages, several in flight at once
    monkeypatch.setattr(service, "PACKAGE", 200)
    anna = {"email": "Anna.Svensson@example.se"}
    events = [make_event(subject=anna if i % 10 == 0 else {"email": f"p{i}@example.se"},
                         pii={"name": f"n{i}"}) for i in range(2000)]
    shredded: list[str] = []
    cut: list[int] = []

    def shred_once(_: int) -> None:  # after the first commit, the workers hold Anna's key
        if not shredded:
            time.sleep(1.5)  # the workers prepare the packages in flight meanwhile
            cut.append(a.log.head().position)
            shredded.append(subprocess.run(
                [sys.executable, "-c", SHRED, str(data_dir), subject], cwd=ROOT, env=ENV,
                check=True, capture_output=True, text=True).stdout)

    with Ledger.open(data_dir) as a:
        a.clock = FixedClock(parse_timestamp("2026-03-05T12:00:00Z"))
        subject = a.subject_id("cowrite", email=anna["email"])
        report = a.record_many(events, workers=2, progress=shred_once)
        assert report.accepted == len(events) and "profile" in shredded[0]
    with Ledger.open(data_dir) as fresh:
        after = 0
        for record, e in fresh.events():
            if e.subject != subject or record.position <= cut[0]:
                continue  # Anna's events before the shred are unreadable, as they should be
            assert fresh.personal_data(e)["pii"]["name"].startswith("n")
            assert e.pii is not None and int.from_bytes(e.pii[2:4], "big") == 2
            after += 1
        assert after == 200 - cut[0] // 10


PUBLISHERS = 4
PER_PUBLISHER = 300


def _lines(n: int) -> str:
    return "".join(
        json.dumps(make_event(event_id=str(uuid.uuid5(uuid.NAMESPACE_OID, f"p{n}-{i}")),
                              subject={"email": f"p{n}-{i % 40}@example.se"},
                              occurred_at="2026-01-01T00:00:00Z")) + "\n"
        for i in range(PER_PUBLISHER)
    )


def _ledger(data_dir: Path, *args: str) -> subprocess.Popen:  # type: ignore[type-arg]
    return subprocess.Popen([sys.executable, "-m", "cli", "--data", str(data_dir), *args],
                            cwd=ROOT, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def test_row09_four_wall_clock_publishers(data_dir: Path, tmp_path: Path) -> None:
    files = []
    for n in range(PUBLISHERS):
        path = tmp_path / f"in{n}.jsonl"
        path.write_text(_lines(n))
        files.append(path)
    procs = [_ledger(data_dir, "publish", str(f), "--json") for f in files]
    results = [(p.wait(120), *p.communicate()) for p in procs]
    for rc, out, err in results:
        assert rc == 0, err
        assert json.loads(out)["accepted"] == PER_PUBLISHER
    verify = _ledger(data_dir, "audit", "verify")
    assert verify.wait(60) == 0, verify.communicate()
    with Ledger.open(data_dir) as ledger:
        stamps = [r.recorded_at for r in ledger.log.read()]
        assert len(stamps) == PUBLISHERS * PER_PUBLISHER
        assert stamps == sorted(stamps)
        for record, event in ledger.events():
            assert event.recorded_at == record.recorded_at
        last = stamps[-1]
    before = (data_dir / "log.sqlite").stat().st_size, sorted(os.listdir(data_dir))
    keys_before = _key_count(data_dir)
    (tmp_path / "in0x.jsonl").write_text(json.dumps(make_event(subject={"email": "new@example.se"}, occurred_at="2019-12-31T00:00:00Z")) + "\n")
    behind = _ledger(data_dir, "--now", "2020-01-01T00:00:00Z", "publish", str(tmp_path / "in0x.jsonl"))
    rc = behind.wait(60)
    out, err = behind.communicate()
    assert rc == 2, (out, err)
    assert "behind" in err and len(err.strip().splitlines()) == 1
    with Ledger.open(data_dir) as ledger:
        assert ledger.log.head().recorded_at == last
        assert ledger.log.head().position == PUBLISHERS * PER_PUBLISHER
    assert _key_count(data_dir) == keys_before
    assert sorted(os.listdir(data_dir)) == before[1]


def _key_count(data_dir: Path) -> int:
    import sqlite3

    con = sqlite3.connect(data_dir / "keys.sqlite")
    try:
        return int(con.execute("SELECT count(*) FROM data_keys").fetchone()[0])
    finally:
        con.close()


def test_row03_a_long_lived_reader_never_decrypts_with_a_key_another_process_shredded(
        data_dir: Path) -> None:
    with Ledger.open(data_dir) as a:
        a.clock = FixedClock(parse_timestamp("2026-03-05T12:00:00Z"))
        outcome = a.record(make_event(pii={"name": "Anna"}))
        event = next(e for _, e in a.events() if e.event_id == outcome.event_id)
        assert a.personal_data(event)["pii"] == {"name": "Anna"}  # the key is now in A's cache
        subprocess.run([sys.executable, "-c", SHRED, str(data_dir), outcome.subject],
                       cwd=ROOT, env=ENV, capture_output=True, text=True, check=True)
        try:
            a.personal_data(event)
        except KeyUnavailable as e:
            assert "shredded" in str(e)
        else:
            raise AssertionError("a shredded key still decrypts from the cache")
