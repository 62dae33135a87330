"""The pure parts of the Kafka log: URL settings, positions, the chain header, the partitioner
and the Confluent framing (no broker needed)."""

from __future__ import annotations

import uuid

import pytest

from ledger.adapters.confluent import (
    BuiltinSchemaIds,
    RegistrySchemaIds,
    builtin_id,
    split_confluent,
    to_confluent,
)
from ledger.adapters.kafka_log import (
    KafkaSettings,
    TopicsReport,
    chain_header,
    kafka_position,
    parse_chain_header,
    partition_for,
    split_position,
)
from ledger.contracts.codec import AvroCodec
from ledger.contracts.schemas import default_registry
from ledger.domain.errors import CodecError, ConfigError, UsageError
from ledger.domain.events import Event


@pytest.mark.parametrize(("key", "java"), [
    # org.apache.kafka.common.utils.UtilsTest#testMurmur2
    (b"21", -973932308), (b"foobar", -790332482), (b"a-little-bit-long-string", -985981536),
    (b"a-little-bit-longer-string", -1486304829), (b"abc", 479470107),
])
def test_partitions_are_the_java_clients(key: bytes, java: int) -> None:
    assert partition_for(key, 1_000_003) == (java & 0x7FFFFFFF) % 1_000_003


def test_positions_encode_partition_and_offset() -> None:
    assert kafka_position(0, 0) == 1 and kafka_position(0, 41) == 42  # one partition: 1, 2, 3 ...
    for partition, offset in [(0, 0), (1, 0), (5, 123_456_789), (4095, (1 << 40) - 1)]:
        assert split_position(kafka_position(partition, offset)) == (partition, offset)
    assert kafka_position(1, 0) > kafka_position(0, (1 << 40) - 1)  # partition-major order
    assert split_position(0) == split_position(1) == (0, 0)


def test_the_chain_header_round_trips_and_rejects_garbage() -> None:
    eid = uuid.uuid4().bytes
    header = chain_header(b"\x07" * 32, -5, eid)
    assert len(header) == 57 and header[0] == 1
    assert parse_chain_header([("other", b"x"), ("ledger.chain", header)]) == (b"\x07" * 32, -5, eid)
    assert parse_chain_header([("ledger.chain", header[:-1])]) is None
    assert parse_chain_header([("ledger.chain", b"\x02" + header[1:])]) is None
    assert parse_chain_header(None) is None


def test_builtin_schema_ids_are_fingerprint_bits_and_never_move() -> None:
    registry = default_registry()
    table = BuiltinSchemaIds(registry).table()
    assert len(table) == len(list(registry.all_versions()))
    logged_in = registry.latest("LoggedIn")
    assert builtin_id(logged_in) == int.from_bytes(logged_in.fingerprint[:4], "little") & 0x7FFFFFFF
    assert builtin_id(logged_in) == 235_766_644  # pinned: a topic's ids must outlive releases


def test_confluent_framing_keeps_the_body_bytes() -> None:
    registry = default_registry()
    ids = BuiltinSchemaIds(registry)
    event = Event("LoggedIn", str(uuid.uuid4()), "cowrite", "s", 1, 2, "web", "subject",
                  {"app": "cowrite", "method": "bankid"})
    payload = AvroCodec(registry).encode(event)
    value = to_confluent(payload, registry, ids)
    assert value[0] == 0 and value[5:] == payload[10:]
    schema, body = split_confluent(value, ids)
    assert (schema.type, body) == ("LoggedIn", payload[10:])
    with pytest.raises(CodecError, match="single-object"):
        to_confluent(value, registry, ids)
    with pytest.raises(CodecError, match="too short"):
        split_confluent(b"\x00\x00", ids)
    with pytest.raises(CodecError, match="no value"):
        split_confluent(None, ids)


@pytest.mark.parametrize(("url", "problem"), [
    ("http://h:9092/t", "not a kafka:// URL"),
    ("kafka://h:x/t", "bad broker address"),
    ("kafka://:9092/t", "bad broker address"),
    ("kafka://h/t?colour=red", "unknown option 'colour'"),
    ("kafka://h/t?partitions=0", "bad value for partitions"),
    ("kafka://h/t?compression=brotli", "bad value for compression"),
    ("kafka://h/t?timeout=-1", "bad value for timeout"),
    ("kafka://h/bad topic", "invalid Kafka topic name"),
])
def test_bad_kafka_urls_are_usage_errors(url: str, problem: str) -> None:
    with pytest.raises(UsageError, match=problem) as e:
        KafkaSettings.parse(url)
    assert e.value.exit_code == 2


def test_a_registry_url_must_be_http() -> None:
    with pytest.raises(ConfigError, match="http"):
        RegistrySchemaIds("kafka://x", "t", default_registry())


def test_an_existing_event_topic_is_never_repartitioned() -> None:
    report = TopicsReport({"events": 6, "events.rejected": 1}, created=[])
    report.check_not_repartitioned("events", None)  # whatever it has
    report.check_not_repartitioned("events", 6)
    with pytest.raises(UsageError, match="events already has 6 partitions, not 4; repartitioning "
                                         "would move subjects between partitions") as e:
        report.check_not_repartitioned("events", 4)
    assert e.value.exit_code == 2
