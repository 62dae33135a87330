"""``ledger demo``: publishes a realistic multi-year history for both seed controllers under a
moving ledger clock, so that everything downstream can be replayed and decided as of real
past dates."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from itertools import groupby
from typing import Any

from ledger.app.service import Ledger, Progress
from ledger.demo.history import demo_notices, generate_history
from ledger.domain.clock import FixedClock
from ledger.domain.pseudonyms import normalise
from ledger.domain.retention.policy import load_policy
from ledger.domain.timeutil import from_micros, to_micros
from projections.engine.projector import project, projections_path
from projections.engine.projector import summary as projection_summary


def history_span(ledger: Ledger, years: int) -> tuple[date, date]:
    """The first and last simulated day of a history of ``years`` ending at the ledger clock."""
    end = from_micros(ledger.clock.now()).date()
    return date(end.year - years, end.month, 1), end


def history_days(ledger: Ledger, years: int) -> int:
    """How many simulated days the demo publishes (the total of its progress)."""
    start, end = history_span(ledger, years)
    return (end - start).days + 1


def _month(at: datetime) -> tuple[int, int]:
    return at.year, at.month


def _first_of_next_month(year: int, month: int) -> int:
    """00:00 UTC on the first of the month after (year, month): after that month's last batch
    (stamped 23:30) and before the next month's first."""
    nxt = date(year + month // 12, month % 12 + 1, 1)
    return to_micros(datetime(nxt.year, nxt.month, nxt.day, tzinfo=UTC))


def _monthly_sweep(ledger: Ledger, at: int, totals: Counter[str]) -> bool:
    """The retention sweep as it would have run at ``at``, under a clock set to it; skipped
    when the log already holds later records (the history was published before)."""
    from ledger.app.sweep import sweep

    if ledger.log.last_recorded_at() > at:
        return False
    clock = ledger.clock
    ledger.clock = FixedClock(at)
    try:
        report = sweep(ledger)
    finally:
        ledger.clock = clock
    totals.update(report.appended)
    return True


def run_demo(
    ledger: Ledger,
    *,
    subjects: int,
    seed: int,
    years: int = 5,
    progress: Progress | None = None,
    workers: int = 1,
    monthly_sweeps: bool = True,
) -> dict[str, Any]:
    """Publishes the history ending at the ledger clock, one atomic append per simulated
    day, each stamped with that day's clock, and runs the retention sweep at the start of
    every month as it would have run then (so the log holds a real series of notices,
    pseudonymisations and erasures; ``monthly_sweeps=False``: only the final sweep, for tests
that need a history quickly). ``progress`` counts simulated days. Re-running with the
    same seed and clock appends nothing (every event id is a duplicate, no sweep is due)."""
    start, end = history_span(ledger, years)
    by_type: Counter[str] = Counter()
    people: dict[str, set[str]] = {}
    swept: Counter[str] = Counter()
    sweeps = 0

    counted = [start]  # the next simulated day not yet counted in the progress

    def count_days_through(day: date) -> None:
        if progress is not None and day >= counted[0]:
            progress((day - counted[0]).days + 1)
        counted[0] = max(counted[0], day + timedelta(days=1))

    def batches() -> Iterator[tuple[datetime, Sequence[Mapping[str, Any]]]]:
        for batch in generate_history(subjects, seed, start=start, end=end):
            for e in batch.events:
                by_type[e["type"]] += 1
                kind, value = next(iter(e["subject"].items()))
                person = value if kind == "id" else normalise(kind, value)
                people.setdefault(e["controller"], set()).add(person)
            count_days_through(min(batch.recorded_at.date(), end))  # quiet days count too
            yield batch.recorded_at, batch.events
        count_days_through(end)

    notices = publish_demo_notices(ledger, start)
    started = time.perf_counter()
    accepted = duplicates = rejected = 0
    # One append stream per month when the sweep runs between months; else one for all.
    months = (groupby(batches(), key=lambda b: _month(b[0])) if monthly_sweeps
              else [(_month(datetime.combine(end, datetime.min.time())), batches())])
    for (year, month), days in months:
        report = ledger.record_batches(((to_micros(at), events) for at, events in days),
                                       origin="demo", workers=workers)
        accepted += report.accepted
        duplicates += report.duplicates
        rejected += report.rejected
        sweep_at = _first_of_next_month(year, month)
        if monthly_sweeps and sweep_at < ledger.clock.now() and _monthly_sweep(ledger, sweep_at, swept):
            sweeps += 1
    elapsed = time.perf_counter() - started
    total = accepted + duplicates + rejected
    summary = {
        "data_dir": str(ledger.data_dir),
        "seed": seed,
        "from": start.isoformat(),
        "to": end.isoformat(),
        "accepted": accepted,
        "duplicates": duplicates,
        "rejected": rejected,
        "events_per_second": round(total / elapsed) if elapsed else 0,
        # a second run into the same directory (same seed and clock): every event a duplicate
        "already_published": accepted == 0 and rejected == 0 and duplicates > 0,
        "notices": notices,
        "subjects": {c: len(s) for c, s in sorted(people.items())},
        "by_type": dict(by_type.most_common()),
        "monthly_sweeps": {"runs": sweeps, "appended": dict(sorted(swept.items()))},
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
