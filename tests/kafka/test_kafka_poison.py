"""Poison on the topic (SPEC §7): messages that are not ledger records, produced raw by any
Kafka client, land in the dead-letter topic with the reason in a header and are skipped;
readers and the writer never stop on them."""

from __future__ import annotations

import json
import random
import uuid
from collections.abc import Callable

from click.testing import CliRunner

import cli
from ledger.adapters.confluent import builtin_id
from ledger.adapters.kafka_log import (
    CHAIN_HEADER,
    KafkaEventLog,
    chain_header,
    partition_for,
)
from ledger.contracts.schemas import default_registry
from ledger.domain.chain import GENESIS_HASH
from tests.integration.log_contract import pending
from tests.kafka.conftest import produce_raw, raw_messages

OpenLog = Callable[..., KafkaEventLog]


def poison(subject: str) -> dict[str, dict]:
    """Each kind of bad message, keyed to a subject that also has good records."""
    good = pending(5, subject=subject)
    schema = default_registry().latest("LoggedIn")
    body = good.payload[10:]
    confluent = b"\x00" + builtin_id(schema).to_bytes(4, "big") + body
    header = [(CHAIN_HEADER, chain_header(GENESIS_HASH, 5, uuid.UUID(good.event_id).bytes))]
    noise = random.Random(6).randbytes(64)
    return {
        "random bytes": {"value": b"\x8f" + noise},
        "truncated Avro": {"value": confluent[:-9], "headers": header},
        "wrong magic byte": {"value": b"\x01" + confluent[1:], "headers": header},
        "single-object, not Confluent": {"value": good.payload, "headers": header},
        "unknown schema id": {"value": b"\x00" + (123_456).to_bytes(4, "big") + body, "headers": header},
        "Avro without the ledger's chain": {"value": confluent},
        "too short": {"value": b"\x00\x01"},
    }


EXPECTED_REASONS = {
    "random bytes": "wrong magic byte 0x8f",
    "truncated Avro": "corrupt LoggedIn body",
    "wrong magic byte": "wrong magic byte 0x01",
    "single-object, not Confluent": "wrong magic byte 0xc3",
    "unknown schema id": "unknown schema id 123456",
    "Avro without the ledger's chain": f"no valid {CHAIN_HEADER} header",
    "too short": "too short (2 bytes)",
}


def test_poison_is_dead_lettered_with_its_reason_and_skipped(open_log: OpenLog, kafka_bootstrap: str) -> None:
    log = open_log()
    subject = "poisoned"
    partition = partition_for(subject.encode(), 3)
    before = [pending(1, subject=subject), pending(2, subject="other")]
    log.append(before)
    bad = poison(subject)
    produce_raw(kafka_bootstrap, log.settings.topic,
                [{"key": subject.encode(), "partition": partition, **m} for m in bad.values()])
    # The same writer appends after the poison: the gap holds no ledger record, so the
    # chain simply continues over it.
    after = [pending(3, subject=subject), pending(4, subject="other")]
    log.append(after)

    records = list(log.read())
    assert sorted(r.event_id for r in records) == sorted(r.event_id for r in before + after)
    mine = [r for r in records if r.partition == partition]
    assert mine[-1].prev_hash == mine[-2].hash  # chained across the poison

    letters = raw_messages(kafka_bootstrap, log.settings.rejected_topic)
    reasons = {}
    for m in letters:
        headers = dict(m.headers)
        reasons[headers["ledger.source"].decode()] = headers["ledger.reason"].decode()
    # The poison follows the good records that were already in the partition.
    first_poison = sum(partition_for(r.subject.encode(), 3) == partition for r in before)
    for i, (kind, expected) in enumerate(EXPECTED_REASONS.items()):
        source = f"{log.settings.topic}/{partition}/{first_poison + i}"
        assert expected in reasons[source], (kind, reasons[source])
    assert len(reasons) == len(bad)
    # The dead letter keeps the original bytes and key, for forensics.
    by_source = {dict(m.headers)["ledger.source"].decode(): m for m in letters}
    copy = by_source[f"{log.settings.topic}/{partition}/{first_poison}"]
    assert copy.value == bad["random bytes"]["value"]
    assert dict(copy.headers)["ledger.source.key"] == subject.encode()


def test_every_reader_skips_poison_and_the_cli_lists_it(open_log: OpenLog, kafka_bootstrap: str,
                                                        kafka_url: str) -> None:
    writer = open_log()
    writer.append([pending(1, subject="s")])
    produce_raw(kafka_bootstrap, writer.settings.topic,
                [{"key": b"s", "partition": partition_for(b"s", 3), **m} for m in poison("s").values()])
    # A new process: its scan before appending meets the poison too.
    fresh_writer = open_log()
    assert fresh_writer.append([pending(2, subject="s")]) != [None]
    reader = open_log()
    assert [r.recorded_at for r in reader.read()] == [1, 2]
    assert [r.recorded_at for r in reader.read(recorded_by=1)] == [1]
    assert reader.head().recorded_at == 2
    listed = CliRunner().invoke(cli.main, ["--log", kafka_url, "kafka", "rejected", "--json"])
    assert listed.exit_code == 0, listed.output
    entries = json.loads(listed.stdout)
    assert len(entries) == len(EXPECTED_REASONS)  # one per message, however many readers
    assert {e["reason"].split(" (")[0] for e in entries} >= {"wrong magic byte 0x8f"}
