"""Embedded append benchmark (issue: 1,000,000 demo events end to end).

End to end = read JSON lines + parse + validate + pseudonymise + encrypt + Avro-encode +
durable hash-chained append, through ``Ledger.publish``. Next to it, measured in the same run
on the same records: fastavro's bare ``schemaless_writer`` rate (the encode ceiling), so the
ratio is meaningful on a noisy shared machine.

    .venv/bin/python bench/bench_append.py [--events 1000000] [--workers 2]
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from io import BytesIO
from pathlib import Path

from fastavro import schemaless_writer

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ledger.app.service import Ledger
from ledger.demo.history import generate_history
from ledger.domain.clock import FixedClock
from ledger.domain.intake import iter_lines
from ledger.domain.timeutil import to_micros


def write_demo_lines(path: Path, events: int, seed: int) -> tuple[int, int]:
    """Writes at least ``events`` demo events as JSON lines; returns (count, last recorded_at)."""
    count, last = 0, 0
    subjects = max(100, events // 25)
    with open(path, "w", encoding="utf-8") as f:
        while count < events:
            for batch in generate_history(subjects, seed):
                for e in batch.events:
                    f.write(json.dumps(e, ensure_ascii=False) + "\n")
                count += len(batch.events)
                last = to_micros(batch.recorded_at)
                if count >= events:
                    break
            seed += 1  # not enough yet: another population
    return count, last


def publish(data_dir: Path, lines_path: Path, now: int, workers: int, limit: int | None) -> tuple[dict, float]:
    Ledger.init(data_dir)
    with Ledger.open(data_dir) as ledger, open(lines_path, "rb") as f:
        ledger.clock = FixedClock(now)
        lines = iter_lines(f)
        if limit is not None:
            lines = (line for _, line in zip(range(limit), lines, strict=False))
        started = time.perf_counter()
        report = ledger.publish(lines, origin="bench", workers=workers)
        return report.as_dict(), time.perf_counter() - started


def bare_encode_rate(data_dir: Path, sample: int) -> float:
    with Ledger.open(data_dir) as ledger:
        prepared = []
        for _, event in ledger.events():
            prepared.append((ledger.registry.latest(event.type).fast, event.to_record()))
            if len(prepared) >= sample:
                break
    buf = BytesIO()
    started = time.perf_counter()
    for schema, record in prepared:
        buf.seek(0)
        buf.truncate()
        schemaless_writer(buf, schema, record)
    return len(prepared) / (time.perf_counter() - started)


def peak_rss_mib() -> tuple[float, float]:
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return own, children


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--sequential-sample", type=int, default=200_000,
                        help="events also published with one process, for comparison")
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-append-") as tmp:
        tmpdir = Path(tmp)
        lines_path = tmpdir / "demo.jsonl"
        t = time.perf_counter()
        count, last = write_demo_lines(lines_path, args.events, args.seed)
        print(f"generated {count:,} demo events ({lines_path.stat().st_size / 2**20:,.0f} MiB JSON) "
              f"in {time.perf_counter() - t:.1f} s")
        now = last + 1

        report, elapsed = publish(tmpdir / "parallel", lines_path, now, args.workers, None)
        rate = report["accepted"] / elapsed
        print(f"end to end, {args.workers} worker processes: {report} in {elapsed:.1f} s "
              f"= {rate:,.0f} events/s")
        log_size = (tmpdir / "parallel" / "log.sqlite").stat().st_size
        print(f"  log.sqlite {log_size / 2**20:,.0f} MiB ({log_size / max(1, report['accepted']):.0f} B/event)")

        seq_report, seq_elapsed = publish(tmpdir / "sequential", lines_path, now, 1, args.sequential_sample)
        seq_rate = seq_report["accepted"] / seq_elapsed
        print(f"end to end, one process, first {args.sequential_sample:,}: {seq_rate:,.0f} events/s")

        bare = bare_encode_rate(tmpdir / "parallel", min(count, 300_000))
        print(f"fastavro bare schemaless encode, same records: {bare:,.0f} events/s")
        own, children = peak_rss_mib()
        print(f"peak RSS: publisher {own:,.0f} MiB, largest worker {children:,.0f} MiB")
        summary = {
            "events": report["accepted"],
            "events_per_second": round(rate),
            "events_per_second_one_process": round(seq_rate),
            "fastavro_bare_encode_per_second": round(bare),
            "ratio_to_bare_encode": round(rate / bare, 3),
            "target_events_per_second": 100_000,
            "target_met": rate >= 100_000,
            "peak_rss_mib": round(max(own, children)),
        }
        print(json.dumps(summary))


if __name__ == "__main__":
    main()
