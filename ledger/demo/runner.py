"""``ledger demo``: publishes a realistic multi-year history for both seed controllers under a
moving ledger clock, so that everything downstream can be replayed and decided as of real
past dates."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, date, datetime
from typing import Any

from ledger.app.service import Ledger, Progress
from ledger.demo.history import demo_notices, generate_history
from ledger.domain.pseudonyms import normalise
from ledger.domain.retention.policy import load_policy
from ledger.domain.timeutil import from_micros, to_micros
from projections.engine.projector import project, projections_path
from projections.engine.projector import summary as projection_summary


def run_demo(
    ledger: Ledger,
    *,
    subjects: int,
    seed: int,
    years: int = 5,
    progress: Progress | None = None,
    workers: int = 1,
) -> dict[str, Any]:
    """Publishes the history ending at the ledger clock, one atomic append per simulated
    day, each stamped with that day's clock. Re-running with the same seed and clock appends
    nothing (every event id is a duplicate)."""
    end = from_micros(ledger.clock.now()).date()
    start = date(end.year - years, end.month, 1)
    by_type: Counter[str] = Counter()
    people: dict[str, set[str]] = {}

    def batches() -> Iterator[tuple[int, Sequence[Mapping[str, Any]]]]:
        for batch in generate_history(subjects, seed, start=start, end=end):
            for e in batch.events:
                by_type[e["type"]] += 1
                kind, value = next(iter(e["subject"].items()))
                person = value if kind == "id" else normalise(kind, value)
                people.setdefault(e["controller"], set()).add(person)
            yield to_micros(batch.recorded_at), batch.events

    notices = publish_demo_notices(ledger, start)
    started = time.perf_counter()
    report = ledger.record_batches(batches(), origin="demo", progress=progress, workers=workers)
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
        "events_per_second": round(total / elapsed) if elapsed else 0,
        # a second run into the same directory (same seed and clock): every event a duplicate
        "already_published": report.accepted == 0 and report.rejected == 0 and report.duplicates > 0,
        "notices": notices,
        "subjects": {c: len(s) for c, s in sorted(people.items())},
        "by_type": dict(by_type.most_common()),
    }
    # The demo ends with projected tables and the retention sweep run at the ledger clock.
    from ledger.app.sweep import sweep

    summary["projections"] = project_and_summarise(ledger)
    summary["sweep"] = sweep(ledger).as_dict()
    return summary


def publish_demo_notices(ledger: Ledger, start: date) -> int:
    """Publishes the demo's notice texts before any consent names them: each version on the
    day it took effect, or at the start of the history for those older than it. Returns how
    many were newly published (0 on a second run)."""
    from ledger.app.notices import publish_notice

    first = to_micros(datetime(start.year, start.month, start.day, tzinfo=UTC))
    published = 0
    for n in demo_notices():
        effective = to_micros(datetime(n.effective.year, n.effective.month, n.effective.day,
                                       tzinfo=UTC))
        outcome = publish_notice(ledger, ledger.notices, controller=n.controller,
                                 notice_id=n.notice_id, version=n.version, language=n.language,
                                 data=n.text.encode(), at=min(effective, first))
        published += outcome.status == "published"
    return published


def project_and_summarise(ledger: Ledger) -> dict[str, Any]:
    """Brings the projections up to date and summarises them as of the ledger clock, with each controller's retention policy deciding who counts as inactive."""
    report = project(ledger)
    periods = {c.name: load_policy(c.policy).inactive_after
               for c in ledger.config.controllers.values()}
    return {"projection": report.as_dict(),
            "by_controller": projection_summary(projections_path(ledger), ledger.clock.now(), periods)}
