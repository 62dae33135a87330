"""``ledger audit decisions`` on a large demo history (issue 13 §5: the 2,000-subject demo took
34 s, 25 of them silent; the target there is <= 5 s).

Builds a demo history of ``--subjects`` people with its own sweep, then three monthly sweeps
after it (four sweep runs in all), then audits every sweep event in-process, as the CLI does.
Printed: the wall time of the audit, its parts (the incremental prefix replay, the facts queries
and the judging), sweep events judged per second and log records per second; and, on the same
log in the same run, the per-event facts query the audit used to make, timed on a sample of
the last run's events, as a ratio to the batched query now made once per run and controller.

    .venv/bin/python bench/bench_audit_decisions.py [--subjects 100000] [--sweeps end] [--keep DIR]

``--sweeps monthly`` (the demo's default) gives one sweep run per month of the five-year history
(about 64 runs); ``--sweeps end`` only the demo's final sweep, then the three later ones (4 runs:
a 100,000-subject history with monthly sweeps takes too long to build on a 2-core machine).
Peak RSS is the process's, history building excluded (it runs in subprocesses).

Building the history goes through the real pipeline (``ledger demo``) and takes about 14 s of
CPU per 1,000 subjects; ``--keep DIR`` builds it once and reuses it.
"""

from __future__ import annotations

import argparse
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ledger.app.audit_decisions import _run_facts, audit, known_policies, runs_of, sweep_events
from ledger.app.decisions import subject_facts
from ledger.app.service import Ledger
from projections.store.opener import open_prefix_replay

ROOT = Path(__file__).resolve().parents[1]
DEMO_AT = "2026-09-01T06:00:00Z"
SWEEPS_AT = ("2026-10-01T06:00:00Z", "2026-11-01T06:00:00Z", "2026-12-01T06:00:00Z")
SAMPLE = 200  # events of the last run timed one query each (the old way)


def ledger_cli(data: Path, *args: str) -> None:
    subprocess.run([sys.executable, str(ROOT / "cli.py"), "--data", str(data), *args],
                   check=True, stdout=subprocess.DEVNULL)


def build(data: Path, subjects: int, sweeps: str) -> None:
    started = time.perf_counter()
    ledger_cli(data, "--now", DEMO_AT, "demo", "--subjects", str(subjects), "--seed", "42",
               "--sweeps", sweeps)
    for at in SWEEPS_AT:
        ledger_cli(data, "--now", at, "sweep")
    print(f"built a {subjects:,}-subject demo history and {len(SWEEPS_AT)} later sweeps in "
          f"{time.perf_counter() - started:.0f} s")


def per_event_against_batched(ledger: Ledger) -> tuple[float, float, int]:
    """Seconds per event: one facts query per event (before issue 13 §5) and the run's batched
    query, on the prefix the last run saw."""
    policies = known_policies((), ledger)
    known_through, run = runs_of(sweep_events(ledger))[-1]
    sample = run[:SAMPLE]
    with open_prefix_replay(ledger) as prefix:
        prefix.through(known_through)
        with prefix.read_only() as con:
            t = time.perf_counter()
            for e in sample:
                subject_facts(con, policies[str(e.body["policy_hash"])], e.controller, e.subject)
            single = (time.perf_counter() - t) / len(sample)
            t = time.perf_counter()
            _run_facts(con, run, policies)
            batched = (time.perf_counter() - t) / len(run)
    return single, batched, len(run)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--subjects", type=int, default=100_000)
    parser.add_argument("--sweeps", choices=("monthly", "end"), default="end",
                        help="the demo's sweeps: every month of its history, or only at its end")
    parser.add_argument("--keep", type=Path, help="build the history here once and reuse it")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="bench-audit-decisions-"))
    data = args.keep or tmp / "ledger-data"
    try:
        if not (data / "log.sqlite").exists():
            build(data, args.subjects, args.sweeps)
        with Ledger.open(data) as ledger:
            records = ledger.log.head().position
            started = time.perf_counter()
            result = audit(ledger)
            seconds = time.perf_counter() - started
            s = result.summary()
            print(f"log: {records:,} records; {s['events']:,} sweep events in {s['sweep_runs']} runs "
                  f"({s['justified']:,} justified, {s['unjustified']} unjustified)")
            print(f"audit decisions: {seconds:.1f} s = {s['events'] / seconds:,.0f} sweep events/s, "
                  f"{records / seconds:,.0f} log records/s (target: <= 5 s on the 2,000-subject "
                  f"demo); peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:,.0f} MB")
            single, batched, run_size = per_event_against_batched(ledger)
            print(f"facts of the last run ({run_size:,} events): one query per event "
                  f"{single * 1000:.1f} ms/event (sample of {min(SAMPLE, run_size)}), batched "
                  f"{batched * 1000:.3f} ms/event: {single / batched:,.0f}x; the old way would spend "
                  f"{single * s['events']:.0f} s on facts alone")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
