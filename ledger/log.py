"""The event log port (SPEC §7): an append-only, totally ordered sequence of records, each
carrying the hash of its predecessor. The embedded SQLite log and the Kafka log implement it.

A record's hash is SHA-256 over ``prev_hash || recorded_at (8 bytes, big-endian) || payload``;
the first record's ``prev_hash`` is 32 zero bytes. The payload is the Avro single-object
encoded event."""

from __future__ import annotations

import abc
import hashlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import ClassVar

GENESIS_HASH = bytes(32)


def chain_hash(prev_hash: bytes, recorded_at: int, payload: bytes) -> bytes:
    return hashlib.sha256(prev_hash + recorded_at.to_bytes(8, "big", signed=True) + payload).digest()


@dataclass(frozen=True, slots=True)
class PendingRecord:
    """An encoded event waiting to be appended."""

    event_id: str
    event_type: str
    subject: str  # the partitioning key on Kafka
    recorded_at: int
    payload: bytes
    # SHA-256 of the event's content without recorded_at and the encrypted blob (its
    # plaintext is hashed instead): the same id with another digest is a conflict.
    digest: bytes | None = None


@dataclass(frozen=True, slots=True)
class Conflict:
    """An append outcome: the event id is in the log at ``position`` with other content
    (``known`` False: the stored record has no digest, so the caller compares decoded
    content itself)."""

    position: int
    known: bool = True


@dataclass(frozen=True, slots=True)
class LogRecord:
    position: int
    event_id: str
    event_type: str
    recorded_at: int
    prev_hash: bytes
    payload: bytes
    partition: int = 0  # the hash chain it belongs to: one per Kafka partition, one embedded

    @property
    def hash(self) -> bytes:
        return chain_hash(self.prev_hash, self.recorded_at, self.payload)


@dataclass(frozen=True, slots=True)
class RecordPage:
    """A page of consecutive records for bulk readers (the projector): parallel lists, so that
    reading millions of records does not build an object per record."""

    positions: list[int]
    recorded_at: list[int]
    payloads: list[bytes]

    def __len__(self) -> int:
        return len(self.positions)


@dataclass(frozen=True, slots=True)
class LogHead:
    position: int  # 0 for an empty log
    hash: bytes
    recorded_at: int


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
