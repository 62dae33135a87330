"""The auditor's toolkit (SPEC §7, issue 5): verify the hash chain, make Merkle digests of the
log to keep outside the system, prove an event's inclusion and a digest's consistency (the
digest and proof formats, and checking proofs without the log, are in ``ledger.domain.proofs``;
checking a chain, pure, in ``ledger.domain.chain_check``).

Two ways through one chain (one log, later one Kafka partition):

- ``verify_chain(records)`` is the reference: pure, record by record over ``LogRecord``s, it
  names the first bad position and classifies it (altered, missing, reordered, forged).
- ``scan_frames(pages)`` is the fast path for big logs: it hashes raw frames page by page in
  tight loops, only *notices* the first suspicious page, and folds the Merkle leaves. The
  ``Auditor`` then re-reads a window before that page and lets ``verify_chain`` classify it,
  so both paths report the same finding.

Merkle leaves (RFC 6962, ``ledger.merkle``): leaf i is the chain hash of the record at
position i + 1, i.e. ``leaf_hash = SHA-256(0x00 || SHA-256(prev_hash || recorded_at ||
payload))``. The chain hash already commits to the frame bytes, so a leaf needs no other data,
and shredding a subject's keys (which never touches the ciphertext in the log) changes no leaf.

A digest is ``{size, head_hash, merkle_root, head_recorded_at, created_at}``. Limits, stated
plainly: a chain alone cannot tell a forger who rewrote the tail *and* recomputed every later
hash; a digest kept outside the system can, for the prefix it covers. Appending is what a log
does, so an event appended after a digest is only as trustworthy as the appender."""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from ledger.bootstrap import open_frames
from ledger.config import Settings
from ledger.contracts.codec import AvroCodec
from ledger.contracts.schemas import SchemaRegistry
from ledger.domain import merkle
from ledger.domain.chain import GENESIS_HASH, LogRecord
from ledger.domain.chain_check import (
    ALTERED,
    FORGED,
    MISSING,
    TRUNCATED,
    WINDOW,
    AuditFinding,
    ChainReport,
    ChainScan,
    DigestMismatch,
    Finding,
    Progress,
    clock_check,
    decode_check,
    verify_chain,
)
from ledger.domain.checkpoint import Checkpoint
from ledger.domain.errors import UsageError
from ledger.domain.proofs import (
    ConsistencyProof,
    Digest,
    InclusionProof,
)
from ledger.domain.timeutil import format_micros
from ledger.ports import FrameSource

logger = logging.getLogger(__name__)

# What a log is checked against: a digest, or a checkpoint (its size and root, once its
# signature has been verified; see ``ledger.app.checkpoints``).
TreeHead = Digest | Checkpoint

# The auditor: verification, digests and proofs over one chain --------------------------------
@dataclass(frozen=True, slots=True)
class VerifyReport:
    records: int
    head_hash: bytes
    finding: Finding | None
    decoded: bool
    digest: TreeHead | None = None
    digest_matches: bool | None = None  # the log's prefix is the digest's (None: unknown)

    @property
    def ok(self) -> bool:
        return self.finding is None

    def as_dict(self) -> dict[str, Any]:
        f = self.finding
        return {
            "ok": self.ok,
            "records": self.records,
            "first_bad_position": f.position if f else None,
            "kind": f.kind if f else None,
            "reason": f.reason if f else None,
            "head_hash": self.head_hash.hex(),
            "decode_checked": self.decoded,
            "digest": {
                "size": self.digest.size,
                "merkle_root": self.digest.merkle_root.hex(),
                "created_at": format_micros(self.digest.created_at),
                "consistent": self.digest_matches,
            } if isinstance(self.digest, Digest) else None,
            **({"checkpoint": self.digest.as_dict() | {"consistent": self.digest_matches}}
               if isinstance(self.digest, Checkpoint) else {}),
        }


@dataclass(frozen=True, slots=True)
class ChainStatus:
    """The chain's state in one line, for a report about something else (``audit report``)."""

    ok: bool
    records: int
    head_hash: str
    detail: str

    @classmethod
    def of(cls, report: VerifyReport) -> ChainStatus:
        f = report.finding
        detail = (f"{report.records:,} records chain and decode" if f is None
                  else f"first bad position {f.position}: {f.reason}")
        return cls(report.ok, report.records, report.head_hash.hex(), detail)


@dataclass(frozen=True, slots=True)
class _Joined:
    records: int
    head_hash: bytes
    head_stamp: bytes | None
    suspect: int | None
    tree: merkle.TreeBuilder


def _join(scans: Iterable[ChainScan]) -> _Joined:
    """Stitches segment scans: each segment must chain on from the one before it."""
    carry, carry_stamp = GENESIS_HASH, None
    tree = merkle.TreeBuilder()
    records = 0
    for s in scans:
        if s.count and (s.first_prev != carry or (carry_stamp is not None and s.first_stamp is not None
                                                  and s.first_stamp < carry_stamp)):
            return _Joined(records, carry, carry_stamp, s.start, tree)
        records += s.count
        for size, subtree in s.subtrees:
            tree.push(size, subtree)
        if s.count:
            carry, carry_stamp = s.last_hash or carry, s.last_stamp
        if s.suspect is not None:
            return _Joined(records, carry, carry_stamp, s.suspect, tree)
    return _Joined(records, carry, carry_stamp, None, tree)


class Auditor:
    """Verifies one chain and makes digests and proofs of it, from a ``FrameSource``."""

    def __init__(self, source: FrameSource, codec: AvroCodec | None = None, window: int = WINDOW) -> None:
        self.source = source
        self.codec = codec or AvroCodec()
        self.window = window

    @classmethod
    def open(cls, settings: Settings, jobs: int = 1) -> Auditor:
        """Reads the log the settings name (chosen in ``ledger.bootstrap``); needs no master
        key and no key vault: an auditor can verify a copy of the log alone."""
        return cls(open_frames(settings, jobs))

    def close(self) -> None:
        self.source.close()

    def __enter__(self) -> Auditor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _classify(self, suspect: int, decode: bool) -> Finding:
        """Re-reads from a window before the suspect page; everything before the suspect
        passed the quick checks, so the first finding of the reference verifier is the one."""
        begin = max(1, suspect - self.window)
        logger.info("quick checks stopped at position %d; classifying from %d", suspect, begin)
        records = self.source.records(begin)
        first = next(records, None)
        if first is None:
            return Finding(MISSING, suspect, f"position {suspect} is missing")
        prev = GENESIS_HASH if begin == 1 else first.prev_hash
        check = decode_check(self.codec) if decode else clock_check
        report = verify_chain(itertools.chain([first], records), prev_hash=prev, start=begin,
                              check=check, window=self.window)
        if report.finding is None:  # cannot happen if both paths agree; never report "ok"
            logger.warning("the reference verifier found nothing wrong from position %d", begin)
            return Finding(ALTERED, suspect, f"position {suspect} fails the chain checks")
        return report.finding

    def verify(self, digest: TreeHead | None = None, *, decode: bool = True,
               progress: Progress | None = None) -> VerifyReport:
        merkle_stop = digest.size + 1 if digest else 0
        joined = _join(self.source.scan(merkle_stop=merkle_stop, decode=decode, progress=progress))
        finding = None if joined.suspect is None else self._classify(joined.suspect, decode)
        matches = None
        if digest is not None:
            if finding is not None and finding.position <= digest.size:
                matches = False  # the chain breaks inside the digest's prefix
            else:
                matches, against = self._against_digest(digest, joined)
                if against is not None and (finding is None or against.position < finding.position):
                    finding = against
        return VerifyReport(joined.records, joined.head_hash, finding, decode, digest, matches)

    def chain_status(self) -> ChainStatus:
        """Verifies the whole chain (decoding every record) and says so in one line."""
        return ChainStatus.of(self.verify())

    def _prefix_tree(self, stop: int) -> merkle.TreeBuilder:
        tree = merkle.TreeBuilder()
        for _, leaves in self.source.leaf_pages(stop):
            tree.extend(leaves)
        return tree

    def _against_digest(self, digest: TreeHead, joined: _Joined) -> tuple[bool, Finding | None]:
        """Whether the log's first ``digest.size`` records are exactly the digest's (the
        chain, verified, links them all)."""
        m = digest.size
        if joined.suspect is None and joined.records < m:
            n = joined.records
            held = (f"the checkpoint of {digest.origin}" if isinstance(digest, Checkpoint)
                    else f"the digest of {format_micros(digest.created_at)}")
            return False, Finding(TRUNCATED, n + 1, f"the log ends at position {n} but {held} "
                                                    f"covers {m} records")
        # The scan stops folding leaves at a bad page; a break just past the prefix needs a
        # second look at the prefix alone.
        tree = joined.tree if joined.tree.size == m else self._prefix_tree(m)
        if tree.root() == digest.merkle_root:
            return True, None
        # The digest's head_hash is the old chain hash of its last record: if putting it back
        # restores the root, only that record changed.
        before = self._prefix_tree(m - 1) if m and isinstance(digest, Digest) else None
        if before is not None and isinstance(digest, Digest):
            before.extend([merkle.leaf_hash(digest.head_hash)])
        if before is not None and before.root() == digest.merkle_root:
            return False, Finding(ALTERED, m, f"position {m} was altered after the digest was "
                                              "made: it no longer hashes to the digest's head_hash")
        # The chain links, so whoever changed a record also recomputed every hash after it;
        # the digest's root alone cannot say which record came first.
        held = "checkpoint" if isinstance(digest, Checkpoint) else "digest"
        return False, Finding(FORGED, m, f"the first {m} records no longer match the {held}'s "
                                         "Merkle root although the chain links: records up to "
                                         "here were rewritten and the chain recomputed")

    def digest(self, created_at: int, *, progress: Progress | None = None) -> Digest:
        """A digest of the whole log; refuses (AuditFinding) if its chain does not verify."""
        size = self.source.size()
        joined = _join(self.source.scan(merkle_stop=size + 1, decode=False, progress=progress))
        if joined.suspect is not None:
            finding = self._classify(joined.suspect, False)
            raise AuditFinding(f"no digest of a broken chain: first bad position "
                               f"{finding.position}: {finding.reason}")
        at = None if joined.head_stamp is None else int.from_bytes(joined.head_stamp, "big", signed=True)
        return Digest(joined.records, joined.head_hash, joined.tree.root(), at, created_at)

    def checkpoint(self, origin: str, *, progress: Progress | None = None) -> Checkpoint:
        """The log's checkpoint under ``origin``: the size and Merkle root of its digest;
        refuses (AuditFinding) if the chain does not verify."""
        digest = self.digest(0, progress=progress)
        return Checkpoint(origin, digest.size, digest.merkle_root)

    def _tree_roots(self, ranges: list[merkle.Range], stop: int) -> list[bytes]:
        try:
            return merkle.range_roots(ranges, self.source.leaf_pages(stop))
        except ValueError:
            raise AuditFinding(f"the log no longer holds positions 1..{stop}: run "
                               "`ledger audit verify`") from None

    def prove(self, event_id: str, digest: TreeHead) -> InclusionProof:
        record = self.source.locate(event_id)
        if record is None:
            raise AuditFinding(f"no event {event_id} in the log")
        if record.position > digest.size:
            raise UsageError(f"event {event_id} is at position {record.position}, after the "
                             f"digest's {digest.size} records: make a newer digest")
        index = record.position - 1
        path = self._tree_roots(merkle.inclusion_ranges(index, digest.size), digest.size)
        proof = InclusionProof(str(event_id), record.position, index, digest.size,
                               digest.merkle_root, record.prev_hash, record.recorded_at,
                               record.payload, tuple(path))
        if merkle.root_from_inclusion(merkle.leaf_hash(proof.record_hash), index, digest.size,
                                      path) != digest.merkle_root:
            raise DigestMismatch("the log no longer matches the digest")
        return proof

    def consistency(self, old: TreeHead, now: int) -> ConsistencyProof:
        """Proves the log today extends the digest ``old``; AuditFinding if it does not."""
        new = self.digest(now)
        if new.size < old.size:
            raise AuditFinding(f"truncated: the log has {new.size} records, the digest {old.size}")
        path = self._tree_roots(merkle.consistency_ranges(old.size, new.size), new.size)
        if not merkle.verify_consistency(old.size, new.size, old.merkle_root, new.merkle_root, path):
            raise DigestMismatch(f"the log's first {old.size} records no longer match the digest")
        return ConsistencyProof(old.size, old.merkle_root, new.size, new.merkle_root,
                                new.head_hash, tuple(path))


# A partitioned log (Kafka): one chain per partition ------------------------------------------
class PartitionedChains(Protocol):
    """What verifying a partitioned log needs: its partitions, a reader per partition and the
    schemas its records decode with."""

    registry: SchemaRegistry

    def partitions(self) -> list[int]: ...

    def read_partition(self, partition: int, offset: int = 0, *,
                       with_duplicates: bool = False) -> Iterator[LogRecord]: ...


def _offset(position: int) -> int:
    from ledger.adapters.kafka_log import split_position

    return split_position(position)[1]


@dataclass(frozen=True, slots=True)
class PartitionChain:
    """One partition verified as its own chain."""

    partition: int
    report: ChainReport

    @property
    def ok(self) -> bool:
        return self.report.ok

    def as_dict(self) -> dict[str, Any]:
        r, f = self.report, self.report.finding
        return {
            "partition": self.partition, "records": r.records, "ok": r.ok,
            "head_offset": None if r.head_position is None else _offset(r.head_position),
            "head_hash": r.head_hash.hex(),
            "first_bad_offset": _offset(f.position) if f else None,
            "first_bad_position": f.position if f else None,
            "kind": f.kind if f else None, "reason": f.reason if f else None,
        }


@dataclass(frozen=True, slots=True)
class PartitionsReport:
    """Every partition of a partitioned log verified (no global digest: each is a chain)."""

    chains: tuple[PartitionChain, ...]

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.chains)

    @property
    def records(self) -> int:
        return sum(c.report.records for c in self.chains)

    @property
    def first_bad(self) -> PartitionChain | None:
        return next((c for c in self.chains if not c.ok), None)

    @property
    def reason(self) -> str | None:
        """Where and why the first broken partition breaks; None if every chain holds."""
        bad = self.first_bad
        if bad is None:
            return None
        row = bad.as_dict()
        return f"partition {row['partition']} offset {row['first_bad_offset']}: {row['kind']}: {row['reason']}"

    def rows(self) -> list[dict[str, Any]]:
        return [c.as_dict() for c in self.chains]

    def as_dict(self) -> dict[str, Any]:
        bad = self.first_bad
        return {"ok": bad is None, "records": self.records,
                "first_bad_position": bad.as_dict()["first_bad_position"] if bad else None,
                "reason": self.reason, "partitions": self.rows()}


def verify_partitions(log: PartitionedChains) -> PartitionsReport:
    """Each partition verified as its own chain (offsets may have gaps where messages that are
    not ledger records were skipped), every record decoded and checked against its stored
    event id, type and recorded_at."""
    check = decode_check(AvroCodec(log.registry))
    return PartitionsReport(tuple(
        PartitionChain(p, verify_chain(log.read_partition(p, 0, with_duplicates=True), start=None,
                                       check=check))
        for p in log.partitions()))
