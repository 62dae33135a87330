"""``ledger demo``: publishes a realistic multi-year history for both seed controllers under a
moving ledger clock, so that everything downstream can be replayed and decided as of real
past dates."""

from __future__ import annotations

import time
from collections import Counter
from datetime import UTC, date, datetime
from typing import Any

from ledger.clock import FixedClock
from ledger.demo_history import generate_history
from ledger.service import Ledger, Progress, PublishReport
from ledger.timeutil import from_micros, to_micros


def run_demo(
    ledger: Ledger, *, subjects: int, seed: int, years: int = 5, progress: Progress | None = None
) -> dict[str, Any]:
    end_dt = from_micros(ledger.clock.now())
    end = end_dt.date()
    start = date(end.year - years, end.month, 1)
    original_clock = ledger.clock
    clock = FixedClock(0)
    ledger.clock = clock
    report = PublishReport()
    by_type: Counter[str] = Counter()
    people: dict[str, set[str]] = {}
    started = time.perf_counter()
    try:
        for batch in generate_history(subjects, seed, start=start, end=end):
            clock.set(to_micros(batch.recorded_at))
            for e in batch.events:
                by_type[e["type"]] += 1
                people.setdefault(e["controller"], set()).add(repr(sorted(e["subject"].items())))
            report.add(ledger.record_many(batch.events, origin="demo", progress=progress))
    finally:
        ledger.clock = original_clock
    elapsed = time.perf_counter() - started
    total = report.accepted + report.duplicates + report.rejected
    summary = {
        "data_dir": str(ledger.data_dir),
        "seed": seed,
        "from": start.isoformat(),
        "to": end.isoformat(),
        "accepted": report.accepted,
        "duplicates": report.duplicates,
        "rejected": report.rejected,
        "events_per_second": total / elapsed if elapsed else 0.0,
        "subjects": {c: len(s) for c, s in sorted(people.items())},
        "by_type": dict(by_type.most_common()),
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    from projections import project_and_summarise  # the demo ends with projected tables

    summary["projections"] = project_and_summarise(ledger)
    return summary
