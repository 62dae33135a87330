"""The ledger as a long-running service (``ledger serve``): one process owns the data
directory's single-writer resources and every caller goes through this object.

Why one object: the ledger's connections (SQLite log and vault, DuckDB projections) are not
shared between threads, so every use of the ``Ledger`` runs under one lock. Publishing requests
that arrive while an append is in flight wait in a queue and the next append takes all of them
at once (group commit: one durable transaction for many requests).

The read model stays open: the service owns the projections' DuckDB store and its projector,
and a permits answer catches them up only when the log's head moved past what they reflect
(one cheap head read), so it reflects every event whose publish returned before the question
was asked (read your writes). A subject's facts are cached until a catch-up projects an event
of that subject (opening the file and five point queries cost milliseconds; an answer from the
cache costs microseconds). Work that opens the projections itself (the sweep, decisions, the
extract, the outbox, answers as of a time) first closes the store; the next answer reopens it."""

from __future__ import annotations

import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

from ledger.app import outbox
from ledger.app.decisions import controller_policies, decisions_at
from ledger.app.outcomes import ItemResult
from ledger.app.permits import (
    AnswerSource,
    PermitAnswer,
    PermitQuestion,
    gather,
    permits_many,
)
from ledger.app.service import Ledger
from ledger.app.sweep import SweepReport
from ledger.app.sweep import sweep as run_sweep
from ledger.domain.errors import UsageError
from ledger.domain.permissions import PermitFacts
from ledger.domain.retention.policy import Duration, Policy, is_shipped
from ledger.domain.subjects import SubjectSelector
from projections.store.opener import LiveReadModel
from projections.store.read_model import ReadConnection
from projections.store.subject_queries import subjects_recorded

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
    MAX_CACHED = 100_000  # subjects whose facts stay in memory (least recently used go first)

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        self._lock = threading.Lock()  # every use of self.ledger
        self._queue: list[_PublishJob] = []
        self._queue_lock = threading.Lock()
        self._projected = 0  # the log position the projections reflect (after a catch-up)
        self._stop = threading.Event()
        self._model = LiveReadModel(ledger)  # the read model, open between answers
        self._appended = 0  # appends by this service (a partitioned log's head is remote)
        self._appended_seen = -1
        self._facts: OrderedDict[tuple[str, str], PermitFacts] = OrderedDict()
        self._policies: dict[str, tuple[Any, Policy]] = {}
        self.cache_hits = self.cache_misses = 0

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
        self._appended += 1
        for j, results in zip(jobs, grouped, strict=True):
            j.results = results
            j.done.set()

    # reading -------------------------------------------------------------------------------
    def _locked(self, work: Callable[[], T]) -> T:
        with self._lock:
            return work()

    def _alone(self, work: Callable[[], T]) -> T:
        """``work`` that opens the projections file itself, with the read model closed."""

        def run() -> T:
            self._release()
            return work()

        return self._locked(run)

    def catch_up(self) -> int:
        """Brings the projections up to the log; returns the position they reflect."""
        return self._locked(self._catch_up)

    def _release(self) -> None:
        """Closes the read model: for work that opens the projections file itself."""
        self._facts.clear()  # that work may project: what it changes is not tracked here
        self._model.close()

    def _moved(self) -> bool:
        """Whether the log may hold records the projections do not reflect: the embedded
        log's head (one indexed read), or, for a partitioned log, appends by this service
        since the last catch-up (the background loop follows other writers)."""
        if not self._model.is_open:
            return True
        if self.ledger.log.partitioned:
            return self._appended != self._appended_seen
        return self.ledger.log.head().position > self._projected

    def _catch_up(self) -> int:
        if not self._moved():
            return self._projected
        appended = self._appended
        before = self._projected
        self._projected = self._model.catch_up()
        self._appended_seen = appended
        if self._projected != before:
            self._forget(before, self._projected)
        return self._projected

    def _forget(self, before: int, after: int) -> None:
        """Drops the cached facts of the subjects of the records just projected (all of
        them if they are many, or positions do not order a partitioned log)."""
        touched = None
        if self._facts and not self.ledger.log.partitioned and before > 0:
            with self._model.read_only() as con:
                touched = subjects_recorded(con, before, after, len(self._facts))
        if touched is None:
            self._facts.clear()
            return
        for key in touched:
            self._facts.pop(key, None)

    @contextmanager
    def _read_model(self) -> Iterator[ReadConnection]:
        self._catch_up()
        with self._model.read_only() as con:
            yield con

    def _cached_facts(self, con: ReadConnection, controller: str, subject: str) -> PermitFacts:
        key = (controller, subject)
        found = self._facts.get(key)
        if found is not None:
            self.cache_hits += 1
            self._facts.move_to_end(key)
            return found
        self.cache_misses += 1
        facts = gather(con, controller, subject)  # an unknown subject raises: not cached
        self._facts[key] = facts
        if len(self._facts) > self.MAX_CACHED:
            self._facts.popitem(last=False)
        return facts

    def _policy(self, controller: str) -> Policy:
        """The controller's policy, parsed once; a policy file is read again when it changes."""
        name = self.ledger.config.controllers[controller].policy
        stamp: Any = name
        if not is_shipped(name):
            try:
                st = os.stat(name)
                stamp = (name, st.st_ino, st.st_mtime_ns, st.st_size)
            except OSError:
                stamp = None  # controller_policies says why it cannot be read
        cached = self._policies.get(controller)
        if cached is not None and stamp is not None and cached[0] == stamp:
            return cached[1]
        policy = controller_policies(self.ledger, controller)[controller]
        self._policies[controller] = (stamp, policy)
        return policy

    def health(self) -> Health:
        def read() -> Health:
            return Health(self.ledger.log.head().position, self._projected)

        return self._locked(read)

    def permits(self, purpose: str, who: SubjectSelector, *, channel: str | None = None,
                as_of: int | None = None) -> PermitAnswer:
        return self._alone(lambda: self.ledger.permits(purpose, who, channel=channel,
                                                       as_of=as_of))

    def permits_many(self, questions: list[PermitQuestion]) -> list[PermitAnswer | UsageError]:
        """A batch from the open read model, caught up if the log moved (see ``permits_many``)."""
        source = AnswerSource(self._read_model, self._cached_facts, self._policy, self._release)
        return self._locked(lambda: permits_many(self.ledger, questions, source))

    def policy_of(self, controller: str) -> dict[str, str]:
        def read() -> dict[str, str]:
            policy = self._policy(controller)
            return {"name": policy.name, "hash": policy.content_hash}

        return self._locked(read)

    def export_subject(self, who: SubjectSelector, *, include_pseudonymised: bool) -> dict[str, Any]:
        return self._alone(lambda: self.ledger.export_subject(
            who, include_pseudonymised=include_pseudonymised))

    def decisions(self, controller: str | None, actions: Sequence[str], limit: int | None
                  ) -> list[dict[str, Any]]:
        def read() -> list[dict[str, Any]]:
            table = decisions_at(self.ledger, None, controller)
            rows = [{"subject": d.subject, **d.as_dict()} for d in table.decisions
                    if not actions or d.action in actions]
            return rows if limit is None else rows[:limit]

        return self._alone(read)

    def sweep(self, *, dry_run: bool) -> SweepReport:
        return self._alone(lambda: run_sweep(self.ledger, dry_run=dry_run))

    # the outbox: messages owed to people, and the mailer's reports ---------------------------
    def outbox(self, kind: str | None) -> list[dict[str, Any]]:
        return self._alone(lambda: [m.as_dict() for m in outbox.pending(self.ledger, kind)])

    def outbox_delivered(self, message_id: str, at: int | None) -> dict[str, Any]:
        return self._alone(lambda: outbox.delivered(self.ledger, message_id, at).as_dict())

    def outbox_failed(self, message_id: str, reason: str, at: int | None) -> dict[str, Any]:
        return self._alone(lambda: outbox.failed(self.ledger, message_id, reason, at).as_dict())

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
            self._release()
            self.ledger.close()


def time_now() -> int:
    """Wall-clock UTC microseconds (the sweep schedule)."""
    return time.time_ns() // 1000
