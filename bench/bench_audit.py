"""`ledger audit verify` benchmark (issue 5: 10,000,000 records at >= 1,000,000 records/s,
reported next to bare ``hashlib.sha256`` over the same bytes in the same run).

Building the log: publishing 10M events through the full pipeline (validate, pseudonymise,
encrypt, encode) runs at ~10-30k events/s here, hours for 10M. So the log is built from a
small real demo history instead: its Avro payloads are re-encoded once with a sentinel event
id and recorded_at, and each benchmark record splices a fresh event id and a later
recorded_at into those bytes (both have fixed-size encodings), then goes through the real
``SQLiteEventLog.append`` (which computes the hash chain) in batches. Every record is thus a
valid ledger event whose payload matches its stored id, type and frame clock, so the decode
check has real work to do. Event ids are sequential (UUID-shaped) so the primary-key index
grows at its end; random ids would make building 10M rows crawl, and do not change verifying.

Measured, in one run on the same log:
- bare sha256: ``for frame in frames: sha256(frame).digest()`` over every record's stored
  bytes, the frames already in memory (read time excluded): the hashing ceiling of one core;
- ``ledger audit verify --no-decode`` (chain + clock checks), with --jobs 1 and --jobs N,
  as a subprocess, wall clock;
- ``ledger audit verify`` (also decodes every record), with --jobs N;
- ``ledger audit digest`` (chain + RFC 6962 Merkle tree), with --jobs N.

Wall-clock rates on a shared machine move with other people's load, so each figure is also
given per CPU second (user + system time of the command and its workers): on N idle cores a
run can reach at most N times that.

    .venv/bin/python bench/bench_audit.py [--records 10000000] [--jobs 2] [--keep DIR]
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import resource
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ledger.adapters.sqlite_log import SQLiteEventLog
from ledger.app.service import Ledger
from ledger.contracts.codec import AvroCodec
from ledger.demo.runner import run_demo
from ledger.domain.chain import PendingRecord
from ledger.domain.clock import FixedClock
from ledger.domain.timeutil import parse_timestamp

SENTINEL_ID = "ffffffff-ffff-4fff-bfff-ffffffffffff"
SENTINEL_AT = 1_577_836_800_123_457  # 2020-01-01T00:00:00.123457Z: an 8-byte Avro long
BATCH = 20_000
STEP = 1_000  # microseconds between records' recorded_at


def avro_long(n: int) -> bytes:
    z = (n << 1) ^ (n >> 63)
    out = bytearray()
    while z >= 0x80:
        out.append((z & 0x7F) | 0x80)
        z >>= 7
    out.append(z)
    return bytes(out)


@dataclasses.dataclass(frozen=True)
class Template:
    """An encoded event with holes for the event id (36 bytes) and recorded_at (8 bytes)."""

    head: bytes
    middle: bytes
    tail: bytes
    type: str

    def payload(self, event_id: str, recorded_at: int) -> bytes:
        return self.head + event_id.encode() + self.middle + avro_long(recorded_at) + self.tail


def make_templates(workdir: Path, subjects: int) -> list[Template]:
    """A real demo history, re-encoded with sentinels to find where id and clock sit."""
    data = workdir / "demo"
    Ledger.init(data)
    with Ledger.open(data) as ledger:
        ledger.clock = FixedClock(parse_timestamp("2026-11-01"))
        run_demo(ledger, subjects=subjects, seed=7, years=2, monthly_sweeps=False)
        events = [event for _, event in ledger.events()]
    codec = AvroCodec()
    marker_id, marker_at = SENTINEL_ID.encode(), avro_long(SENTINEL_AT)
    templates = []
    for event in events:
        encoded = codec.encode(dataclasses.replace(event, event_id=SENTINEL_ID, recorded_at=SENTINEL_AT))
        i, j = encoded.find(marker_id), encoded.find(marker_at)
        if encoded.count(marker_id) != 1 or encoded.count(marker_at) != 1 or j < i + 36:
            continue
        templates.append(Template(encoded[:i], encoded[i + 36 : j], encoded[j + 8 :], event.type))
    shutil.rmtree(data)
    return templates


def build_log(data: Path, records: int, templates: list[Template]) -> float:
    Ledger.init(data)
    log = SQLiteEventLog(data / "log.sqlite")
    at = parse_timestamp("2026-01-01")
    prefix = os.urandom(4).hex()
    started = time.perf_counter()
    done = 0
    try:
        while done < records:
            batch = []
            for i in range(done, min(records, done + BATCH)):
                t = templates[i % len(templates)]
                h = f"{prefix}{i:024x}"
                event_id = f"{h[:8]}-{h[8:12]}-4{h[13:16]}-8{h[17:20]}-{h[20:]}"
                batch.append(PendingRecord(event_id, t.type, "s", at + i * STEP, t.payload(event_id, at + i * STEP)))
            log.append(batch)
            done += len(batch)
            if done % 1_000_000 < BATCH:
                print(f"  built {done:,} records ({done / (time.perf_counter() - started):,.0f}/s)",
                      flush=True)
    finally:
        log.close()
    return time.perf_counter() - started


def bare_sha256(path: Path) -> tuple[int, int, float, float]:
    """Hashes every stored frame with a plain loop; only the hashing is timed (wall, CPU)."""
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    cursor = db.execute("SELECT state FROM stored_events ORDER BY rowid")
    sha256 = hashlib.sha256
    count = size = 0
    elapsed = cpu = 0.0
    while rows := cursor.fetchmany(65_536):
        frames = [r[0] for r in rows]
        started, started_cpu = time.perf_counter(), time.process_time()
        for frame in frames:
            sha256(frame).digest()
        elapsed += time.perf_counter() - started
        cpu += time.process_time() - started_cpu
        count += len(frames)
        size += sum(map(len, frames))
    db.close()
    return count, size, elapsed, cpu


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)  # includes the CLI's own workers
    return usage.ru_utime + usage.ru_stime


def ledger_cli(data: Path, *args: str) -> tuple[dict, float, float]:
    started, started_cpu = time.perf_counter(), children_cpu()
    result = subprocess.run([sys.executable, str(ROOT / "cli.py"), "--data", str(data), "audit", *args],
                            capture_output=True, text=True, check=False)
    elapsed, cpu = time.perf_counter() - started, children_cpu() - started_cpu
    if result.returncode != 0:
        raise SystemExit(f"ledger audit {' '.join(args)} failed ({result.returncode}): "
                         f"{result.stdout[-500:]} {result.stderr[-500:]}")
    return json.loads(result.stdout), elapsed, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, default=10_000_000)
    parser.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("--keep", type=Path, help="build the log here once and reuse it in later runs")
    parser.add_argument("--skip-decode", action="store_true", help="skip the (slow) decoding verify")
    parser.add_argument("--demo-subjects", type=int, default=300)
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="bench-audit-"))
    data = args.keep or tmp / "ledger-data"
    try:
        if not (data / "log.sqlite").exists():
            t = time.perf_counter()
            templates = make_templates(tmp, args.demo_subjects)
            print(f"{len(templates):,} template events from a demo history in {time.perf_counter() - t:.1f} s")
            built = build_log(data, args.records, templates)
            print(f"built {args.records:,} records through SQLiteEventLog.append in {built:.0f} s "
                  f"({args.records / built:,.0f}/s)")
        size = (data / "log.sqlite").stat().st_size
        print(f"log.sqlite: {size / 2**30:.2f} GiB")

        results: dict[str, object] = {}
        count, nbytes, bare, bare_cpu = bare_sha256(data / "log.sqlite")
        bare_rate, bare_cpu_rate = count / bare, count / bare_cpu
        print(f"bare sha256 (one core, frames in memory): {count:,} frames, {nbytes / count:.0f} B "
              f"avg, {bare:.1f} s = {bare_rate:,.0f} records/s ({nbytes / bare / 2**20:,.0f} MiB/s); "
              f"per CPU second {bare_cpu_rate:,.0f}")
        results.update(records=count, avg_record_bytes=round(nbytes / count),
                       bare_sha256_per_second=round(bare_rate),
                       bare_sha256_per_cpu_second=round(bare_cpu_rate))

        runs = [("verify_no_decode_jobs1", ("verify", "--no-decode", "--json", "--jobs", "1")),
                (f"verify_no_decode_jobs{args.jobs}", ("verify", "--no-decode", "--json", "--jobs", str(args.jobs))),
                (f"digest_jobs{args.jobs}", ("digest", "--jobs", str(args.jobs)))]
        if not args.skip_decode:
            runs.append((f"verify_decode_jobs{args.jobs}", ("verify", "--json", "--jobs", str(args.jobs))))
        for name, cli_args in runs:
            out, elapsed, cpu = ledger_cli(data, *cli_args)
            records = out.get("records", out.get("size"))
            if records != count or out.get("ok") is False:
                raise SystemExit(f"{name}: unexpected result {out}")
            rate, cpu_rate = count / elapsed, count / cpu
            print(f"ledger audit {' '.join(cli_args)}: {elapsed:.1f} s = {rate:,.0f} records/s "
                  f"= {rate / bare_rate:.2f} x bare sha256; {cpu:.1f} CPU s = {cpu_rate:,.0f} "
                  f"records per CPU second ({cpu_rate / bare_cpu_rate:.2f} x bare)")
            results[f"{name}_per_second"] = round(rate)
            results[f"{name}_ratio_to_bare_sha256"] = round(rate / bare_rate, 3)
            results[f"{name}_per_cpu_second"] = round(cpu_rate)
        best = max(v for k, v in results.items() if k.startswith("verify_no_decode") and k.endswith("second"))
        results.update(target_per_second=1_000_000, target_met=best >= 1_000_000,
                       cpus=os.cpu_count(), load_average=os.getloadavg())
        print(json.dumps(results))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
