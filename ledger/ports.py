"""The ports: the event log, the key vault, and the auditor's view of a chain. The embedded
SQLite adapters, the Kafka log and the in-memory doubles (``ledger.adapters``) implement them;
``ledger.bootstrap`` chooses which, from the settings."""

from __future__ import annotations

import abc
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import ClassVar, Protocol

from ledger.domain.blobs import DataKey
from ledger.domain.chain import (
    Conflict,
    LogHead,
    LogRecord,
    PendingRecord,
    RecordPage,
)
from ledger.domain.chain_check import ChainScan, Progress


class EventLog(abc.ABC):
    """Port: append batches, read from a position, optionally only what was known by T."""

    # A partitioned log (Kafka) is one chain per partition: it also has ``partitions()`` and
    # ``read_partition()`` (``projections.workers.PartitionedLog``), and no global count.
    partitioned: ClassVar[bool] = False

    @property
    def name(self) -> str:
        """The log's name in projection tracking ('embedded' unless an adapter names itself)."""
        return "embedded"

    @abc.abstractmethod
    def append(self, records: Sequence[PendingRecord]) -> list[int | Conflict | None]:
        """Appends in order, atomically and durably before returning. Returns each record's
        position, or None where its event_id is already in the log (a duplicate, not stored
        again), or a Conflict where it is there with another digest (only records that carry
        a digest can conflict; neither is stored). Raises ClockError if a record's
        recorded_at is behind the log's last one."""

    @abc.abstractmethod
    def read(
        self, start: int = 1, *, recorded_by: int | None = None, limit: int | None = None
    ) -> Iterator[LogRecord]:
        """Records from position ``start`` in log order; with ``recorded_by``, only those
        with recorded_at <= it (knowledge time)."""

    @abc.abstractmethod
    def head(self) -> LogHead:
        """The last record's position, hash and recorded_at."""

    def last_recorded_at(self) -> int:
        """The largest recorded_at in the log, which no append may go below (0 if empty)."""
        return self.head().recorded_at

    def heads(self) -> dict[int, LogHead]:
        """The head of every hash chain, by partition (the embedded log has one: 0); empty
        for an empty log."""
        head = self.head()
        return {0: head} if head.position else {}

    @abc.abstractmethod
    def contains(self, event_ids: Sequence[str]) -> set[str]:
        """Which of these event ids are already in the log."""

    def read_pages(
        self, start: int = 1, *, recorded_by: int | None = None, page_size: int = 10_000
    ) -> Iterator[RecordPage]:
        """Like ``read``, in pages of parallel lists; adapters may override it with a faster
        bulk path. The default builds pages from ``read``."""
        page = RecordPage([], [], [])
        for record in self.read(start, recorded_by=recorded_by):
            page.positions.append(record.position)
            page.recorded_at.append(record.recorded_at)
            page.payloads.append(record.payload)
            if len(page) >= page_size:
                yield page
                page = RecordPage([], [], [])
        if page.positions:
            yield page

    def close(self) -> None:  # noqa: B027 - optional for adapters
        pass


# The key vault port (crypto-shredding) ------------------------------------------------------
KeyRef = tuple[str, str, str, int]  # (controller, subject, category, generation)


@dataclass(frozen=True, slots=True)
class PendingEffect:
    """What a recorded sweep event does to keys (record first, then act): ``erase`` shreds the
    subject's keys of ``categories``, ``pseudonymise`` seals all its keys. Kept in the vault
    from before the event is appended until the effect is done."""

    event_id: str
    controller: str
    subject: str
    action: str  # erase | pseudonymise
    categories: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class EffectsDone:
    keys_shredded: int = 0
    subjects_sealed: int = 0


@dataclass(frozen=True, slots=True)
class KeyRecord:
    """A live key as an audit sees it: no key material."""

    controller: str
    subject: str
    category: str
    generation: int
    sealed: bool


@dataclass(frozen=True, slots=True)
class Tombstone:
    """A destroyed key: the generation and, where the sweep destroyed it, the SubjectErased
    event it carried out (None for keys shredded before that was recorded)."""

    controller: str
    subject: str
    category: str
    generation: int
    event_id: str | None


class KeyVault(abc.ABC):
    """Port: where subject data keys and controller secrets live."""

    @abc.abstractmethod
    def data_keys(
        self, wanted: set[tuple[str, str, str]],
        users: dict[tuple[str, str, str], list[str]] | None = None,
    ) -> dict[tuple[str, str, str], DataKey]:
        """Current keys for (controller, subject, category), created where missing. New keys
        are durable before this returns, so no ciphertext is ever written under a key that a
        crash could lose. With ``users`` (the event ids each key will encrypt), a new key is
        created *pending* with those ids, and a pending key handed out again records its new
        users too: ``confirm`` it once their log append committed; a pending key none of whose
        users reached the log is an orphan (``pending_keys``, ``discard``)."""

    def epoch(self) -> int | None:
        """A counter every key destruction (or other change to a key) increases, in the same
        transaction; None if the vault cannot tell (then every liveness check is done key by
        key). Unchanged since keys were fetched -> all of them are still live."""
        return None

    def stale(self, keys: set[KeyRef]) -> set[KeyRef]:
        """Which of these keys are no longer the current, existing key, read from storage
        (never from a cache)."""
        return set()

    def confirm(self, keys: set[KeyRef]) -> None:  # noqa: B027 - optional for adapters
        """Marks pending keys as used by records that are in the log."""

    def pending_keys(self, created_before: str | None = None) -> dict[KeyRef, list[str]]:
        """Pending keys (made before ``created_before``, UTC 'YYYY-MM-DD HH:MM:SS', if
        given) and the event ids they were handed out for."""
        return {}

    def discard(self, keys: set[KeyRef]) -> None:  # noqa: B027 - optional for adapters
        """Destroys pending keys that encrypt nothing in the log (a failed append)."""

    @abc.abstractmethod
    def data_key(
        self, controller: str, subject: str, category: str, generation: int,
        *, include_sealed: bool = False,
    ) -> bytes:
        """A key for decryption; raises KeyUnavailable if it was shredded, or sealed (the
        subject is pseudonymised) unless ``include_sealed`` is given explicitly."""

    @abc.abstractmethod
    def seal(self, controller: str, subject: str) -> None:
        """Moves the subject's keys out of normal reach (pseudonymisation): they still encrypt
        new events, but decrypt only on the explicit export/billing path."""

    @abc.abstractmethod
    def shred(self, controller: str, subject: str, categories: list[str]) -> list[str]:
        """Destroys the subject's keys of these categories; returns the categories destroyed."""

    # record first, then act (SPEC §7a) ------------------------------------------------------
    @abc.abstractmethod
    def record_effects(self, effects: Sequence[PendingEffect]) -> None:
        """Durably notes what these sweep events will do, pinned to the key generations live
        now, before the events are appended. Call under the ledger's writer lock."""

    @abc.abstractmethod
    def pending_effects(self) -> list[PendingEffect]:
        """The effects noted and not yet done or dropped (empty in a healthy vault; cheap)."""

    @abc.abstractmethod
    def complete_effects(self, event_ids: Iterable[str]) -> EffectsDone:
        """Does the noted effects of these (recorded) events: shreds or seals the keys they
        were pinned to, if those still exist, and forgets the notes, atomically. Idempotent.
        Call under the ledger's writer lock, only for events that are in the log."""

    @abc.abstractmethod
    def drop_effects(self, event_ids: Iterable[str]) -> None:
        """Forgets noted effects whose events never reached the log (nothing is done)."""

    @abc.abstractmethod
    def shredded_without_key(self, subjects: Iterable[tuple[str, str]], category: str,
                             ) -> set[tuple[str, str]]:
        """Which of these (controller, subject) pairs had their key of ``category`` shredded
        and hold no live one since: an erased subject, for whom nothing may make a key again
        but a new relationship's events."""

    @abc.abstractmethod
    def live_keys(self, subjects: Iterable[tuple[str, str]]) -> list[KeyRecord]:
        """The live (not shredded) keys of these (controller, subject) pairs, for audits."""

    @abc.abstractmethod
    def tombstones(self) -> list[Tombstone]:
        """Every destroyed key, for audits."""

    @abc.abstractmethod
    def secret(self, name: str, create: bool = False) -> bytes:
        """A named secret (controller pseudonym secrets, the dead-letter keys). Created where
        missing if ``create``; a new secret is durable before this returns."""

    @abc.abstractmethod
    def destroy_secret(self, name: str) -> bool:
        """Destroys a named secret (crypto-shredding, like ``shred``); False if there was none."""

    @abc.abstractmethod
    def secret_names(self, prefix: str) -> list[str]:
        """The names of the secrets that start with ``prefix``, sorted."""

    def close(self) -> None:  # noqa: B027 - optional for adapters
        pass


# Where the auditor reads a chain ------------------------------------------------------------
class FrameSource(Protocol):
    """One chain as the auditor reads it: positions 1..size, gapless."""

    def size(self) -> int:
        """The last position."""

    def scan(self, *, merkle_stop: int, decode: bool, progress: Progress | None) -> list[ChainScan]:
        """Scans positions 1..size() (in parallel segments where it can), in order."""

    def records(self, start: int) -> Iterator[LogRecord]:
        """Records from ``start`` in order, tolerant of damaged rows."""

    def locate(self, event_id: str) -> LogRecord | None:
        """The record stored under this event id."""

    def leaf_pages(self, stop: int) -> Iterator[tuple[int, list[bytes]]]:
        """(first leaf index, leaf hashes) of positions 1..stop, in order."""

    def close(self) -> None: ...
