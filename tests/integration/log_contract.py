"""The EventLog contract: one test suite, subclassed once per backend (embedded SQLite here,
Kafka later), in the style of eventsourcing's own persistence tests."""

from __future__ import annotations

import dataclasses
import itertools
import uuid
from collections.abc import Iterator

import pytest

from ledger.contracts.codec import AvroCodec
from ledger.domain.chain import (
    GENESIS_HASH,
    Conflict,
    PendingRecord,
    chain_hash,
)
from ledger.domain.errors import ClockError
from ledger.domain.events import Event
from ledger.ports import EventLog

_codec = AvroCodec()


def pending(recorded_at: int, subject: str = "s1") -> PendingRecord:
    """A real encoded event (the Kafka log checks what it frames and reads back)."""
    eid = str(uuid.uuid4())
    event = Event("LoggedIn", eid, "cowrite", subject, max(0, recorded_at - 1), recorded_at,
                  "web", "subject", {"app": "cowrite", "method": "bankid"})
    return PendingRecord(eid, "LoggedIn", subject, recorded_at, _codec.encode(event))


class EventLogContract:
    @pytest.fixture
    def log(self) -> Iterator[EventLog]:
        raise NotImplementedError

    def test_an_empty_log_has_a_genesis_head(self, log: EventLog) -> None:
        head = log.head()
        assert (head.position, head.hash) == (0, GENESIS_HASH)
        assert list(log.read()) == []

    def test_append_assigns_increasing_positions_in_order(self, log: EventLog) -> None:
        records = [pending(10), pending(10), pending(11)]
        positions = log.append(records)
        assert positions == sorted(positions) and len(set(positions)) == 3
        read = list(log.read())
        assert [r.event_id for r in read] == [r.event_id for r in records]
        assert [r.position for r in read] == positions
        assert [r.payload for r in read] == [r.payload for r in records]

    def test_duplicates_are_reported_and_not_stored(self, log: EventLog) -> None:
        first = pending(10)
        assert log.append([first])[0] is not None
        again = [first, pending(11), first]
        positions = log.append(again)
        assert positions[0] is None and positions[2] is None and positions[1] is not None
        assert len(list(log.read())) == 2
        assert log.contains([first.event_id, str(uuid.uuid4())]) == {first.event_id}

    def test_order_per_subject_is_append_order(self, log: EventLog) -> None:
        records = [pending(10 + i, subject=f"s{i % 3}") for i in range(30)]
        log.append(records[:10])
        log.append(records[10:])
        for subject in ("s0", "s1", "s2"):
            expected = [r.event_id for r in records if r.subject == subject]
            by_subject = [r.event_id for r in log.read() if r.event_id in set(expected)]
            assert by_subject == expected

    def test_read_from_a_position_and_with_a_limit(self, log: EventLog) -> None:
        positions = log.append([pending(10) for _ in range(5)])
        assert [r.position for r in log.read(positions[2])] == positions[2:]
        assert [r.position for r in log.read(positions[1], limit=2)] == positions[1:3]

    def test_as_of_reads_only_what_was_recorded_by_then(self, log: EventLog) -> None:
        log.append([pending(10), pending(20)])
        log.append([pending(30)])
        assert [r.recorded_at for r in log.read(recorded_by=20)] == [10, 20]
        assert [r.recorded_at for r in log.read(recorded_by=9)] == []
        assert len(list(log.read(recorded_by=10**18))) == 3

    def test_the_same_id_with_another_digest_is_a_conflict_not_stored(self, log: EventLog) -> None:
        first = dataclasses.replace(pending(10), digest=b"a" * 32)
        (position,) = log.append([first])
        assert log.append([first]) == [None]  # the same content: a duplicate
        other = dataclasses.replace(first, digest=b"b" * 32, recorded_at=11)
        outcome, fresh = log.append([other, pending(11)])
        assert isinstance(outcome, Conflict) and outcome.position == position
        assert isinstance(fresh, int)
        twice = dataclasses.replace(pending(12), digest=b"c" * 32)
        landed, again = log.append([twice, dataclasses.replace(twice, digest=b"d" * 32)])
        assert isinstance(again, Conflict) and again.position == landed  # within one batch too
        assert [r.event_id for r in log.read()].count(first.event_id) == 1
        assert len(list(log.read())) == 3

    def test_a_clock_behind_the_log_is_refused(self, log: EventLog) -> None:
        log.append([pending(100)])
        with pytest.raises(ClockError, match="behind"):
            log.append([pending(99)])
        assert len(list(log.read())) == 1

    def test_a_batch_with_a_record_behind_the_clock_stores_nothing(self, log: EventLog) -> None:
        log.append([pending(100)])
        ahead = pending(101)
        with pytest.raises(ClockError, match="behind"):
            log.append([ahead, pending(99)])
        assert log.contains([ahead.event_id]) == set()
        assert len(list(log.read())) == 1 and log.head().recorded_at == 100

    def test_each_record_carries_its_predecessors_hash(self, log: EventLog) -> None:
        log.append([pending(1), pending(2)])
        log.append([pending(3)])
        records = list(log.read())
        assert records[0].prev_hash == GENESIS_HASH
        for before, after in itertools.pairwise(records):
            assert after.prev_hash == before.hash
        last = records[-1]
        assert log.head().hash == chain_hash(last.prev_hash, last.recorded_at, last.payload)

    def test_every_chain_is_intact_and_ends_at_its_head(self, log: EventLog) -> None:
        """One chain per partition (Kafka) or one for the log (embedded); heads() names the
        last record of each."""
        log.append([pending(5, subject=f"s{i}") for i in range(12)])
        log.append([pending(6, subject=f"s{i}") for i in range(0, 12, 3)])
        chains: dict[int, list] = {}
        for record in log.read():
            chains.setdefault(record.partition, []).append(record)
        heads = log.heads()
        assert set(heads) == set(chains)
        for partition, chain in chains.items():
            assert chain[0].prev_hash == GENESIS_HASH
            for before, after in itertools.pairwise(chain):
                assert after.prev_hash == before.hash
            assert (heads[partition].position, heads[partition].hash) == (chain[-1].position, chain[-1].hash)
        assert log.head().position in {h.position for h in heads.values()}

    def test_read_is_in_position_order_and_resumes_from_any_position(self, log: EventLog) -> None:
        log.append([pending(7, subject=f"s{i % 5}") for i in range(15)])
        records = list(log.read())
        positions = [r.position for r in records]
        assert positions == sorted(positions) and len(set(positions)) == 15
        for i in (0, 4, 9, 14):
            assert [r.position for r in log.read(positions[i])] == positions[i:]
        assert [r.position for r in log.read(positions[-1] + 1)] == []

    def test_as_of_over_many_subjects(self, log: EventLog) -> None:
        early = [pending(10, subject=f"s{i}") for i in range(6)]
        late = [pending(20, subject=f"s{i}") for i in range(6)]
        log.append(early)
        log.append(late)
        assert {r.event_id for r in log.read(recorded_by=15)} == {r.event_id for r in early}

    def test_recorded_at_round_trips(self, log: EventLog) -> None:
        log.append([pending(1_772_357_400_123_456)])
        assert next(iter(log.read())).recorded_at == 1_772_357_400_123_456
