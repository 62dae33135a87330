"""In-memory adapters of the two ports: ``MemoryEventLog`` (``EventLog``) and
``MemoryKeyVault`` (``KeyVault``), for unit tests of the services without disk; with
``MemoryWriterLock`` and ``MemoryDeadLetters`` in place of the data directory's two files, a
``Ledger`` runs entirely in memory.

They keep the SQLite adapters' semantics (the same contract suites run on both: idempotency
by event id, content digests and ``Conflict``, the ledger clock, the hash chain; key
generations that are never reused, tombstones, the epoch counter, pending keys, record first
then act) but nothing survives the process, and keys are held unwrapped. Each is guarded by
one lock, so threads may share an instance."""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any
from uuid import UUID

from ledger.adapters.dead_letters import DeadLetters
from ledger.adapters.writer_lock import WriterLock
from ledger.domain.blobs import KEY_SIZE, DataKey
from ledger.domain.chain import (
    GENESIS_HASH,
    Conflict,
    LogHead,
    LogRecord,
    PendingRecord,
)
from ledger.domain.errors import ClockError, ConfigError, KeyUnavailable
from ledger.domain.timeutil import format_micros
from ledger.ports import (
    EffectsDone,
    EventLog,
    KeyRecord,
    KeyRef,
    KeyVault,
    PendingEffect,
    Tombstone,
)


def _id_key(event_id: str) -> str:
    """An event id as the SQLite log compares it (a UUID's hex: dashes and case ignored)."""
    return event_id.replace("-", "").lower()


class MemoryEventLog(EventLog):
    """One hash chain (partition 0), positions 1, 2, … like the embedded log."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._records: list[LogRecord] = []  # position n at index n - 1
        self._positions: dict[str, int] = {}  # _id_key(event id) -> position
        self._digests: dict[int, bytes] = {}  # position -> content digest, where one was given

    def append(self, records: Sequence[PendingRecord]) -> list[int | Conflict | None]:
        if not records:
            return []
        with self._lock:
            head = self._head()
            prev_hash, last_recorded = head.hash, head.recorded_at
            new: list[LogRecord] = []
            out: list[int | Conflict | None] = []
            batch: dict[str, tuple[int, bytes | None]] = {}  # id key -> (position, digest)
            for r in records:
                key = _id_key(r.event_id)
                position = self._positions.get(key)
                if position is not None:
                    if r.digest is None:
                        out.append(None)
                    elif position not in self._digests:
                        out.append(Conflict(position, known=False))
                    else:
                        same = self._digests[position] == r.digest
                        out.append(None if same else Conflict(position))
                    continue
                if key in batch:
                    position, digest = batch[key]
                    if r.digest is None or digest is None or digest == r.digest:
                        out.append(None)
                    else:
                        out.append(Conflict(position))
                    continue
                if r.recorded_at < last_recorded:  # nothing of the batch is stored
                    raise ClockError(
                        f"the ledger clock {format_micros(r.recorded_at)} is behind the log's "
                        f"last recorded_at {format_micros(last_recorded)}; recorded_at never "
                        "decreases"
                    )
                position = head.position + len(new) + 1
                record = LogRecord(position, str(UUID(r.event_id)), r.event_type, r.recorded_at,
                                   prev_hash, r.payload)
                new.append(record)
                batch[key] = (position, r.digest)
                prev_hash, last_recorded = record.hash, r.recorded_at
                out.append(position)
            # Only now, all at once: the append is atomic.
            self._records.extend(new)
            for key, (position, digest) in batch.items():
                self._positions[key] = position
                if digest is not None:
                    self._digests[position] = digest
            return out

    def _head(self) -> LogHead:
        if not self._records:
            return LogHead(0, GENESIS_HASH, 0)
        last = self._records[-1]
        return LogHead(last.position, last.hash, last.recorded_at)

    def head(self) -> LogHead:
        with self._lock:
            return self._head()

    def contains(self, event_ids: Sequence[str]) -> set[str]:
        with self._lock:
            return {e for e in event_ids if _id_key(e) in self._positions}

    def read(
        self, start: int = 1, *, recorded_by: int | None = None, limit: int | None = None
    ) -> Iterator[LogRecord]:
        begin = max(start, 1) - 1
        with self._lock:  # a snapshot: appends after this call are not seen
            end = len(self._records) if limit is None else min(len(self._records), begin + limit)
            snapshot = self._records[begin:end]
        for record in snapshot:
            if recorded_by is not None and record.recorded_at > recorded_by:
                return  # recorded_at never decreases along the log
            yield record


@dataclass(slots=True)
class _Key:
    generation: int
    key: bytes
    created_at: str  # UTC 'YYYY-MM-DD HH:MM:SS', as SQLite's CURRENT_TIMESTAMP
    sealed: bool = False
    pending: list[str] | None = None  # the event ids a pending key was handed out for


@dataclass(frozen=True, slots=True)
class _Effect:
    event_id: str
    controller: str
    subject: str
    action: str
    category: str  # '' notes an effect with no key
    generation: int | None


Pair = tuple[str, str]
Triple = tuple[str, str, str]


class MemoryKeyVault(KeyVault):
    """Keys in a dict, unwrapped. A destroyed key leaves a tombstone (shredded) or a discard
    mark, so that its generation is never given out again."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._keys: dict[Triple, _Key] = {}
        self._shredded: dict[KeyRef, str | None] = {}  # in shredding order -> event id
        self._discarded: set[KeyRef] = set()
        self._effects: dict[tuple[str, str], _Effect] = {}  # (event id, category), in order
        self._secrets: dict[str, bytes] = {}
        self._epoch = 0

    # data keys ----------------------------------------------------------------------------
    def _next_generation(self, k: Triple) -> int:
        used = [ref[3] for ref in (*self._shredded, *self._discarded) if ref[:3] == k]
        return max(used, default=0) + 1

    def data_keys(
        self, wanted: set[tuple[str, str, str]],
        users: dict[tuple[str, str, str], list[str]] | None = None,
    ) -> dict[tuple[str, str, str], DataKey]:
        found: dict[Triple, DataKey] = {}
        with self._lock:
            for k in wanted:
                ids = list(users.get(k, ())) if users is not None else []
                row = self._keys.get(k)
                pending = False
                if row is not None:
                    if row.pending is not None and ids:  # still pending: its new users too
                        row.pending.extend(ids)
                        pending = True
                else:
                    row = _Key(self._next_generation(k), os.urandom(KEY_SIZE),
                               time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
                               pending=ids or None)
                    self._keys[k] = row
                    pending = bool(ids)
                found[k] = DataKey(*k, row.generation, row.key, row.sealed, pending)
        return found

    def epoch(self) -> int | None:
        with self._lock:
            return self._epoch

    def stale(self, keys: set[KeyRef]) -> set[KeyRef]:
        with self._lock:
            return {ref for ref in keys if not self._is_live(ref)}

    def _is_live(self, ref: KeyRef) -> bool:
        row = self._keys.get(ref[:3])
        return row is not None and row.generation == ref[3]

    def confirm(self, keys: set[KeyRef]) -> None:
        with self._lock:
            for ref in keys:
                if self._is_live(ref):
                    self._keys[ref[:3]].pending = None

    def pending_keys(self, created_before: str | None = None) -> dict[KeyRef, list[str]]:
        with self._lock:
            return {(*k, row.generation): list(row.pending)
                    for k, row in self._keys.items()
                    if row.pending is not None
                    and (created_before is None or row.created_at < created_before)}

    def discard(self, keys: set[KeyRef]) -> None:
        with self._lock:
            for ref in keys:
                row = self._keys.get(ref[:3])
                if row is not None and row.generation == ref[3] and row.pending is not None:
                    del self._keys[ref[:3]]
                    self._discarded.add(ref)
                    self._epoch += 1

    def data_key(
        self, controller: str, subject: str, category: str, generation: int,
        *, include_sealed: bool = False,
    ) -> bytes:
        with self._lock:
            row = self._keys.get((controller, subject, category))
            if row is None or row.generation != generation:
                raise KeyUnavailable(f"the {category} key of this subject was shredded")
            if row.sealed and not include_sealed:
                raise KeyUnavailable(
                    f"the {category} key of this subject is sealed (pseudonymised); "
                    "only an explicit export may use it"
                )
            return row.key

    def seal(self, controller: str, subject: str) -> None:
        with self._lock:
            for (c, s, _), row in self._keys.items():
                if (c, s) == (controller, subject):
                    row.sealed = True
                    self._epoch += 1

    def _destroy(self, k: Triple, event_id: str | None) -> None:
        row = self._keys.pop(k)
        self._shredded.setdefault((*k, row.generation), event_id)
        self._epoch += 1

    def shred(self, controller: str, subject: str, categories: list[str]) -> list[str]:
        destroyed = []
        with self._lock:
            for category in categories:
                k = (controller, subject, category)
                if k in self._keys:
                    self._destroy(k, None)
                    destroyed.append(category)
        return destroyed

    # record first, then act ----------------------------------------------------------------
    def record_effects(self, effects: Sequence[PendingEffect]) -> None:
        with self._lock:
            for e in effects:
                live = {k[2]: row.generation for k, row in self._keys.items()
                        if k[:2] == (e.controller, e.subject)}
                wanted = e.categories if e.action == "erase" else tuple(sorted(live))
                rows: list[tuple[str, int | None]] = [(c, live[c]) for c in wanted if c in live]
                for category, generation in rows or [("", None)]:
                    # Replacing a note moves it to the end, as SQLite's INSERT OR REPLACE does.
                    self._effects.pop((e.event_id, category), None)
                    self._effects[(e.event_id, category)] = _Effect(
                        e.event_id, e.controller, e.subject, e.action, category, generation)

    def pending_effects(self) -> list[PendingEffect]:
        with self._lock:
            notes = list(self._effects.values())
        found: dict[str, PendingEffect] = {}
        for n in notes:
            e = found.get(n.event_id) or PendingEffect(n.event_id, n.controller, n.subject,
                                                       n.action)
            found[n.event_id] = PendingEffect(n.event_id, n.controller, n.subject, n.action,
                                              e.categories + ((n.category,) if n.category else ()))
        return list(found.values())

    def complete_effects(self, event_ids: Iterable[str]) -> EffectsDone:
        shredded = sealed = 0
        with self._lock:
            for event_id in event_ids:
                notes = [n for n in self._effects.values() if n.event_id == event_id]
                touched = False
                for n in notes:
                    del self._effects[(n.event_id, n.category)]
                    if not n.category or n.generation is None:
                        continue
                    k = (n.controller, n.subject, n.category)
                    if not self._is_live((*k, n.generation)):
                        continue  # pinned to a key that is gone already
                    if n.action == "erase":
                        self._destroy(k, event_id)
                        shredded += 1
                    elif not self._keys[k].sealed:
                        self._keys[k].sealed = True
                        self._epoch += 1
                        touched = True
                sealed += touched
        return EffectsDone(shredded, sealed)

    def drop_effects(self, event_ids: Iterable[str]) -> None:
        dropped = set(event_ids)
        with self._lock:
            for note in [k for k in self._effects if k[0] in dropped]:
                del self._effects[note]

    def shredded_without_key(self, subjects: Iterable[tuple[str, str]], category: str,
                             ) -> set[tuple[str, str]]:
        pairs = set(subjects)
        with self._lock:
            return {(c, s) for c, s, k, _ in self._shredded
                    if k == category and (c, s) in pairs and (c, s, k) not in self._keys}

    def live_keys(self, subjects: Iterable[tuple[str, str]]) -> list[KeyRecord]:
        pairs = set(subjects)
        with self._lock:
            return [KeyRecord(*k, row.generation, row.sealed)
                    for k, row in sorted(self._keys.items()) if k[:2] in pairs]

    def tombstones(self) -> list[Tombstone]:
        with self._lock:
            return [Tombstone(*ref, event_id) for ref, event_id in self._shredded.items()]

    # secrets ------------------------------------------------------------------------------
    def secret(self, name: str, create: bool = False) -> bytes:
        with self._lock:
            value = self._secrets.get(name)
            if value is not None:
                return value
            if not create:
                raise ConfigError(f"no secret {name!r} in the key vault")
            value = self._secrets[name] = os.urandom(KEY_SIZE)
            return value

    def destroy_secret(self, name: str) -> bool:
        with self._lock:
            return self._secrets.pop(name, None) is not None

    def secret_names(self, prefix: str) -> list[str]:
        with self._lock:
            return sorted(n for n in self._secrets if n.startswith(prefix))


class MemoryWriterLock(WriterLock):
    """The writer lock within one process only (re-entrant, like the file lock): for a ledger
    whose log and vault no other process can reach."""

    def __init__(self) -> None:
        super().__init__(Path("write.lock"))  # never opened

    def __enter__(self) -> WriterLock:
        self._thread_lock.acquire()
        self._depth += 1
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._depth -= 1
        self._thread_lock.release()

    @contextmanager
    def if_free(self) -> Iterator[bool]:
        with self:
            yield True


class MemoryDeadLetters(DeadLetters):
    """The dead letters as the file's bytes in memory: the same entries, encrypted alike."""

    def __init__(
        self, path: Path, vault: KeyVault, secrets: Mapping[str, bytes] | None = None,
        *, lock: AbstractContextManager[Any] | None = None,
    ) -> None:
        super().__init__(path, vault, secrets, lock=lock)  # the path only names the origin
        self._lines: list[bytes] = []

    def _append(self, data: bytes) -> None:
        self._lines.extend(data.splitlines(keepends=True))

    def _entries(self) -> Iterator[tuple[int, dict[str, Any]]]:
        for number, raw in enumerate(list(self._lines), 1):
            yield number, json.loads(raw)

    def _rewrite(self, before: int, controllers: Mapping[str, int] | None) -> None:
        self._lines = [raw for raw in self._lines
                       if not self._expired(json.loads(raw), before, controllers)]


__all__ = ["MemoryDeadLetters", "MemoryEventLog", "MemoryKeyVault", "MemoryWriterLock"]
