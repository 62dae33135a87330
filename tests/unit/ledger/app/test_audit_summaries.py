"""The audit toolkit's summaries as pure values: each Kafka partition verified as its own
chain (and what `ledger kafka verify` / `ledger audit verify` print of it), and the one-line
chain status of `ledger audit report`."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

from ledger.adapters.kafka_log import kafka_position
from ledger.app.auditing import (
    ChainStatus,
    PartitionChain,
    PartitionsReport,
    VerifyReport,
    verify_partitions,
)
from ledger.contracts.codec import AvroCodec
from ledger.contracts.schemas import SchemaRegistry, default_registry
from ledger.domain.chain import GENESIS_HASH, LogRecord
from ledger.domain.chain_check import ALTERED, ChainReport, Finding
from ledger.domain.events import Event

SUBJECT = "ab" * 32
HASH = bytes(range(32))


def intact(partition: int, records: int, head_offset: int) -> PartitionChain:
    return PartitionChain(partition, ChainReport(records, kafka_position(partition, head_offset),
                                                 HASH, 1_000, None))


def broken(partition: int, records: int, bad_offset: int) -> PartitionChain:
    finding = Finding(ALTERED, kafka_position(partition, bad_offset), "the payload was changed")
    return PartitionChain(partition, ChainReport(records, None, HASH, None, finding))


def test_a_partition_row_names_offsets_not_positions() -> None:
    assert intact(2, 7, 9).as_dict() == {
        "partition": 2, "records": 7, "ok": True, "head_offset": 9, "head_hash": HASH.hex(),
        "first_bad_offset": None, "first_bad_position": None, "kind": None, "reason": None,
    }
    row = broken(1, 3, 4).as_dict()
    assert (row["ok"], row["head_offset"], row["first_bad_offset"]) == (False, None, 4)
    assert row["first_bad_position"] == kafka_position(1, 4)
    assert (row["kind"], row["reason"]) == (ALTERED, "altered: the payload was changed")


def test_all_partitions_intact() -> None:
    report = PartitionsReport((intact(0, 5, 4), intact(1, 2, 1)))
    assert report.ok and report.records == 7 and report.first_bad is None and report.reason is None
    assert report.as_dict() == {"ok": True, "records": 7, "first_bad_position": None,
                                "reason": None, "partitions": report.rows()}
    assert [r["partition"] for r in report.rows()] == [0, 1]


def test_the_first_broken_partition_is_the_finding() -> None:
    report = PartitionsReport((intact(0, 5, 4), broken(1, 3, 2), broken(2, 1, 0)))
    assert not report.ok and report.records == 9
    assert report.first_bad is not None and report.first_bad.partition == 1
    assert report.reason == "partition 1 offset 2: altered: altered: the payload was changed"
    summary = report.as_dict()
    assert (summary["ok"], summary["first_bad_position"]) == (False, kafka_position(1, 2))
    assert len(summary["partitions"]) == 3


def test_no_partitions_verify_as_an_empty_intact_log() -> None:
    report = PartitionsReport(())
    assert report.ok and report.records == 0 and report.rows() == []


class FakePartitionedLog:
    """Two partitions of real ledger records in memory; partition 1 has offset gaps."""

    def __init__(self, tamper: bool = False) -> None:
        self.registry: SchemaRegistry = default_registry()
        codec = AvroCodec(self.registry)
        self.chains: dict[int, list[LogRecord]] = {}
        for p, offsets in ((0, [0, 1, 2]), (1, [0, 3])):
            prev, records = GENESIS_HASH, []
            for i, offset in enumerate(offsets):
                event_id = f"00000000-0000-4000-8000-{p:06x}{i:06x}"
                at = 1_000 + i
                payload = codec.encode(Event("LoggedIn", event_id, "cowrite", SUBJECT, at, at,
                                             "web", "subject", {"app": "cowrite", "method": "bankid"}))
                r = LogRecord(kafka_position(p, offset), event_id, "LoggedIn", at, prev, payload, p)
                records.append(r)
                prev = r.hash
            self.chains[p] = records
        if tamper:
            r = self.chains[1][1]
            self.chains[1][1] = dataclasses.replace(r, event_type="ConsentGiven")

    def partitions(self) -> list[int]:
        return sorted(self.chains)

    def read_partition(self, partition: int, offset: int = 0, *,
                       with_duplicates: bool = False) -> Iterator[LogRecord]:
        assert offset == 0 and with_duplicates  # every record, from the start
        return iter(self.chains[partition])


def test_verify_partitions_checks_each_chain_and_decodes_every_record() -> None:
    report = verify_partitions(FakePartitionedLog())
    assert report.ok and report.records == 5
    assert [(r["partition"], r["records"], r["head_offset"]) for r in report.rows()] == [(0, 3, 2), (1, 2, 3)]


def test_verify_partitions_names_a_record_that_is_not_what_it_says() -> None:
    report = verify_partitions(FakePartitionedLog(tamper=True))
    assert not report.ok and report.first_bad is not None
    row = report.first_bad.as_dict()
    assert (row["partition"], row["first_bad_offset"]) == (1, 3)
    assert "ConsentGiven" in row["reason"] and "LoggedIn" in row["reason"]


def test_chain_status_of_an_intact_and_a_broken_chain() -> None:
    ok = ChainStatus.of(VerifyReport(1234, HASH, None, True))
    assert ok == ChainStatus(True, 1234, HASH.hex(), "1,234 records chain and decode")
    bad = ChainStatus.of(VerifyReport(8, HASH, Finding(ALTERED, 8, "hash mismatch"), True))
    assert bad == ChainStatus(False, 8, HASH.hex(), "first bad position 8: altered: hash mismatch")
