"""Tamper matrix on the embedded log file, digests and proofs.

Every case tampers with ``log.sqlite`` through plain sqlite3, as someone with write access to
the file would, and is verified four ways: the reference verifier over the records, the
fast scanner in small pages and segments (so breaks land on page and segment boundaries),
the fast scanner in one page, and without decoding. All must name the same first position."""

from __future__ import annotations

import dataclasses
import hashlib
import shutil
import sqlite3
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from ledger.adapters.log_frames import LogFrames
from ledger.adapters.sqlite_log import SQLiteEventLog
from ledger.adapters.sqlite_scan import SQLiteFrames
from ledger.app.auditing import Auditor
from ledger.app.service import Ledger
from ledger.contracts.codec import AvroCodec
from ledger.domain.chain_check import (
    ALTERED,
    FORGED,
    MISSING,
    REORDERED,
    TRUNCATED,
    AuditFinding,
    Finding,
    decode_check,
    verify_chain,
)
from ledger.domain.clock import FixedClock
from ledger.domain.errors import KeyUnavailable
from ledger.domain.proofs import InclusionProof, check_consistency, check_inclusion
from ledger.domain.timeutil import parse_timestamp
from tests.conftest import make_event

N = 40  # records in the template log
DAY = 86_400 * 10**6
TYPES = ["SubjectRegistered", "ConsentGiven", "LoggedIn", "ServiceUsed", "InvoiceUsageRecorded",
         "NewsletterSubscribed", "DataShared", "Unsubscribed"]
codec = AvroCodec()


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data directory with N events from 5 subjects, published in 4 batches on 4 days."""
    path = tmp_path_factory.mktemp("audit") / "ledger-data"
    Ledger.init(path)
    start = parse_timestamp("2026-03-01T12:00:00Z")
    with Ledger.open(path) as ledger:
        for day in range(4):
            ledger.clock = FixedClock(start + day * DAY)
            ledger.record_many([
                make_event(TYPES[i % len(TYPES)], subject={"email": f"person{i % 5}@example.se"})
                for i in range(day * 10, day * 10 + 10)
            ])
        assert ledger.log.head().position == N
    return path


@pytest.fixture
def data(template: Path, tmp_path: Path) -> Path:
    path = tmp_path / "ledger-data"
    shutil.copytree(template, path)
    return path


class Tamper:
    """Edits log.sqlite the way an attacker with the file would: plain SQL, no ledger code."""

    def __init__(self, data: Path) -> None:
        self.db = sqlite3.connect(data / "log.sqlite", isolation_level=None)

    def state(self, pos: int) -> bytes:
        return bytes(self.db.execute("SELECT state FROM stored_events WHERE rowid=?", (pos,)).fetchone()[0])

    def set_state(self, pos: int, state: bytes | None) -> None:
        self.db.execute("UPDATE stored_events SET state=? WHERE rowid=?", (state, pos))

    def flip(self, pos: int, offset: int) -> None:
        state = bytearray(self.state(pos))
        state[offset] ^= 0x01
        self.set_state(pos, bytes(state))

    def delete(self, *positions: int) -> None:
        for pos in positions:
            self.db.execute("DELETE FROM stored_events WHERE rowid=?", (pos,))

    def swap(self, a: int, b: int) -> None:
        sa, sb = self.state(a), self.state(b)
        self.set_state(a, sb)
        self.set_state(b, sa)

    def insert(self, at: int, state: bytes, event_id: str | None = None, topic: str = "LoggedIn") -> None:
        """A new row at position ``at``; the rows from there on move up one position."""
        self.db.execute("UPDATE stored_events SET rowid = -rowid WHERE rowid >= ?", (at,))
        self.db.execute("UPDATE stored_events SET rowid = 1 - rowid WHERE rowid < 0")
        self.db.execute("INSERT INTO stored_events (rowid, originator_id, originator_version, topic, "
                        "state) VALUES (?,?,1,?,?)", (at, uuid.UUID(event_id or str(uuid.uuid4())).hex,
                                                       topic, state))

    def append(self, state: bytes, topic: str = "LoggedIn") -> int:
        size = self.size()
        self.insert(size + 1, state, topic=topic)
        return size + 1

    def size(self) -> int:
        return int(self.db.execute("SELECT max(rowid) FROM stored_events").fetchone()[0])

    def rechain(self, start: int) -> None:
        """Recomputes every prev_hash from ``start`` on: a forger covering their tracks."""
        prev = self.state(start - 1)
        for pos in range(start, self.size() + 1):
            state = hashlib.sha256(prev).digest() + self.state(pos)[32:]
            self.set_state(pos, state)
            prev = state

    def forged_event(self, like: int, **changes: object) -> tuple[str, bytes]:
        """A valid event modelled on position ``like`` with a fresh id: (event id, payload)."""
        event = codec.decode(self.state(like)[40:])
        event = dataclasses.replace(event, event_id=str(uuid.uuid4()), **changes)  # type: ignore[arg-type]
        return event.event_id, codec.encode(event)

    def close(self) -> None:
        self.db.close()


def h(state: bytes) -> bytes:
    return hashlib.sha256(state).digest()


# Each case: (tamper, finding with decoding, finding without decoding or None if invisible).
def insert_forged(t: Tamper, link: bool) -> None:
    event_id, payload = t.forged_event(11)
    prev = h(t.state(11)) if link else bytes(range(32))
    t.insert(12, prev + t.state(11)[32:40] + payload, event_id)


def rewrite_as_garbage(t: Tamper) -> None:
    t.set_state(12, t.state(12)[:40] + b"\xc3\x01not an event at all")
    t.rechain(13)


def clock_back(t: Tamper) -> None:
    state = t.state(12)
    at = int.from_bytes(state[32:40], "big") - 30 * DAY
    t.set_state(12, state[:32] + at.to_bytes(8, "big") + state[40:])
    t.rechain(13)


def renumber_after_delete(t: Tamper) -> None:
    t.delete(12)
    t.db.execute("UPDATE stored_events SET rowid = -(rowid - 1) WHERE rowid > 12")
    t.db.execute("UPDATE stored_events SET rowid = -rowid WHERE rowid < 0")


Case = tuple[Callable[[Tamper], None], tuple[str, int], tuple[str, int] | None]
CASES: dict[str, Case] = {
    "byte of prev_hash": (lambda t: t.flip(12, 5), (ALTERED, 12), (ALTERED, 12)),
    "byte of recorded_at": (lambda t: t.flip(12, 39), (ALTERED, 12), (ALTERED, 12)),
    "byte of the avro header": (lambda t: t.flip(12, 45), (ALTERED, 12), (ALTERED, 12)),
    "last byte of the payload": (lambda t: t.flip(12, -1), (ALTERED, 12), (ALTERED, 12)),
    "byte of a record on a page boundary": (lambda t: t.flip(16, -1), (ALTERED, 16), (ALTERED, 16)),
    "byte of the last record's prev_hash": (lambda t: t.flip(N, 0), (ALTERED, N), (ALTERED, N)),
    "delete a record": (lambda t: t.delete(12), (MISSING, 12), (MISSING, 12)),
    "delete the first record": (lambda t: t.delete(1), (MISSING, 1), (MISSING, 1)),
    "delete a segment's worth": (lambda t: t.delete(*range(15, 35)), (MISSING, 15), (MISSING, 15)),
    "swap neighbours": (lambda t: t.swap(12, 13), (REORDERED, 12), (REORDERED, 12)),
    "swap distant records": (lambda t: t.swap(8, 30), (REORDERED, 8), (REORDERED, 8)),
    "insert forged, prev_hash recomputed": (lambda t: insert_forged(t, True), (FORGED, 12), (FORGED, 12)),
    "insert forged, prev_hash made up": (lambda t: insert_forged(t, False), (FORGED, 12), (FORGED, 12)),
    "replay a copy at the end": (lambda t: t.append(t.state(5)), (REORDERED, N + 1), (REORDERED, N + 1)),
    "clock set back, chain recomputed": (clock_back, (FORGED, 12), (FORGED, 12)),
    "garbage payload, chain recomputed": (rewrite_as_garbage, (FORGED, 12), None),
    "frame cut short": (lambda t: t.set_state(12, t.state(12)[:20]), (ALTERED, 12), (ALTERED, 12)),
    "state set to NULL": (lambda t: t.set_state(12, None), (ALTERED, 12), (ALTERED, 12)),
    "stored event id changed": (
        lambda t: t.db.execute("UPDATE stored_events SET originator_id=? WHERE rowid=12",
                               (uuid.uuid4().hex,)), (ALTERED, 12), None),
    "stored type changed": (
        lambda t: t.db.execute("UPDATE stored_events SET topic='Unsubscribed' WHERE rowid=12 "
                               "AND topic != 'Unsubscribed'"), (ALTERED, 12), None),
    # Removing a row and closing the gap is indistinguishable, by hashes alone, from editing
    # the record before it; the reason says both.
    "delete and renumber": (renumber_after_delete, (ALTERED, 11), (ALTERED, 11)),
}


def reference(data: Path, decode: bool = True) -> Finding | None:
    source = SQLiteFrames(data / "log.sqlite")
    try:
        return verify_chain(source.records(1), check=decode_check(codec) if decode else None).finding
    finally:
        source.close()


def fast(data: Path, *, decode: bool = True, page: int = 4, segment: int | None = 16) -> Finding | None:
    with Auditor(SQLiteFrames(data / "log.sqlite", page=page, segment=segment)) as auditor:
        return auditor.verify(decode=decode).finding


def found(finding: Finding | None) -> tuple[str, int] | None:
    return None if finding is None else (finding.kind, finding.position)


def test_an_untouched_log_verifies_every_way(data: Path) -> None:
    assert reference(data) is None
    assert fast(data) is None and fast(data, decode=False) is None
    assert fast(data, page=8192, segment=None) is None
    with _generic(data) as auditor:
        report = auditor.verify()
    assert report.ok and report.records == N


@pytest.mark.parametrize("name", list(CASES))
def test_tamper_matrix(data: Path, name: str) -> None:
    tamper, with_decode, without_decode = CASES[name]
    t = Tamper(data)
    tamper(t)
    t.close()
    assert found(reference(data)) == with_decode
    assert found(fast(data)) == with_decode
    assert found(fast(data, page=8192, segment=None)) == with_decode
    assert found(fast(data, decode=False)) == without_decode
    finding = fast(data)
    assert finding is not None and finding.reason.startswith(finding.kind + ": ")


def _generic(data: Path) -> Auditor:
    """The auditor through the EventLog port only (how a log without a raw reader is read)."""
    return Auditor(LogFrames(SQLiteEventLog(data / "log.sqlite")))


@pytest.mark.parametrize("name", ["byte of prev_hash", "delete a record", "swap neighbours",
                                  "insert forged, prev_hash recomputed", "garbage payload, chain recomputed"])
def test_the_port_path_agrees(data: Path, name: str) -> None:
    tamper, with_decode, _ = CASES[name]
    t = Tamper(data)
    tamper(t)
    t.close()
    with _generic(data) as auditor:
        assert found(auditor.verify().finding) == with_decode


def test_parallel_segments_in_worker_processes(data: Path) -> None:
    """Worker processes scan aligned segments; the stitched chain and Merkle root are the
    single process's. (Breaks on segment boundaries are in the matrix, segments in-process.)"""
    t = Tamper(data)
    t.flip(27, 7)
    t.close()
    with Auditor(SQLiteFrames(data / "log.sqlite", jobs=2, page=4, segment=8)) as auditor:
        report = auditor.verify(decode=False)
    assert found(report.finding) == (ALTERED, 27) and report.records == 24


# Digests ------------------------------------------------------------------------------------
def auditor(data: Path) -> Auditor:
    return Auditor(SQLiteFrames(data / "log.sqlite", page=8, segment=16))


def append_events(data: Path, n: int, day: int = 10) -> None:
    with Ledger.open(data) as ledger:
        ledger.clock = FixedClock(parse_timestamp("2026-03-01T12:00:00Z") + day * DAY)
        ledger.record_many([make_event("ServiceUsed") for _ in range(n)])


def test_digest_consistency_after_appends(data: Path) -> None:
    with auditor(data) as a:
        old = a.digest(1)
    assert old.size == N
    append_events(data, 13)
    with auditor(data) as a:
        report = a.verify(old)
        assert report.ok and report.records == N + 13 and report.digest_matches is True
        new = a.digest(2)
        proof = a.consistency(old, 3)
    assert (proof.old_size, proof.new_size, proof.new_root) == (N, N + 13, new.merkle_root)
    assert check_consistency(proof, [old, new]).ok
    assert not check_consistency(dataclasses.replace(proof, old_root=new.merkle_root), [old]).ok
    assert "covers" in check_consistency(proof, [dataclasses.replace(old, size=7)]).detail


def test_crypto_shredding_never_invalidates_a_digest(data: Path) -> None:
    with auditor(data) as a:
        before = a.digest(1)
    with Ledger.open(data) as ledger:
        _, event = next(ledger.events())
        assert ledger.personal_data(event) is not None
        destroyed = ledger.vault.shred(event.controller, event.subject, ["profile", "bookkeeping"])
        assert destroyed
        with pytest.raises(KeyUnavailable):
            ledger.personal_data(event)
    with auditor(data) as a:
        assert a.verify(before).ok
        after = a.digest(2)
    assert (after.size, after.head_hash, after.merkle_root) == \
        (before.size, before.head_hash, before.merkle_root)


@pytest.mark.parametrize(
    ("tamper", "expected"),
    [
        (lambda t: t.flip(12, -1), (ALTERED, 12)),
        (lambda t: t.delete(N - 2, N - 1, N), (TRUNCATED, N - 2)),
        (lambda t: t.flip(N, -1), (ALTERED, N)),  # only the digest knows the last record
    ],
    ids=["edited", "truncated", "last record edited"],
)
def test_a_digest_catches_what_the_chain_cannot(data: Path, tamper: Callable[[Tamper], None],
                                                 expected: tuple[str, int]) -> None:
    with auditor(data) as a:
        digest = a.digest(1)
    t = Tamper(data)
    tamper(t)
    t.close()
    with auditor(data) as a:
        report = a.verify(digest, decode=False)
    assert found(report.finding) == expected
    assert report.digest_matches is False


def test_a_rewritten_history_with_a_recomputed_chain(data: Path) -> None:
    """A forger who re-encodes an event and recomputes every later hash passes the chain and
    the decode check; only a digest taken before catches it."""
    with auditor(data) as a:
        digest = a.digest(1)
    t = Tamper(data)
    event = codec.decode(t.state(20)[40:])
    forged = codec.encode(dataclasses.replace(event, source="forged"))
    t.set_state(20, t.state(20)[:40] + forged)
    t.rechain(21)
    t.close()
    with auditor(data) as a:
        assert a.verify().ok
        report = a.verify(digest)
    assert found(report.finding) == (FORGED, N)
    assert "recomputed" in report.finding.reason  # type: ignore[union-attr]


def test_a_break_after_the_digest_prefix_still_confirms_the_prefix(data: Path) -> None:
    with auditor(data) as a:
        digest = a.digest(1)
    append_events(data, 5)
    t = Tamper(data)
    t.flip(N + 3, 3)
    t.close()
    with auditor(data) as a:
        report = a.verify(digest)
    assert found(report.finding) == (ALTERED, N + 3)
    assert report.digest_matches is True


def test_no_digest_of_a_broken_chain(data: Path) -> None:
    t = Tamper(data)
    t.delete(7)
    t.close()
    with auditor(data) as a, pytest.raises(AuditFinding, match="position 7"):
        a.digest(1)


# Inclusion proofs ---------------------------------------------------------------------------
def test_inclusion_proofs_verify_without_the_log(data: Path) -> None:
    append_events(data, 3)
    with auditor(data) as a:
        digest = a.digest(1)
        ids = {r.position: r.event_id for r in a.source.records(1)}
        proofs = [a.prove(ids[p], digest) for p in (1, 2, 17, N, N + 3)]
    for proof in proofs:
        result = check_inclusion(InclusionProof.from_dict(proof.as_dict()), [digest])
        assert result.ok and result.pinned, result.detail
        assert result.event is not None and result.event["event_id"] == proof.event_id


def test_inclusion_proofs_fail_for_a_wrong_event(data: Path) -> None:
    with auditor(data) as a:
        digest = a.digest(1)
        ids = {r.position: r.event_id for r in a.source.records(1)}
        proof = a.prove(ids[17], digest)
        other = a.prove(ids[18], digest)
    assert check_inclusion(proof, [digest]).ok
    wrong_id = dataclasses.replace(proof, event_id=ids[18])
    assert "not " + ids[18] in check_inclusion(wrong_id, [digest]).detail
    moved = dataclasses.replace(proof, position=18, leaf_index=17)
    assert not check_inclusion(moved, [digest]).ok
    borrowed = dataclasses.replace(other, path=proof.path)
    assert not check_inclusion(borrowed, [digest]).ok
    payload = bytearray(proof.payload)
    payload[-1] ^= 1
    assert not check_inclusion(dataclasses.replace(proof, payload=bytes(payload)), [digest]).ok
    append_events(data, 2)
    with auditor(data) as a:
        newer = a.digest(2)
    assert not check_inclusion(proof, [newer]).ok  # a proof is about one tree
    with auditor(data) as a, pytest.raises(AuditFinding, match="no event"):
        a.prove(str(uuid.uuid4()), digest)


def test_no_proof_from_a_log_that_no_longer_matches(data: Path) -> None:
    with auditor(data) as a:
        digest = a.digest(1)
        event_id = next(r.event_id for r in a.source.records(30))
    t = Tamper(data)
    t.flip(3, -1)
    t.close()
    with auditor(data) as a:
        with pytest.raises(AuditFinding, match="no longer matches"):
            a.prove(event_id, digest)
        with pytest.raises(AuditFinding, match="broken chain: first bad position 3"):
            a.consistency(digest, 2)


def test_auditing_never_changes_the_log(data: Path) -> None:
    log = data / "log.sqlite"
    before = log.read_bytes()
    with auditor(data) as a:
        a.verify(a.digest(1))
    assert log.read_bytes() == before
    wal = data / "log.sqlite-wal"  # a read-only WAL reader may create an empty one
    assert not wal.exists() or wal.stat().st_size == 0
