"""The hash chain (SPEC §7): an append-only, totally ordered sequence of records, each
carrying the hash of its predecessor.

A record's hash is SHA-256 over ``prev_hash || recorded_at (8 bytes, big-endian) || payload``;
the first record's ``prev_hash`` is 32 zero bytes. The payload is the Avro single-object
encoded event. These are the records every ``EventLog`` adapter stores and returns."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

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
