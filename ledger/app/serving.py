"""The ledger as a long-running service (``ledger serve``): one process owns the data
directory's single-writer resources and every caller goes through this object.

Why one object: the ledger's connections (SQLite log and vault, DuckDB projections) are not
shared between threads, so every use of the ``Ledger`` runs under one lock. Publishing requests
that arrive while an append is in flight wait in a queue and the next append takes all of them
at once (group commit: one durable transaction for many requests). A permits answer first
brings the projections up to the log's head, so it reflects every event whose publish returned
before the question was asked (read your writes)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from ledger.app import outbox
from ledger.app.decisions import controller_policies, decisions_at
from ledger.app.outcomes import ItemResult
from ledger.app.permits import PermitAnswer, PermitQuestion, permits_many
from ledger.app.service import Ledger
from ledger.app.sweep import SweepReport
from ledger.app.sweep import sweep as run_sweep
from ledger.domain.errors import UsageError
from ledger.domain.retention.policy import Duration
from ledger.domain.subjects import SubjectSelector
from projections.engine.projector import project, projections_path, stored_position

T = TypeVar("T")


@dataclass
class _PublishJob:
    items: Sequence[Any]
    done: threading.Event = field(default_factory=threading.Event)
    results: list[ItemResult] | None = None
    error: BaseException | None = None


@dataclass(frozen=True, slots=True)
class Health:
    log_position: int
    projected_position: int

    def as_dict(self) -> dict[str, Any]:
        return {"status": "ok", "log_position": self.log_position,
                "projected_position": self.projected_position}


class LedgerService:
    """The ledger behind the HTTP API. Thread-safe: callers are the server's worker threads."""

    MAX_GROUP = 20_000  # events one grouped append takes at most

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        self._lock = threading.Lock()  # every use of self.ledger
        self._queue: list[_PublishJob] = []
        self._queue_lock = threading.Lock()
        self._projected = 0  # the log position the projections reflect (after a catch-up)
        self._stop = threading.Event()

    # publishing (group commit) -------------------------------------------------------------
    def publish(self, items: Sequence[Any]) -> list[ItemResult]:
        """Appends one caller's events; every accepted or duplicate event is durable when
        this returns. Concurrent callers share one append."""
        job = _PublishJob(items)
        with self._queue_lock:
            self._queue.append(job)
        while not job.done.is_set():
            with self._lock:  # whoever holds the lock appends everything queued so far
                if not job.done.is_set():
                    self._drain()
        if job.error is not None:
            raise job.error
        assert job.results is not None
        return job.results

    def _drain(self) -> None:
        with self._queue_lock:
            jobs: list[_PublishJob] = []
            size = 0
            while self._queue and (not jobs or size + len(self._queue[0].items) <= self.MAX_GROUP):
                job = self._queue.pop(0)
                jobs.append(job)
                size += len(job.items)
        if not jobs:
            return
        try:
            grouped = self.ledger.record_groups([j.items for j in jobs])
        except BaseException as e:  # every waiting caller learns of the failure
            for j in jobs:
                j.error = e
                j.done.set()
            if not isinstance(e, Exception):
                raise
            return
        for j, results in zip(jobs, grouped, strict=True):
            j.results = results
            j.done.set()

    # reading -------------------------------------------------------------------------------
    def _locked(self, work: Callable[[], T]) -> T:
        with self._lock:
            return work()

    def catch_up(self) -> int:
        """Brings the projections up to the log; returns the position they reflect."""

        def run() -> int:
            project(self.ledger)
            self._projected = stored_position(projections_path(self.ledger))
            return self._projected

        return self._locked(run)

    def health(self) -> Health:
        def read() -> Health:
            return Health(self.ledger.log.head().position, self._projected)

        return self._locked(read)

    def permits(self, purpose: str, who: SubjectSelector, *, channel: str | None = None,
                as_of: int | None = None) -> PermitAnswer:
        return self._locked(lambda: self.ledger.permits(purpose, who, channel=channel,
                                                        as_of=as_of))

    def permits_many(self, questions: list[PermitQuestion]) -> list[PermitAnswer | UsageError]:
        """A batch from one catch-up of the read model (see ``permits_many``)."""
        return self._locked(lambda: permits_many(self.ledger, questions))

    def policy_of(self, controller: str) -> dict[str, str]:
        def read() -> dict[str, str]:
            policy = controller_policies(self.ledger, controller)[controller]
            return {"name": policy.name, "hash": policy.content_hash}

        return self._locked(read)

    def export_subject(self, who: SubjectSelector, *, include_pseudonymised: bool) -> dict[str, Any]:
        return self._locked(lambda: self.ledger.export_subject(
            who, include_pseudonymised=include_pseudonymised))

    def decisions(self, controller: str | None, actions: Sequence[str], limit: int | None
                  ) -> list[dict[str, Any]]:
        def read() -> list[dict[str, Any]]:
            table = decisions_at(self.ledger, None, controller)
            rows = [{"subject": d.subject, **d.as_dict()} for d in table.decisions
                    if not actions or d.action in actions]
            return rows if limit is None else rows[:limit]

        return self._locked(read)

    def sweep(self, *, dry_run: bool) -> SweepReport:
        return self._locked(lambda: run_sweep(self.ledger, dry_run=dry_run))

    # the outbox: messages owed to people, and the mailer's reports ---------------------------
    def outbox(self, kind: str | None) -> list[dict[str, Any]]:
        return self._locked(lambda: [m.as_dict() for m in outbox.pending(self.ledger, kind)])

    def outbox_delivered(self, message_id: str, at: int | None) -> dict[str, Any]:
        return self._locked(lambda: outbox.delivered(self.ledger, message_id, at).as_dict())

    def outbox_failed(self, message_id: str, reason: str, at: int | None) -> dict[str, Any]:
        return self._locked(lambda: outbox.failed(self.ledger, message_id, reason, at).as_dict())

    # background work -----------------------------------------------------------------------
    def run_background(self, *, follow_every: float = 1.0, sweep_every: Duration | None = None,
                       on_error: Callable[[str], None] = lambda _m: None) -> threading.Thread:
        """Follows the log with the projector (every ``follow_every`` s) and runs the sweep
        on its schedule (measured on the ledger clock's wall time), in a daemon thread."""

        def loop() -> None:
            next_sweep = None if sweep_every is None else sweep_every.add(time_now())
            while not self._stop.wait(follow_every):
                try:
                    self.catch_up()
                    if next_sweep is not None and sweep_every is not None and time_now() >= next_sweep:
                        self.sweep(dry_run=False)
                        next_sweep = sweep_every.add(time_now())
                except Exception as e:  # noqa: BLE001 - the service keeps serving; the log says why
                    on_error(f"background: {type(e).__name__}: {e}")

        thread = threading.Thread(target=loop, name="ledger-follow", daemon=True)
        thread.start()
        return thread

    def stop(self) -> None:
        self._stop.set()

    def close(self) -> None:
        self.stop()
        with self._lock:
            self.ledger.close()


def time_now() -> int:
    """Wall-clock UTC microseconds (the sweep schedule)."""
    return time.time_ns() // 1000
