"""The reference chain verifier and the fast scanner as pure functions over records in memory:
one chain at a time, as a Kafka partition will be verified."""

from __future__ import annotations

import dataclasses

from ledger.domain import merkle
from ledger.domain.chain import GENESIS_HASH, LogRecord
from ledger.domain.chain_check import (
    MISSING,
    REORDERED,
    ChainScan,
    pages_of,
    scan_frames,
    verify_chain,
)


def chain(n: int, *, positions: list[int] | None = None, prev: bytes = GENESIS_HASH) -> list[LogRecord]:
    records = []
    for i, position in enumerate(positions or range(1, n + 1)):
        r = LogRecord(position, f"00000000-0000-4000-8000-{i:012x}", "LoggedIn", 1_000 + i, prev,
                      f"payload {i}".encode())
        records.append(r)
        prev = r.hash
    return records


def test_an_intact_chain_and_its_head() -> None:
    records = chain(10)
    report = verify_chain(records)
    assert report.ok and report.records == 10
    assert (report.head_position, report.head_hash) == (10, records[-1].hash)


def test_kafka_offsets_may_have_gaps_but_never_go_back() -> None:
    offsets = [0, 1, 2, 5, 6, 9]  # transaction markers take offsets too
    records = chain(6, positions=offsets)
    assert verify_chain(records, start=None).ok
    gapped = verify_chain(records, start=0).finding
    assert gapped is not None and (gapped.kind, gapped.position) == (MISSING, 3)
    back = [*records[:3], dataclasses.replace(records[3], position=1), *records[4:]]
    finding = verify_chain(back, start=None).finding
    assert finding is not None and (finding.kind, finding.position) == (REORDERED, 1)


def test_a_chain_can_be_verified_from_the_middle() -> None:
    records = chain(20)
    tail = records[12:]
    assert verify_chain(tail, prev_hash=records[11].hash, start=13).ok
    wrong = verify_chain(tail, prev_hash=records[10].hash, start=13).finding
    assert wrong is not None and (wrong.kind, wrong.position) == (MISSING, 13)


def test_breaks_are_named_in_memory_too() -> None:
    records = chain(8)
    swapped = [*records[:3], records[4], records[3], *records[5:]]
    renumbered = [dataclasses.replace(r, position=i) for i, r in enumerate(swapped, 1)]
    finding = verify_chain(renumbered).finding
    assert finding is not None and (finding.kind, finding.position) == (REORDERED, 4)


def test_the_fast_scan_agrees_with_the_tree_and_the_head() -> None:
    records = chain(37)
    scan: ChainScan = scan_frames(pages_of(records, size=8), start=1, stop=38, merkle_stop=38)
    assert scan.suspect is None and scan.count == 37
    assert scan.first_prev == GENESIS_HASH and scan.last_hash == records[-1].hash
    tree = merkle.TreeBuilder()
    for size, subtree in scan.subtrees:
        tree.push(size, subtree)
    assert tree.root() == merkle.root(merkle.leaf_hashes(r.hash for r in records))
    broken = [*records[:20], dataclasses.replace(records[20], payload=b"edited"), *records[21:]]
    suspect = scan_frames(pages_of(broken, size=8), start=1, stop=38).suspect
    assert suspect is not None and suspect <= 21
