"""The auditor's toolkit (SPEC §7, issue 5): verify the hash chain, make Merkle digests of the
log to keep outside the system, prove an event's inclusion and a digest's consistency (the
digest and proof formats, and checking proofs without the log, are in ``ledger.proofs``).

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

import hashlib
import itertools
import logging
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from operator import itemgetter
from typing import Any, Protocol

from ledger import merkle
from ledger.codec import AvroCodec
from ledger.config import Settings
from ledger.errors import CodecError, LedgerError, UsageError
from ledger.log import GENESIS_HASH, EventLog, LogRecord
from ledger.proofs import ConsistencyProof, Digest, InclusionProof, id_key
from ledger.schemas import SchemaRegistry
from ledger.timeutil import format_micros

logger = logging.getLogger(__name__)

ALTERED, MISSING, REORDERED, FORGED, TRUNCATED = (
    "altered", "missing", "reordered", "forged", "truncated")
FRAME = 40  # prev_hash (32) + recorded_at (8)
SHORT_FRAME = -(2**63)  # recorded_at of a record whose stored frame is under 40 bytes
WINDOW = 10_000  # records re-read before the first suspicious page, and looked ahead of it
PAGE = 2048  # records per batch: a power of two (aligned Merkle blocks), small enough for L2


Progress = Callable[[int], None]
_sha256 = hashlib.sha256
_stamp = itemgetter(slice(32, FRAME))


class AuditFinding(LedgerError):
    """The log (or a proof) does not verify: a finding, exit code 1."""


@dataclass(frozen=True, slots=True)
class Finding:
    kind: str  # altered | missing | reordered | forged | truncated
    position: int  # the first bad position
    detail: str

    @property
    def reason(self) -> str:
        return f"{self.kind}: {self.detail}"


# Content checks: what a record must say about itself -----------------------------------------
@dataclass(frozen=True, slots=True)
class Problem:
    detail: str
    hashed: bool  # in the hashed frame bytes (vs. the unhashed index columns next to them)


def content_problem(codec: AvroCodec | None, event_id: str, event_type: str, recorded_at: int,
                    payload: bytes) -> Problem | None:
    """Checks one record without the chain: a sane clock, and (with a codec) that the payload
    decodes and agrees with the frame's recorded_at and the stored event id and type."""
    if recorded_at == SHORT_FRAME:
        return Problem("the stored record is shorter than its 40-byte frame header", True)
    if recorded_at < 0:
        return Problem(f"recorded_at {recorded_at} is before 1970", True)
    if codec is None:
        return None
    try:
        event = codec.decode(payload)
    except CodecError as e:
        return Problem(f"the payload is not a ledger event ({e})", True)
    if event.recorded_at != recorded_at:
        return Problem(f"the payload says recorded_at {format_micros(event.recorded_at)}, the "
                       f"frame {format_micros(recorded_at)}", True)
    if id_key(event.event_id) != id_key(event_id):
        return Problem(f"stored as event {event_id} but the payload is event {event.event_id}", False)
    if event.type != event_type:
        return Problem(f"stored as {event_type} but the payload is {event.type}", False)
    return None


ContentCheck = Callable[[LogRecord], Problem | None]


def decode_check(codec: AvroCodec) -> ContentCheck:
    def check(r: LogRecord) -> Problem | None:
        return content_problem(codec, r.event_id, r.event_type, r.recorded_at, r.payload)

    return check


def clock_check(r: LogRecord) -> Problem | None:
    return content_problem(None, r.event_id, r.event_type, r.recorded_at, r.payload)


# The reference verifier ---------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class ChainReport:
    records: int  # records read, up to and including a bad one
    head_position: int | None  # the last good record's position (start - 1, or None, if none)
    head_hash: bytes  # its chain hash (the expected prev_hash if none)
    head_recorded_at: int | None
    finding: Finding | None

    @property
    def ok(self) -> bool:
        return self.finding is None


class _Lookahead:
    """An iterator that can peek ahead, so a break can be judged by what follows it."""

    def __init__(self, items: Iterable[LogRecord]) -> None:
        self._items = iter(items)
        self._buffer: deque[LogRecord] = deque()

    def __iter__(self) -> _Lookahead:
        return self

    def __next__(self) -> LogRecord:
        return self._buffer.popleft() if self._buffer else next(self._items)

    def peek(self, i: int = 0) -> LogRecord | None:
        while len(self._buffer) <= i:
            try:
                self._buffer.append(next(self._items))
            except StopIteration:
                return None
        return self._buffer[i]


def _nearly(a: bytes, b: bytes) -> bool:
    """A hash with a few bytes edited, rather than another hash altogether."""
    return len(a) == len(b) and sum(x != y for x, y in zip(a, b, strict=True)) <= 4


def verify_chain(
    records: Iterable[LogRecord],
    *,
    prev_hash: bytes = GENESIS_HASH,
    start: int | None = 1,
    check: ContentCheck | None = clock_check,
    window: int = WINDOW,
) -> ChainReport:
    """Verifies one chain, an ordered sequence of records, and names the first bad position.

    ``prev_hash`` is what the first record must chain to (the genesis for a whole log);
    ``start`` is its expected position, and positions must then be gapless (None: only
    increasing, as Kafka offsets). ``check`` validates each record's content (default: the
    clock only; ``decode_check(codec)`` also decodes). Breaks are judged within ``window``
    records either side."""
    ahead = _Lookahead(records)
    recent: deque[tuple[int, bytes]] = deque(maxlen=window)  # (position, hash) behind
    expected_prev, expected_pos = prev_hash, start
    last_pos = None if start is None else start - 1  # Kafka offsets start at 0
    last_at: int | None = None
    count = 0
    for r in ahead:
        count += 1
        finding = None
        h = r.hash
        if expected_pos is not None and r.position != expected_pos:
            finding = _position_finding(r.position, expected_pos, start)
        elif expected_pos is None and last_pos is not None and r.position <= last_pos:
            finding = Finding(REORDERED, r.position, f"position {r.position} comes after {last_pos}")
        elif r.prev_hash != expected_prev:
            finding = _classify_break(r, h, recent, expected_prev, ahead, window)
        else:
            problem = check(r) if check else None
            if problem is None and last_at is not None and r.recorded_at < last_at:
                problem = Problem(f"recorded_at {format_micros(r.recorded_at)} is earlier than the "
                                  f"record before it ({format_micros(last_at)})", True)
            if problem is not None:
                finding = _content_finding(r, h, problem, ahead)
        if finding is not None:
            return ChainReport(count, last_pos, expected_prev, last_at, finding)
        recent.append((r.position, h))
        expected_prev, last_pos, last_at = h, r.position, r.recorded_at
        if expected_pos is not None:
            expected_pos = r.position + 1
    return ChainReport(count, last_pos, expected_prev, last_at, None)


def _position_finding(position: int, expected: int, start: int | None) -> Finding:
    if position > expected:
        where = f"the log starts at {position}" if expected == start else \
            f"the log goes from {expected - 1} to {position}"
        span = f"position {expected} is" if position == expected + 1 else \
            f"positions {expected}..{position - 1} are"
        return Finding(MISSING, expected, f"{span} missing: {where}")
    return Finding(REORDERED, position, f"position {position} comes after {expected - 1}")


def _classify_break(r: LogRecord, h: bytes, recent: deque[tuple[int, bytes]], expected_prev: bytes,
                    ahead: _Lookahead, window: int) -> Finding:
    """Record r does not chain to the record before it. Whose fault is it?"""
    p = r.position
    q = recent[-1][0] if recent else None  # the previous record's position, if any
    for pos, seen in recent:
        if seen == h:
            return Finding(REORDERED, p, f"position {p} is a copy of position {pos}")
    for i in range(window):
        later = ahead.peek(i)
        if later is None:
            break
        if later.hash == r.prev_hash:
            return Finding(REORDERED, p, f"position {p} chains to position {later.position}, "
                                         "which comes after it: records were reordered")
    earlier = [i for i, (_, seen) in enumerate(recent) if seen == r.prev_hash]
    if earlier:
        j = earlier[-1]
        first = recent[j + 1][0]
        span, what = (f"position {first} is", "a record was") if first == q else \
            (f"positions {first}..{q} are", "records were")
        return Finding(FORGED, first, f"{span} not in the chain: position {p} chains to position "
                                      f"{recent[j][0]} ({what} inserted)")
    successor = ahead.peek(0)
    if successor is not None and successor.prev_hash == expected_prev:
        before = f"position {q}" if q is not None else "the start of the log"
        return Finding(FORGED, p, f"position {p} is not in the chain: position "
                                  f"{successor.position} chains to {before} (a record was inserted)")
    if successor is not None and successor.prev_hash == h:
        if q is None:
            return Finding(MISSING, p, f"position {p} does not chain to the start of the log: "
                                       "records before it are missing")
        return Finding(ALTERED, q, f"position {q} no longer hashes to the prev_hash that position "
                                   f"{p} recorded: it was changed (or records between them removed)")
    if q is not None and _nearly(r.prev_hash, expected_prev):
        return Finding(ALTERED, p, f"position {p}'s prev_hash was edited: it does not chain to "
                                   f"position {q}")
    if q is not None and successor is None:
        return Finding(ALTERED, q, f"position {q} no longer hashes to the prev_hash that the last "
                                   f"record, position {p}, recorded (or that prev_hash was replaced)")
    return Finding(ALTERED, p, f"position {p}'s bytes were changed: it chains to neither the "
                               "record before it nor the one after it")


def _content_finding(r: LogRecord, h: bytes, problem: Problem, ahead: _Lookahead) -> Finding:
    p = r.position
    if not problem.hashed:
        return Finding(ALTERED, p, f"position {p}'s stored columns were edited: {problem.detail}")
    successor = ahead.peek(0)
    if successor is not None and successor.prev_hash == h:
        # The next record vouches for exactly these bytes: they were bad when it was written,
        # so whoever wrote them also recomputed the chain.
        return Finding(FORGED, p, f"position {p}: {problem.detail}, yet the next record chains "
                                  "to it: the chain was recomputed")
    if successor is not None:
        return Finding(ALTERED, p, f"position {p}: {problem.detail}; its bytes changed after "
                                   f"position {successor.position} chained to it")
    return Finding(ALTERED, p, f"position {p}: {problem.detail}")


# The fast path: raw frames, page by page ------------------------------------------------------
@dataclass(frozen=True, slots=True)
class FramePage:
    """Consecutive records as stored, positions strictly increasing: each frame is
    ``prev_hash || recorded_at || payload``. Event ids and types only when decoding."""

    first: int  # position of frames[0]
    last: int  # position of frames[-1]
    frames: list[bytes]
    event_ids: list[str] | None = None
    types: list[str] | None = None


@dataclass(frozen=True, slots=True)
class ChainScan:
    """What the fast path learnt about positions [start, stop) of one chain."""

    start: int
    stop: int
    count: int = 0
    first_prev: bytes | None = None
    first_stamp: bytes | None = None
    last_hash: bytes | None = None
    last_stamp: bytes | None = None
    suspect: int | None = None  # the first page (or position) the quick checks refused
    subtrees: tuple[tuple[int, bytes], ...] = ()  # Merkle compact range of the leaves scanned


def scan_frames(
    pages: Iterable[FramePage],
    *,
    start: int,
    stop: int,
    merkle_stop: int = 0,
    codec: AvroCodec | None = None,
    progress: Progress | None = None,
) -> ChainScan:
    """Hashes positions [start, stop) and checks, per page, that positions are gapless, every
    record chains to the one before it, recorded_at never decreases and (with a codec) every
    payload decodes and matches its stored id and type. Stops at the first page that fails:
    ``suspect`` is then a position at or before the first bad record, and nothing before it
    is bad. Folds the Merkle leaves of positions below ``merkle_stop``.

    ``start`` must be 1 or a multiple of a power of two >= the number of leaves scanned, so
    the compact range it returns joins the neighbouring segments' (``TreeBuilder.push``)."""
    builder = merkle.TreeBuilder()
    sha256 = _sha256
    expect = start
    carry_hash: bytes | None = None
    carry_stamp = first_prev = first_stamp = None
    count = 0

    def result(suspect: int | None) -> ChainScan:
        return ChainScan(start, stop, count, first_prev, first_stamp, carry_hash, carry_stamp,
                         suspect, tuple(builder.subtrees()))

    for page in pages:
        frames = page.frames
        n = len(frames)
        if not n:
            continue
        if page.first != expect:
            return result(expect)
        if page.last - page.first != n - 1:
            return result(page.first)
        try:  # a comprehension beats map + methodcaller here
            hashes = [sha256(f).digest() for f in frames]
        except TypeError:  # a row holding NULL or text instead of a frame
            return result(page.first)
        stamps = list(map(_stamp, frames))
        ok = (
            all(map(bytes.startswith, frames[1:], hashes[:-1]))  # each links to the one before
            and (carry_hash is None or frames[0].startswith(carry_hash))
            and len(b"".join(stamps)) == 8 * n  # no frame under 40 bytes
            and stamps == sorted(stamps)
            and stamps[-1] < b"\x80"  # big-endian signed: the high bit means before 1970
            and (carry_stamp is None or carry_stamp <= stamps[0])
        )
        if ok and codec is not None:
            ok = _page_decodes(codec, page, stamps)
        if not ok:
            return result(page.first)
        if carry_hash is None:
            first_prev, first_stamp = frames[0][:32], stamps[0]
        leaves = min(n, merkle_stop - page.first)
        if leaves > 0:
            builder.extend(merkle.leaf_hashes(hashes[:leaves]))
        carry_hash, carry_stamp = hashes[-1], stamps[-1]
        count += n
        expect = page.last + 1
        if progress:
            progress(n)
    return result(None if expect >= stop else expect)


def _page_decodes(codec: AvroCodec, page: FramePage, stamps: list[bytes]) -> bool:
    ids, types = page.event_ids, page.types
    if ids is None or types is None:
        raise ValueError("decoding needs the stored event ids and types")
    for frame, event_id, event_type, stamp in zip(page.frames, ids, types, stamps, strict=True):
        at = int.from_bytes(stamp, "big", signed=True)
        if content_problem(codec, event_id, event_type, at, frame[FRAME:]) is not None:
            return False
    return True


def frame_of(r: LogRecord) -> bytes:
    return r.prev_hash + r.recorded_at.to_bytes(8, "big", signed=True) + r.payload


def pages_of(records: Iterable[LogRecord], size: int = PAGE) -> Iterator[FramePage]:
    """Frames pages from ``LogRecord``s, for logs without a raw reader."""
    it = iter(records)
    while batch := list(itertools.islice(it, size)):
        yield FramePage(batch[0].position, batch[-1].position, [frame_of(r) for r in batch],
                        [r.event_id for r in batch], [r.event_type for r in batch])


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
            yield page.first - 1, merkle.leaf_hashes([_sha256(f).digest() for f in page.frames])


# The auditor: verification, digests and proofs over one chain --------------------------------
@dataclass(frozen=True, slots=True)
class VerifyReport:
    records: int
    head_hash: bytes
    finding: Finding | None
    decoded: bool
    digest: Digest | None = None
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
            "digest": None if self.digest is None else {
                "size": self.digest.size,
                "merkle_root": self.digest.merkle_root.hex(),
                "created_at": format_micros(self.digest.created_at),
                "consistent": self.digest_matches,
            },
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
        return cls(open_source(settings, jobs))

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

    def verify(self, digest: Digest | None = None, *, decode: bool = True,
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

    def _against_digest(self, digest: Digest, joined: _Joined) -> tuple[bool, Finding | None]:
        """Whether the log's first ``digest.size`` records are exactly the digest's (the
        chain, verified, links them all)."""
        m = digest.size
        if joined.suspect is None and joined.records < m:
            n = joined.records
            return False, Finding(TRUNCATED, n + 1, f"the log ends at position {n} but the digest "
                                                    f"of {format_micros(digest.created_at)} covers "
                                                    f"{m} records")
        # The scan stops folding leaves at a bad page; a break just past the prefix needs a
        # second look at the prefix alone.
        tree = joined.tree if joined.tree.size == m else self._prefix_tree(m)
        if tree.root() == digest.merkle_root:
            return True, None
        # The digest's head_hash is the old chain hash of its last record: if putting it back
        # restores the root, only that record changed.
        before = self._prefix_tree(m - 1) if m else None
        if before is not None:
            before.extend([merkle.leaf_hash(digest.head_hash)])
        if before is not None and before.root() == digest.merkle_root:
            return False, Finding(ALTERED, m, f"position {m} was altered after the digest was "
                                              "made: it no longer hashes to the digest's head_hash")
        # The chain links, so whoever changed a record also recomputed every hash after it;
        # the digest's root alone cannot say which record came first.
        return False, Finding(FORGED, m, f"the first {m} records no longer match the digest's "
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

    def _tree_roots(self, ranges: list[merkle.Range], stop: int) -> list[bytes]:
        try:
            return merkle.range_roots(ranges, self.source.leaf_pages(stop))
        except ValueError:
            raise AuditFinding(f"the log no longer holds positions 1..{stop}: run "
                               "`ledger audit verify`") from None

    def prove(self, event_id: str, digest: Digest) -> InclusionProof:
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
            raise AuditFinding("the log no longer matches the digest: run `ledger audit verify "
                               "--digest`")
        return proof

    def consistency(self, old: Digest, now: int) -> ConsistencyProof:
        """Proves the log today extends the digest ``old``; AuditFinding if it does not."""
        new = self.digest(now)
        if new.size < old.size:
            raise AuditFinding(f"truncated: the log has {new.size} records, the digest {old.size}")
        path = self._tree_roots(merkle.consistency_ranges(old.size, new.size), new.size)
        if not merkle.verify_consistency(old.size, new.size, old.merkle_root, new.merkle_root, path):
            raise AuditFinding(f"the log's first {old.size} records no longer match the digest: "
                               "run `ledger audit verify --digest`")
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
    from ledger.kafka_log import split_position  # the Kafka adapter owns the position layout

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


def open_source(settings: Settings, jobs: int = 1) -> FrameSource:
    """How the auditor reads the log named by the settings (chosen in ``ledger.bootstrap``).
    Needs no master key and no key vault: an auditor can verify a copy of the log alone."""
    from ledger.bootstrap import open_frames

    return open_frames(settings, jobs)
