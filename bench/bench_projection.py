"""Benchmark: full rebuild of the DuckDB projections from the embedded log (issue 3).

    python bench/bench_projection.py --events 10000000 [--naive-events 1000000]

Measures, on the same records:
  1. the full rebuild (``projections.project(rebuild=True)``) in a child process: events/s and
     peak RSS (VmHWM) of that process;
  2. bare fastavro decoding of the payloads (``schemaless_reader``, writer schema, nothing
     else): the bound on any projector that decodes record by record with fastavro;
  3. the straightforward approach a user of the ``eventsourcing`` library would write
     (bench/naive_projection.py): an ``eventsourcing.projection.Projection`` whose
     ``process_event`` decodes one event, applies it to the subject's aggregate and writes that
     aggregate's rows and the tracking position row by row; into DuckDB with a transaction per
     event (as ``process_event`` does), and, to be fair to it, into SQLite (a row store) with a
     transaction per event and per 1,000 events. On the first ``--naive-events`` records,
     each capped by ``--naive-seconds`` (its rate is then over the records it got through).

The log is generated once per size under bench/out/ (reused on later runs): a synthetic mix of
the demo's event types, written straight through the log port (``EventLog.append`` of encoded
records, hash chain and all) without intake or encryption: the ``pii`` blob is random bytes
of a realistic size, which is all a projector ever sees of it."""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import time
import uuid
from io import BytesIO
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ledger.adapters.sqlite_log import SQLiteEventLog
from ledger.app.service import Ledger
from ledger.contracts.codec import AvroCodec
from ledger.contracts.schemas import default_registry
from ledger.domain.chain import PendingRecord
from ledger.domain.events import Event

OUT = ROOT / "bench" / "out"
DAY = 86_400_000_000
START = 1_609_459_200_000_000  # 2021-01-01

# (type, weight, body factory): roughly the demo's mix, activity dominating.
PURPOSES = ("newsletter", "marketing", "profiling", "analytics", "coach_sharing", "matching")


def _mix(r: random.Random) -> list[tuple[str, float, Any]]:
    return [
        ("LoggedIn", 30, lambda: {"app": r.choice(("cowrite", "mina-sidor")), "method": r.choice(("bankid", "password"))}),
        ("ServiceUsed", 28, lambda: {"app": "cowrite", "feature": r.choice(("cv_builder", "letter", "review"))}),
        ("InvoiceUsageRecorded", 8, lambda: {"billed_party": "Matchning Norr AB", "units": r.randint(1, 9), "unit": "document", "amount_minor": r.randint(100, 90_000), "currency": "SEK", "invoice_ref": f"INV-{r.randint(1, 99999):05d}"}),
        ("ConsentGiven", 7, lambda: {"purpose": r.choice(PURPOSES), "notice_id": "nl-terms", "notice_version": str(r.randint(1, 4)), "notice_sha256": f"{r.getrandbits(256):064x}", "language": "sv", "ui_action": "Skicka", "channel": "web"}),
        ("ConsentWithdrawn", 2, lambda: {"purpose": r.choice(PURPOSES), "via": "settings"}),
        ("NewsletterSubscribed", 4, lambda: {"list": r.choice(("weekly", "offers")), "channel": r.choice(("email", "sms")), "double_opt_in": True}),
        ("Unsubscribed", 2, lambda: {"list": r.choice(("weekly", "offers", "*")), "channel": r.choice(("email", "*")), "via": "link"}),
        ("PersonalDataUpdated", 3, lambda: {"fields": ["address"], "origin": "register:SPAR"}),
        ("DataShared", 2, lambda: {"recipient_kind": "processor", "recipient": "Mailer AB", "basis": "contract"}),
        ("ObjectionRaised", 0.5, lambda: {"purpose": "marketing", "via": "email"}),
        ("RightsRequested", 0.3, lambda: {"request_id": f"rq-{r.getrandbits(40):x}", "right": r.choice(("access", "restriction", "erasure")), "scope": None}),
        ("RightsRequestClosed", 0.2, lambda: {"request_id": f"rq-{r.getrandbits(40):x}", "outcome": "fulfilled"}),
    ]


def generate(data_dir: Path, events: int, seed: int = 7) -> None:
    """Writes ``events`` records into a fresh ledger at ``data_dir``."""
    Ledger.init(data_dir)
    r = random.Random(seed)
    codec = AvroCodec(default_registry())
    log = SQLiteEventLog(data_dir / "log.sqlite")
    mix = _mix(r)
    types = [m[0] for m in mix]
    weights = [m[1] for m in mix]
    bodies = {m[0]: m[2] for m in mix}
    n_subjects = max(events // 25, 1)
    subjects = [f"{r.getrandbits(256):064x}" for _ in range(n_subjects)]
    registered: set[int] = set()
    step = (5 * 365 * DAY) // events  # five years of history
    started = time.perf_counter()
    chunk: list[PendingRecord] = []
    for i in range(events):
        recorded = START + i * step
        s = r.randrange(n_subjects)
        if s not in registered:
            registered.add(s)
            etype, body = "SubjectRegistered", {"relation": "user", "account_ref": None}
        else:
            etype = r.choices(types, weights)[0]
            body = bodies[etype]()
        # occurred shortly before recording; now and then a late, out-of-order event
        lag = r.randrange(DAY) if r.random() > 0.02 else r.randrange(60 * DAY)
        event = Event(etype, str(uuid.UUID(int=r.getrandbits(128), version=4)),
                      "cowrite" if s % 3 else "coegi", subjects[s], recorded - lag, recorded,
                      "web", "subject", body, r.randbytes(96) if r.random() < 0.5 else None)
        chunk.append(PendingRecord(event.event_id, etype, event.subject, recorded,
                                   codec.encode(event)))
        if len(chunk) == 20_000:
            log.append(chunk)
            chunk = []
            done = i + 1
            if done % 1_000_000 == 0:
                print(f"  generated {done:,} ({done / (time.perf_counter() - started):,.0f}/s)",
                      file=sys.stderr)
    if chunk:
        log.append(chunk)
    log.close()


def dataset(events: int) -> Path:
    data_dir = OUT / f"log-{events}"
    marker = data_dir / "complete"
    if not marker.exists():
        if data_dir.exists():
            import shutil

            shutil.rmtree(data_dir)
        print(f"generating {events:,} events in {data_dir} ...", file=sys.stderr)
        t = time.perf_counter()
        generate(data_dir, events)
        marker.write_text(f"{time.perf_counter() - t:.1f}s\n")
    return data_dir


def peak_rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


# --- the measurements, each in a child process (clean peak RSS) ------------------------------


def child_rebuild(data_dir: Path) -> dict[str, Any]:
    import projections

    target = data_dir / "bench.duckdb"
    for p in (target, target.with_name(target.name + ".wal")):
        p.unlink(missing_ok=True)
    with Ledger.open(data_dir) as ledger:
        report = projections.project(ledger, path=target, rebuild=True)
    return {**report.as_dict(), "peak_rss_mib": round(peak_rss_mib(), 1)}


def child_bare_decode(data_dir: Path, limit: int | None) -> dict[str, Any]:
    from fastavro import schemaless_reader

    registry = default_registry()
    schemas = {v.fingerprint: v.fast for v in registry.all_versions()}
    log = SQLiteEventLog(data_dir / "log.sqlite")
    n = 0
    elapsed = 0.0
    for page in log.read_pages(1, page_size=50_000):
        payloads = page.payloads if limit is None else page.payloads[: limit - n]
        t = time.perf_counter()
        for p in payloads:
            stream = BytesIO(p)
            stream.seek(10)
            schemaless_reader(stream, schemas[p[2:10]], None)
        elapsed += time.perf_counter() - t
        n += len(payloads)
        if limit is not None and n >= limit:
            break
    log.close()
    return {"events": n, "seconds": round(elapsed, 3), "events_per_second": round(n / elapsed)}


def child_naive(data_dir: Path, limit: int, max_seconds: float, commit_every: int,
                store: str) -> dict[str, Any]:
    from naive_projection import run_naive

    target = data_dir / f"naive.{store}"
    for suffix in ("", ".wal", "-wal", "-shm"):
        Path(str(target) + suffix).unlink(missing_ok=True)
    n, seconds = run_naive(data_dir, target, limit, max_seconds, commit_every, store)
    return {"events": n, "seconds": round(seconds, 3), "events_per_second": round(n / seconds),
            "peak_rss_mib": round(peak_rss_mib(), 1)}


def in_child(*args: str) -> dict[str, Any]:
    out = subprocess.run([sys.executable, __file__, *args], check=True, capture_output=True,
                         text=True, cwd=ROOT)
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--events", type=int, default=10_000_000)
    ap.add_argument("--naive-events", type=int, default=1_000_000)
    ap.add_argument("--naive-seconds", type=float, default=90.0)
    ap.add_argument("--bare-limit", type=int, default=None,
                    help="decode only the first N records for the fastavro baseline")
    ap.add_argument("--naive-commit-every", type=int, default=1_000,
                    help="the second naive run commits every N events (the first: every event)")
    ap.add_argument("--skip-naive", action="store_true")
    ap.add_argument("--naive-store", choices=("duckdb", "sqlite"), default="duckdb",
                    help=argparse.SUPPRESS)
    ap.add_argument("--child", choices=("rebuild", "bare", "naive"), help=argparse.SUPPRESS)
    ap.add_argument("--data", help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.child:
        data_dir = Path(args.data)
        if args.child == "rebuild":
            result = child_rebuild(data_dir)
        elif args.child == "bare":
            result = child_bare_decode(data_dir, args.bare_limit)
        else:
            result = child_naive(data_dir, args.naive_events, args.naive_seconds,
                                 args.naive_commit_every, args.naive_store)
        print(json.dumps(result))
        return

    data_dir = dataset(args.events)
    print(f"log: {args.events:,} events, {(data_dir / 'log.sqlite').stat().st_size / 2**20:,.0f} MiB",
          file=sys.stderr)
    rebuild = in_child("--child", "rebuild", "--data", str(data_dir))
    print(f"rebuild: {rebuild}", file=sys.stderr)
    bare_args = ["--child", "bare", "--data", str(data_dir)]
    if args.bare_limit:
        bare_args += ["--bare-limit", str(args.bare_limit)]
    bare = in_child(*bare_args)
    print(f"bare fastavro decode: {bare}", file=sys.stderr)
    summary: dict[str, Any] = {
        "events": args.events,
        "load_average_at_start": os.getloadavg(),
        "rebuild": rebuild,
        "bare_fastavro_decode": bare,
        "rebuild_vs_bare_decode": round(rebuild["events_per_second"] / bare["events_per_second"], 3),
        "target_events_per_second": 500_000,
        "target_met": rebuild["events_per_second"] >= 500_000 and rebuild["peak_rss_mib"] <= 1024,
    }
    if not args.skip_naive:
        every_n = args.naive_commit_every
        for label, store, every in (
            ("naive_duckdb_commit_per_event", "duckdb", 1),
            ("naive_sqlite_commit_per_event", "sqlite", 1),
            (f"naive_sqlite_commit_per_{every_n}", "sqlite", every_n),
        ):
            naive = in_child("--child", "naive", "--data", str(data_dir), "--naive-events",
                             str(args.naive_events), "--naive-seconds", str(args.naive_seconds),
                             "--naive-commit-every", str(every), "--naive-store", store)
            print(f"{label}: {naive}", file=sys.stderr)
            summary[label] = naive
            summary[f"rebuild_vs_{label}"] = round(
                rebuild["events_per_second"] / naive["events_per_second"], 1)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / f"bench_projection-{args.events}.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
