"""The auditor's view (``FrameSource``) of any ``EventLog``, through its port: one process,
record by record. The embedded log has a faster reader of its own (``sqlite_scan``)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

from ledger.contracts.codec import AvroCodec
from ledger.domain import merkle
from ledger.domain.chain import LogRecord
from ledger.domain.chain_check import ChainScan, Progress, pages_of, scan_frames
from ledger.domain.proofs import id_key
from ledger.ports import EventLog


class LogFrames:
    """Any ``EventLog`` through its port: one process, record by record."""

    def __init__(self, log: EventLog) -> None:
        self.log = log

    def close(self) -> None:
        self.log.close()

    def size(self) -> int:
        return self.log.head().position

    def scan(self, *, merkle_stop: int, decode: bool, progress: Progress | None) -> list[ChainScan]:
        stop = self.size() + 1
        codec = AvroCodec() if decode else None
        return [scan_frames(pages_of(self.log.read(1, limit=stop - 1)), start=1, stop=stop,
                            merkle_stop=merkle_stop, codec=codec, progress=progress)]

    def records(self, start: int) -> Iterator[LogRecord]:
        return self.log.read(start)

    def locate(self, event_id: str) -> LogRecord | None:
        key = id_key(event_id)
        return next((r for r in self.log.read() if id_key(r.event_id) == key), None)

    def leaf_pages(self, stop: int) -> Iterator[tuple[int, list[bytes]]]:
        for page in pages_of(self.log.read(1, limit=stop)):
            yield page.first - 1, merkle.leaf_hashes([hashlib.sha256(f).digest() for f in page.frames])
