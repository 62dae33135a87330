"""The EventLog contract on Kafka, and what only Kafka has: partitions, the Confluent framing,
schema ids, more than one process writing."""

from __future__ import annotations

import itertools
import json
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

import cli
from ledger.adapters.confluent import SchemaRegistryUnavailable, builtin_id
from ledger.adapters.kafka_log import (
    CHAIN_HEADER,
    KafkaEventLog,
    KafkaSettings,
    kafka_position,
    parse_chain_header,
    partition_for,
)
from ledger.contracts.codec import AvroCodec
from ledger.contracts.schemas import default_registry
from ledger.domain.chain import GENESIS_HASH, LogRecord
from ledger.domain.errors import ClockError, LogError
from ledger.domain.timeutil import format_micros
from ledger.ports import EventLog
from tests.conftest import make_event
from tests.integration.log_contract import EventLogContract, pending
from tests.kafka.conftest import raw_messages
from tests.kafka.fake_registry import FakeRegistry

OpenLog = Callable[..., KafkaEventLog]


class TestKafkaEventLog(EventLogContract):
    @pytest.fixture
    def log(self, open_log: OpenLog) -> Iterator[EventLog]:
        yield open_log()


def _chains(records: list[LogRecord]) -> dict[int, list[LogRecord]]:
    chains: dict[int, list[LogRecord]] = {}
    for r in records:
        chains.setdefault(r.partition, []).append(r)
    return chains


def assert_chains_intact(records: list[LogRecord]) -> None:
    for chain in _chains(records).values():
        assert chain[0].prev_hash == GENESIS_HASH
        for before, after in itertools.pairwise(chain):
            assert after.prev_hash == before.hash, f"chain breaks at position {after.position}"


def test_one_partition_gives_the_embedded_positions(open_log: OpenLog, kafka_url: str) -> None:
    log = open_log(kafka_url.replace("partitions=3", "partitions=1"))
    assert log.append([pending(1, subject=f"s{i}") for i in range(4)]) == [1, 2, 3, 4]
    assert [r.position for r in log.read(3)] == [3, 4]


def test_subjects_spread_over_partitions_by_the_java_partitioner(open_log: OpenLog, kafka_bootstrap: str) -> None:
    log = open_log()
    records = [pending(1, subject=f"subject-{i}") for i in range(30)]
    positions = log.append(records)
    assert log.partitions() == [0, 1, 2]
    for r, position in zip(records, positions, strict=True):
        expected = partition_for(r.subject.encode(), 3)
        assert position is not None and position >= kafka_position(expected, 0)
        assert position < kafka_position(expected + 1, 0)
    assert len({r.partition for r in log.read()}) == 3


def test_messages_are_confluent_framed_keyed_and_chained(open_log: OpenLog, kafka_bootstrap: str) -> None:
    log = open_log()
    record = pending(1_772_357_400_123_456, subject="anna")
    log.append([record])
    [m] = raw_messages(kafka_bootstrap, log.settings.topic)
    schema = default_registry().latest("LoggedIn")
    assert m.key == b"anna"
    assert m.value[0] == 0 and int.from_bytes(m.value[1:5], "big") == builtin_id(schema)
    assert m.value[5:] == record.payload[10:]  # the same Avro body as the embedded log
    prev_hash, recorded_at, event_id = parse_chain_header(m.headers)
    assert (prev_hash, recorded_at) == (GENESIS_HASH, record.recorded_at)
    assert event_id == uuid.UUID(record.event_id).bytes
    assert m.timestamp == record.recorded_at // 1000
    assert [name for name, _ in m.headers] == [CHAIN_HEADER]


def test_a_new_writer_continues_every_chain_and_knows_every_id(open_log: OpenLog) -> None:
    first = open_log()
    earlier = [pending(10, subject=f"s{i}") for i in range(9)]
    first.append(earlier)
    first.close()
    second = open_log()
    assert second.append(earlier[:3]) == [None, None, None]
    assert second.contains([earlier[4].event_id]) == {earlier[4].event_id}
    with pytest.raises(ClockError, match="behind"):  # the clock is the whole topic's
        second.append([pending(9, subject="someone-else")])
    second.append([pending(11, subject=f"s{i}") for i in range(9)])
    records = list(second.read())
    assert len(records) == 18
    assert_chains_intact(records)


def test_a_second_writer_is_detected_and_readers_apply_the_event_once(open_log: OpenLog) -> None:
    """Two processes both believing they are the partition's only writer: the one that lands
    second finds the other's record where its own should be, and says so; the event it
    produced twice is read once."""
    a, b = open_log(), open_log()
    a.append([pending(1, subject="s")])
    b.contains([])  # b learns the topic now, before a's next append
    event = pending(2, subject="s")
    a.append([event])
    with pytest.raises(LogError, match=r"another writer appended ledger records at offsets 1\.\.1"):
        b.append([event])
    reader = open_log()
    assert [r.event_id for r in reader.read()].count(event.event_id) == 1
    everything = list(reader.read(with_duplicates=True))
    assert [r.event_id for r in everything].count(event.event_id) == 2
    second_copy = everything[-1]
    # Resuming after the first copy still knows it: the reader collects the ids before.
    assert list(reader.read(second_copy.position)) == []
    # The chain shows the break where b appended on a stale tail.
    assert second_copy.prev_hash != everything[-2].hash


def test_read_partition_resumes_from_an_offset(open_log: OpenLog) -> None:
    log = open_log()
    positions = log.append([pending(i, subject="same") for i in range(1, 6)])
    partition = partition_for(b"same", 3)
    assert [r.position for r in log.read_partition(partition, 2)] == positions[2:]
    assert [r.recorded_at for r in log.read_partition(partition, 1, recorded_by=3)] == [2, 3]


def test_head_rows_name_each_partition_chain_by_offset(open_log: OpenLog) -> None:
    log = open_log()
    assert log.head_rows() == []
    positions = log.append([pending(i, subject="same") for i in range(1, 4)])
    partition = partition_for(b"same", 3)
    head = log.heads()[partition]
    assert log.head_rows() == [{"partition": partition, "offset": 2, "position": positions[-1],
                                "recorded_at": format_micros(head.recorded_at),
                                "hash": head.hash.hex()}]


def test_a_missing_topic_reads_as_empty_and_is_created_by_the_first_append(open_log: OpenLog) -> None:
    log = open_log()
    assert log.partitions() == [] and list(log.read()) == [] and log.heads() == {}
    assert log.contains([str(uuid.uuid4())]) == set()
    log.append([pending(1)])
    assert log.partitions() == [0, 1, 2]


def test_schema_ids_from_a_registry(open_log: OpenLog, fake_registry: FakeRegistry,
                                    kafka_bootstrap: str) -> None:
    log = open_log(schema_registry=fake_registry.url)
    log.append([pending(1, subject=f"s{i}") for i in range(5)])
    assert fake_registry.calls["register"] == 1  # registered on first use, then cached
    topic = log.settings.topic
    assert list(fake_registry.subjects) == [f"{topic}-consent_ledger.LoggedIn"]
    ids = {int.from_bytes(m.value[1:5], "big") for m in raw_messages(kafka_bootstrap, topic)}
    assert ids == {1}
    reader = open_log(schema_registry=fake_registry.url)  # a fresh process: resolves id 1
    assert len(list(reader.read())) == 5
    assert fake_registry.calls["lookup"] == 1
    builtin_reader = open_log()  # ids from a registry mean nothing to built-in ids
    assert list(builtin_reader.read()) == []


def test_an_unreachable_registry_is_one_clear_error(open_log: OpenLog, kafka_url: str,
                                                    tmp_path: Path) -> None:
    log = open_log(schema_registry="http://127.0.0.1:9")
    with pytest.raises(SchemaRegistryUnavailable, match=r"schema registry http://127.0.0.1:9 unreachable"):
        log.append([pending(1)])
    # ... and on the command line a usage/configuration error: exit 2, one line, no counts
    data = str(tmp_path / "d")
    runner = CliRunner()
    assert runner.invoke(cli.main, ["--data", data, "init"]).exit_code == 0
    line = json.dumps(make_event(occurred_at="2026-01-01T10:00:00Z")) + "\n"
    result = runner.invoke(cli.main, ["--data", data, "--log", kafka_url, "--schema-registry",
                                      "http://127.0.0.1:9", "--now", "2026-01-02", "publish", "-"],
                           input=line)
    assert (result.exit_code, result.stdout) == (2, ""), result.output
    [message] = result.stderr.splitlines()
    assert message.startswith("Error: schema registry http://127.0.0.1:9 unreachable"), message


def test_payloads_read_back_decode_to_the_same_events(open_log: OpenLog) -> None:
    log = open_log()
    records = [pending(3, subject=f"s{i}") for i in range(6)]
    log.append(records)
    codec = AvroCodec()
    read = {r.event_id: r for r in log.read()}
    for r in records:
        assert read[r.event_id].payload == r.payload
        assert codec.decode(read[r.event_id].payload).subject == r.subject


def test_settings_come_from_the_url() -> None:
    s = KafkaSettings.parse("kafka://a:1,b/t.x?partitions=12&timeout=2.5&compression=zstd&rejected=dl")
    assert (s.bootstrap, s.topic, s.partitions, s.timeout, s.compression, s.rejected_topic) == (
        ("a:1", "b:9092"), "t.x", 12, 2.5, "zstd", "dl")
    assert KafkaSettings.parse("kafka://h").topic == "ledger.events"
