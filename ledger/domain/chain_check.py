"""Checking one hash chain (SPEC §7), pure: no log, no I/O.

- ``verify_chain(records)`` is the reference: record by record over ``LogRecord``s, it names
  the first bad position and classifies it (altered, missing, reordered, forged).
- ``scan_frames(pages)`` is the fast path for big logs: it hashes raw frames page by page in
  tight loops, only *notices* the first suspicious page, and folds the Merkle leaves. The
  auditor (``ledger.app.auditing``) then re-reads a window before that page and lets
  ``verify_chain`` classify it, so both paths report the same finding."""

from __future__ import annotations

import hashlib
import itertools
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from operator import itemgetter

from ledger.contracts.codec import AvroCodec
from ledger.domain import merkle
from ledger.domain.chain import GENESIS_HASH, LogRecord
from ledger.domain.errors import CodecError, LedgerError
from ledger.domain.proofs import id_key
from ledger.domain.timeutil import format_micros

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


class DigestMismatch(AuditFinding):
    """The log no longer matches a digest the auditor holds (``what`` says how); verifying the
    log against that digest finds the first record that differs."""

    def __init__(self, what: str) -> None:
        self.what = what
        super().__init__(f"{what}: verify the log against the digest to find where")


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
