"""The Kafka event log (SPEC §8, §9): the ``EventLog`` port on a Kafka topic, with kafka-python.

URL: ``kafka://host[:port][,host[:port]...][/topic][?partitions=N&timeout=S&compression=C
&rejected=TOPIC]`` (defaults: port 9092, topic ``ledger.events``, 6 partitions when the ledger
creates the topic, 30 s timeout, lz4, dead letters on ``ledger.rejected``).

Messages: key = the subject pseudonym (one subject's events stay in order in one partition;
the partition is murmur2(key) as in the Java client, computed here because the chain needs
it before sending); value = Confluent wire format (``ledger.confluent``); one header,
``ledger.chain`` = version 1 (1 byte) || prev_hash (32) || recorded_at (8, big-endian µs)
|| event_id (16); a second, ``ledger.digest`` = the event's content digest (32 bytes, see
``PendingRecord.digest``; absent on records from before digests); message timestamp =
recorded_at in ms (for Kafka tools only).

Hash chain: one per partition. A record's hash is SHA-256(prev_hash || recorded_at ||
single-object payload), the same formula and the same payload bytes as the embedded log, so
the chain does not depend on which schema ids framed the message. Messages that are not valid
ledger records (not the Confluent format, unknown schema id, corrupt body, no chain header)
are not part of any chain: readers copy them to the dead-letter topic with the reason in
headers and skip them.

Positions: Kafka has no global order, so a position encodes (partition, offset):
``(partition << 40 | offset) + 1``. On a one-partition topic that is 1, 2, 3 ... like the
embedded log. ``read(start)`` returns the records whose position is >= start in position
order: partition by partition, each in offset order. A single int is therefore a resume
cursor only within one partition; readers that follow a multi-partition topic keep a
per-partition offset vector (``read_partition``).

Writer assumption: one writer per partition at a time (in practice one publishing ledger
process per topic). The writer learns each partition's tail and the set of event ids in the
topic (with each one's position and content digest) by scanning the topic on its first append
(cost: one read of the topic; memory: about 150 bytes per event id), keeps both in memory, and checks after every acknowledged append that
its records landed right after its known tail. If another ledger record landed in between
(the assumption was broken), the append raises ``LogError`` naming the partition and
offsets: the chain is broken there and ``ledger kafka verify`` shows it. Foreign or
poison messages in between are harmless (not part of the chain).

Idempotency: the writer never produces an event id it has seen in the topic; the same id with
another content digest is reported as a ``Conflict`` naming the stored record's position (a
stored record without a digest counts as the same content). Readers skip an
event id already read from the same partition (one event, one subject, one partition), so a
duplicate produced despite that (two writers racing) is never applied twice; resuming a read
in the middle of a partition first collects the ids before the resume offset.

Not used, on purpose: consumer groups (partitions are assigned explicitly), transactions,
``offsets_for_times`` and ``end_offsets`` (the high-water mark comes from fetch responses)."""

from __future__ import annotations

import hashlib
import logging
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

from ledger.adapters.confluent import (
    CONFLUENT_HEADER,
    BuiltinSchemaIds,
    RegistrySchemaIds,
    SchemaIds,
    single_object,
    split_confluent,
    to_confluent,
)
from ledger.adapters.dead_letters import safe_reason
from ledger.contracts.codec import HEADER_SIZE, AvroCodec
from ledger.contracts.schemas import SchemaRegistry, default_registry
from ledger.domain.chain import (
    GENESIS_HASH,
    Conflict,
    LogHead,
    LogRecord,
    PendingRecord,
)
from ledger.domain.errors import (
    ClockError,
    CodecError,
    LogError,
    UsageError,
)
from ledger.domain.timeutil import format_micros
from ledger.ports import EventLog

if TYPE_CHECKING:
    from kafka import KafkaConsumer, KafkaProducer

    from ledger.config import Settings

logger = logging.getLogger(__name__)

DEFAULT_PORT = 9092
DEFAULT_TOPIC = "ledger.events"
REJECTED_TOPIC = "ledger.rejected"
DEFAULT_PARTITIONS = 6
DEFAULT_TIMEOUT = 30.0
COMPRESSIONS = ("lz4", "zstd", "gzip", "none")
CHAIN_HEADER = "ledger.chain"
DIGEST_HEADER = "ledger.digest"
CHAIN_VERSION = 1
_CHAIN_SIZE = 1 + 32 + 8 + 16
OFFSET_BITS = 40  # positions: up to 2^40 offsets per partition, 2^23 partitions in an int64
_OFFSET_MASK = (1 << OFFSET_BITS) - 1
_LEGAL_TOPIC = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")
_URL_OPTIONS = ("partitions", "timeout", "compression", "rejected")


class KafkaUnavailable(LogError):
    """Kafka could not be reached or did not acknowledge in time (exit code 2: connection)."""

    exit_code = 2


def kafka_position(partition: int, offset: int) -> int:
    return ((partition << OFFSET_BITS) | offset) + 1


def split_position(position: int) -> tuple[int, int]:
    """(partition, offset) of a position; position 1 (or less) is the start of partition 0."""
    n = max(position, 1) - 1
    return n >> OFFSET_BITS, n & _OFFSET_MASK


def chain_header(prev_hash: bytes, recorded_at: int, event_id: bytes) -> bytes:
    return bytes((CHAIN_VERSION,)) + prev_hash + recorded_at.to_bytes(8, "big", signed=True) + event_id


def parse_chain_header(headers: Sequence[tuple[str, bytes]] | None) -> tuple[bytes, int, bytes] | None:
    """(prev_hash, recorded_at, event_id bytes), or None if absent or malformed."""
    for name, value in headers or ():
        if name == CHAIN_HEADER:
            if value is None or len(value) != _CHAIN_SIZE or value[0] != CHAIN_VERSION:
                return None
            return value[1:33], int.from_bytes(value[33:41], "big", signed=True), value[41:57]
    return None


def _digest_header(headers: Sequence[tuple[str, bytes]] | None) -> bytes:
    """The content digest header's 32 bytes, or b"" if absent or malformed."""
    for name, value in headers or ():
        if name == DIGEST_HEADER:
            return value if value is not None and len(value) == 32 else b""
    return b""


def _murmur2(data: bytes) -> int:
    from kafka.partitioner.default import murmur2

    return int(murmur2(data))


def partition_for(key: bytes, partitions: int) -> int:
    """The Java client's default partitioner for keyed messages."""
    return (_murmur2(key) & 0x7FFFFFFF) % partitions


@dataclass(frozen=True, slots=True)
class KafkaSettings:
    bootstrap: tuple[str, ...]
    topic: str = DEFAULT_TOPIC
    rejected_topic: str = REJECTED_TOPIC
    partitions: int = DEFAULT_PARTITIONS  # used when the ledger creates the topic
    timeout: float = DEFAULT_TIMEOUT  # seconds: connecting, acknowledgements, fetches
    compression: str = "lz4"
    schema_registry: str | None = None

    @property
    def where(self) -> str:
        return ",".join(self.bootstrap)

    @classmethod
    def parse(cls, url: str, schema_registry: str | None = None) -> KafkaSettings:
        def bad(why: str) -> UsageError:
            return UsageError(f"{why} (expected kafka://host:port/topic)", parameter="log",
                              value=url[:100])

        if not url.startswith("kafka://"):
            raise bad("not a kafka:// URL")
        rest, _, query = url[len("kafka://"):].partition("?")
        netloc, _, topic = rest.partition("/")
        topic = topic.rstrip("/") or DEFAULT_TOPIC
        servers = []
        for server in netloc.split(","):
            host, colon, port = server.strip().rpartition(":")
            if not colon:
                host, port = port, str(DEFAULT_PORT)
            if not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise bad(f"bad broker address {server[:60]!r}")
            servers.append(f"{host}:{int(port)}")
        options: dict[str, Any] = {}
        try:
            pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query))
        except ValueError:
            raise bad("malformed query") from None
        for name, value in pairs:
            if name not in _URL_OPTIONS:
                raise bad(f"unknown option {name!r} (known: {', '.join(_URL_OPTIONS)})")
            try:
                if name == "partitions":
                    options[name] = int(value)
                    if not 1 <= options[name] <= 10_000:
                        raise ValueError
                elif name == "timeout":
                    options[name] = float(value)
                    if not 0.1 <= options[name] <= 3600:
                        raise ValueError
                elif name == "compression":
                    if value not in COMPRESSIONS:
                        raise ValueError
                    options[name] = value
                else:
                    options["rejected_topic"] = check_topic(value)
            except (ValueError, UsageError):
                raise bad(f"bad value for {name}: {value[:40]!r}") from None
        return cls(tuple(servers), check_topic(topic), schema_registry=schema_registry, **options)


def check_topic(name: str) -> str:
    if not name or len(name) > 249 or not set(name) <= _LEGAL_TOPIC or name in (".", ".."):
        raise UsageError(f"invalid Kafka topic name {name[:60]!r}")
    return name


@dataclass(frozen=True, slots=True)
class TopicsReport:
    partitions: dict[str, int]  # topic -> partition count
    created: list[str]

    def check_not_repartitioned(self, topic: str, requested: int | None) -> None:
        """An existing event topic is never repartitioned: a subject's events must stay in the
        partition its key hashes to. UsageError (exit 2) if ``topic`` has another count than
        ``requested`` (None: whatever it has)."""
        have = self.partitions.get(topic)
        if requested is not None and have != requested:
            raise UsageError(f"{topic} already has {have} partitions, not {requested}; "
                             "repartitioning would move subjects between partitions "
                             "(create a new topic instead)")


@dataclass(slots=True)
class _Tail:
    """The last chained record of a partition as this process knows it."""

    offset: int = -1  # -1: the partition holds no ledger record
    hash: bytes = GENESIS_HASH
    recorded_at: int = 0
    end: int = 0  # the high-water mark: where this writer's next record should land


@dataclass(slots=True)
class _Writer:
    partitions: list[int]
    tails: dict[int, _Tail]
    # 16-byte event ids in the topic -> the record's position (8 bytes, big-endian) followed by
    # its content digest (32 bytes; nothing for records from before digests)
    ids: dict[bytes, bytes] = field(default_factory=dict)
    clock: int = 0  # the largest recorded_at in the topic


class _Range:
    """The messages of one partition from ``start`` up to ``end`` (default: the high-water
    mark of the first fetch, so that a read terminates under concurrent appends)."""

    def __init__(self, log: KafkaEventLog, consumer: KafkaConsumer, partition: int, start: int,
                 end: int | None = None, *, topic: str | None = None) -> None:
        self.log, self.consumer, self.partition = log, consumer, partition
        self.start, self.end = start, end
        self.topic = topic or log.settings.topic

    def __iter__(self) -> Iterator[Any]:
        from kafka import TopicPartition

        log, consumer = self.log, self.consumer
        tp = TopicPartition(self.topic, self.partition)
        with log.translated(f"reading {tp.topic}[{tp.partition}]"):
            consumer.assign([tp])
            consumer.seek(tp, self.start)
            position = self.start
            deadline = time.monotonic() + log.settings.timeout
            while self.end is None or position < self.end:
                batch = consumer.poll(timeout_ms=20)  # short: an empty answer still brings the high-water mark
                if self.end is None:
                    self.end = consumer.highwater(tp)
                messages = batch.get(tp, ())
                if not messages:
                    if time.monotonic() > deadline:
                        raise KafkaUnavailable(
                            f"Kafka {log.settings.where}: no fetch answer for {tp.topic}"
                            f"[{tp.partition}] within {log.settings.timeout:g}s"
                        )
                    continue
                deadline = time.monotonic() + log.settings.timeout
                for m in messages:
                    if self.end is not None and m.offset >= self.end:
                        return
                    yield m
                position = messages[-1].offset + 1


class KafkaEventLog(EventLog):
    partitioned = True  # one chain per partition: read_partition(), partitions()

    def __init__(self, settings: KafkaSettings, registry: SchemaRegistry | None = None) -> None:
        self.settings = settings
        self.registry = registry or default_registry()
        self.codec = AvroCodec(self.registry)
        self.ids: SchemaIds = (
            RegistrySchemaIds(settings.schema_registry, settings.topic, self.registry,
                              timeout=settings.timeout)
            if settings.schema_registry
            else BuiltinSchemaIds(self.registry)
        )
        self.acknowledged = 0  # records the broker acknowledged since this log was opened
        self._producer: KafkaProducer | None = None
        self._control: KafkaConsumer | None = None
        self._writer: _Writer | None = None
        self._rejected: set[tuple[int, int]] = set()
        self._rejected_ready = False
        self._partition_of: dict[str, int] = {}
        self._framing: dict[bytes, bytes] = {}  # single-object header -> Confluent header

    @property
    def name(self) -> str:
        """The log's name in projection tracking: its topic."""
        return self.settings.topic

    @classmethod
    def from_settings(cls, settings: Settings) -> KafkaEventLog:
        return cls(KafkaSettings.parse(settings.log_url, settings.schema_registry))

    # connections ---------------------------------------------------------------------------
    @contextmanager
    def translated(self, doing: str) -> Iterator[None]:
        """kafka-python errors -> one-line ledger errors naming the broker."""
        from kafka.errors import KafkaError

        try:
            yield
        except KafkaError as e:
            raise KafkaUnavailable(f"Kafka {self.settings.where}: {doing}: {_one_line(e)}") from None
        except OSError as e:
            raise KafkaUnavailable(f"Kafka {self.settings.where}: {doing}: {e}") from None

    def _common(self) -> dict[str, Any]:
        timeout_ms = int(self.settings.timeout * 1000)
        return {
            "bootstrap_servers": list(self.settings.bootstrap),
            "client_id": "consent-ledger",
            "bootstrap_timeout_ms": timeout_ms,
            "request_timeout_ms": max(500, timeout_ms // 2),
            "metrics_enabled": False,
        }

    def consumer(self, *, bulk: bool = True) -> KafkaConsumer:
        """A consumer without a group (partitions are assigned explicitly)."""
        from kafka import KafkaConsumer

        with self.translated("connecting"):
            return KafkaConsumer(
                group_id=None,
                enable_auto_commit=False,
                auto_offset_reset="earliest",
                allow_auto_create_topics=False,
                fetch_max_wait_ms=10,  # the end of a partition is found by the high-water mark
                max_poll_records=10_000,
                max_partition_fetch_bytes=8 * 1024 * 1024 if bulk else 64 * 1024,
                fetch_max_bytes=64 * 1024 * 1024,
                **self._common(),
            )

    def _control_consumer(self) -> KafkaConsumer:
        if self._control is None:
            self._control = self.consumer(bulk=False)
        return self._control

    def producer(self) -> KafkaProducer:
        if self._producer is None:
            from kafka import KafkaProducer

            timeout_ms = int(self.settings.timeout * 1000)
            compression = None if self.settings.compression == "none" else self.settings.compression
            with self.translated("connecting"):
                self._producer = KafkaProducer(
                    acks="all",
                    enable_idempotence=True,
                    compression_type=compression,
                    linger_ms=20,  # append() flushes at its end, so lingering costs no latency
                    batch_size=512 * 1024,
                    max_request_size=4 * 1024 * 1024,
                    delivery_timeout_ms=timeout_ms,
                    max_block_ms=timeout_ms,
                    **self._common(),
                )
        return self._producer

    def partitions(self) -> list[int]:
        """The topic's partitions; [] if the topic does not exist."""
        with self.translated(f"reading the metadata of {self.settings.topic}"):
            return sorted(self._control_consumer().partitions_for_topic(self.settings.topic))

    def create_topics(self, partitions: int | None = None, replication_factor: int = 1) -> TopicsReport:
        """Creates the event and dead-letter topics if missing. The event topic keeps its
        records forever (retention -1); the dead-letter topic is compacted by source
        coordinates, so repeated copies of a message collapse."""
        from kafka import KafkaAdminClient
        from kafka.errors import TopicAlreadyExistsError

        wanted = {
            self.settings.topic: {
                "num_partitions": partitions or self.settings.partitions,
                "replication_factor": replication_factor,
                "configs": {"retention.ms": "-1", "retention.bytes": "-1", "cleanup.policy": "delete"},
            },
            self.settings.rejected_topic: {
                "num_partitions": 1,
                "replication_factor": replication_factor,
                "configs": {"cleanup.policy": "compact"},
            },
        }
        with self.translated("creating topics"):
            admin = KafkaAdminClient(**{k: v for k, v in self._common().items()
                                        if k != "metrics_enabled"})
            try:
                existing = {t["name"]: len(t["partitions"]) for t in admin.describe_topics()
                            if t["name"] in wanted and not t.get("error_code")}
                missing = {name: spec for name, spec in wanted.items() if name not in existing}
                if missing:
                    try:
                        admin.create_topics(missing, wait_for_metadata=True)
                    except TopicAlreadyExistsError:
                        pass  # another process created it meanwhile
                counts = {t["name"]: len(t["partitions"]) for t in admin.describe_topics(list(wanted))}
            finally:
                admin.close()
        self._rejected_ready = True
        return TopicsReport(counts, sorted(missing))

    # writing --------------------------------------------------------------------------------
    def _writer_state(self, *, create: bool) -> _Writer:
        if self._writer is not None and (self._writer.partitions or not create):
            return self._writer
        partitions = self.partitions()
        if not partitions and create:
            self.create_topics()
            partitions = self.partitions()
        writer = _Writer(partitions, {})
        ends = self._scan_ids(partitions, writer)
        for p in partitions:
            writer.tails[p] = self._tail(p, ends[p])
            writer.clock = max(writer.clock, writer.tails[p].recorded_at)
        self._writer = writer
        return writer

    def _scan_ids(self, partitions: list[int], writer: _Writer) -> dict[int, int]:
        """Collects the event ids of every partition, fetching all partitions at once, up to
        each one's high-water mark; returns those marks. Only the framing and the chain
        header are checked here, not the Avro body (decoding would halve the scan rate): a
        message that passes these but whose body is corrupt (tampering, or a writer bug)
        still counts as present for the duplicate check, while readers dead-letter it and a
        chain verifier sees the break after it. The clock comes from the fully validated
        partition tails."""
        from kafka import TopicPartition

        if not partitions:
            return {}
        topic = self.settings.topic
        ends: dict[int, int | None] = dict.fromkeys(partitions)
        done: set[int] = set()
        consumer = self.consumer()
        try:
            with self.translated(f"scanning {topic}"):
                tps = {p: TopicPartition(topic, p) for p in partitions}
                consumer.assign(list(tps.values()))
                for tp in tps.values():
                    consumer.seek(tp, 0)
                deadline = time.monotonic() + self.settings.timeout
                while len(done) < len(partitions):
                    batch = consumer.poll(timeout_ms=20)
                    for p, tp in tps.items():
                        if ends[p] is None:
                            ends[p] = consumer.highwater(tp)
                        if p in done:
                            continue
                        for m in batch.get(tp, ()):
                            end = ends[p]
                            if end is not None and m.offset >= end:
                                break
                            found = self._chain_of(m)
                            if found is not None:
                                writer.ids[found[2]] = (
                                    kafka_position(p, m.offset).to_bytes(8, "big")
                                    + _digest_header(m.headers))
                        position = consumer.position(tp)
                        if ends[p] is not None and position >= (ends[p] or 0):
                            done.add(p)
                            consumer.pause(tp)
                    if batch:
                        deadline = time.monotonic() + self.settings.timeout
                    elif time.monotonic() > deadline:
                        raise KafkaUnavailable(f"Kafka {self.settings.where}: no fetch answer "
                                               f"scanning {topic} within {self.settings.timeout:g}s")
        finally:
            consumer.close()
        return {p: end or 0 for p, end in ends.items()}

    def _chain_of(self, m: Any) -> tuple[bytes, int, bytes] | None:
        """The chain header of a message framed as a ledger record, else None."""
        value = m.value
        if value is None or len(value) < CONFLUENT_HEADER or value[0] != 0:
            return None
        try:
            self.ids.schema_for(int.from_bytes(value[1:CONFLUENT_HEADER], "big"))
        except CodecError:
            return None
        return parse_chain_header(m.headers)

    def _partition(self, subject: str, count: int) -> int:
        p = self._partition_of.get(subject)
        if p is None:
            if len(self._partition_of) > 200_000:  # bounded memory on huge populations
                self._partition_of.clear()
            p = self._partition_of[subject] = partition_for(subject.encode(), count)
        return p

    def append(self, records: Sequence[PendingRecord]) -> list[int | Conflict | None]:
        if not records:
            return []
        writer = self._writer_state(create=True)
        count = len(writer.partitions)
        tails = {p: _Tail(t.offset, t.hash, t.recorded_at, t.end) for p, t in writer.tails.items()}
        clock = writer.clock
        fresh: dict[bytes, int] = {}  # event id -> index in plan
        plan: list[tuple[int, bytes, bytes, bytes, int, bytes | None] | None] = []
        hashes: list[bytes] = []
        same: list[Conflict | int | None] = []  # per record: None, a Conflict, or the plan index it repeats
        for r in records:
            eid = _id_bytes(r.event_id)
            stored = writer.ids.get(eid)
            if stored is not None:
                plan.append(None)
                differs = r.digest is not None and len(stored) > 8 and stored[8:] != r.digest
                same.append(Conflict(int.from_bytes(stored[:8], "big")) if differs else None)
                continue
            if eid in fresh:
                plan.append(None)
                first = plan[fresh[eid]]
                assert first is not None
                differs = r.digest is not None and first[5] is not None and first[5] != r.digest
                same.append(fresh[eid] if differs else None)
                continue
            if r.recorded_at < clock:
                raise ClockError(
                    f"the ledger clock {format_micros(r.recorded_at)} is behind the log's last "
                    f"recorded_at {format_micros(clock)}; recorded_at never decreases"
                )
            prefix = self._framing.get(r.payload[:HEADER_SIZE])
            if prefix is None:  # once per schema: the Confluent header for its fingerprint
                try:
                    prefix = to_confluent(r.payload[:HEADER_SIZE], self.registry, self.ids)
                except CodecError as e:
                    raise LogError(f"event {r.event_id}: {e}") from None
                self._framing[r.payload[:HEADER_SIZE]] = prefix
            value = prefix + r.payload[HEADER_SIZE:]
            p = self._partition(r.subject, count)
            tail = tails[p]
            header = chain_header(tail.hash, r.recorded_at, eid)
            tail.hash = hashlib.sha256(header[1:41] + r.payload).digest()
            tail.recorded_at = clock = r.recorded_at
            fresh[eid] = len(plan)
            plan.append((p, r.subject.encode(), value, header, r.recorded_at, r.digest))
            same.append(None)
            hashes.append(tail.hash)
        if not fresh:
            return [o if isinstance(o, Conflict) else None for o in same]
        offsets = self._produce([step for step in plan if step is not None])
        self._check_landing(writer, plan, offsets)
        # Commit the new state only now that every record is acknowledged where expected.
        positions: list[int | Conflict | None] = []
        acked = iter(zip(offsets, hashes, strict=True))
        for step in plan:
            if step is None:
                positions.append(None)
                continue
            p, _, _, header, recorded_at, content = step
            offset, digest = next(acked)
            position = kafka_position(p, offset)
            writer.ids[header[41:]] = position.to_bytes(8, "big") + (content or b"")
            writer.tails[p] = _Tail(offset, digest, recorded_at, offset + 1)
            positions.append(position)
        writer.clock = clock
        for i, outcome in enumerate(same):
            if isinstance(outcome, Conflict):
                positions[i] = outcome
            elif outcome is not None:  # repeats a record of this batch with other content
                landed = positions[outcome]
                assert isinstance(landed, int)
                positions[i] = Conflict(landed)
        return positions

    def _produce(self, steps: list[tuple[int, bytes, bytes, bytes, int, bytes | None]]) -> list[int]:
        """Sends and waits for every acknowledgement (acks=all). On any failure nothing of
        the batch is reported as appended, the producer is dropped (so nothing more from this
        session can land behind a gap) and the writer state is rebuilt on the next append."""
        from kafka.errors import KafkaError, KafkaTimeoutError

        producer = self.producer()
        topic = self.settings.topic
        futures = []
        problem: str | None = None
        try:
            for p, key, value, header, recorded_at, digest in steps:
                headers = [(CHAIN_HEADER, header)]
                if digest is not None:
                    headers.append((DIGEST_HEADER, digest))
                futures.append(producer.send(
                    topic, value=value, key=key, partition=p, headers=headers,
                    timestamp_ms=max(0, recorded_at // 1000),
                ))
            producer.flush(timeout=self.settings.timeout)
        except KafkaTimeoutError:
            problem = f"no acknowledgement within {self.settings.timeout:g}s"
        except KafkaError as e:
            problem = _one_line(e)
        failed = [f for f in futures if not f.succeeded()]
        if problem is None and failed:
            problem = _one_line(failed[0].exception) if failed[0].exception else "no acknowledgement"
        if problem is not None or len(futures) < len(steps):
            landed = sum(f.succeeded() for f in futures)
            self._abandon()
            raise KafkaUnavailable(
                f"Kafka {self.settings.where}: append to {topic} failed: {problem}; "
                f"{self.acknowledged} records acknowledged before this batch; of this batch "
                f"{landed} of {len(steps)} acknowledged, none reported accepted "
                "(re-publishing is safe: acknowledged events are skipped as duplicates)"
            )
        self.acknowledged += len(futures)
        return [f.value.offset for f in futures]

    def _check_landing(self, writer: _Writer, plan: list[Any], offsets: list[int]) -> None:
        """Each partition's new records must follow its known tail; anything in between must
        not be a ledger record (else another writer broke the single-writer assumption)."""
        expected = {p: t.end for p, t in writer.tails.items()}
        acked = iter(offsets)
        for step in plan:
            if step is None:
                continue
            p, offset = step[0], next(acked)
            if offset < expected[p]:
                self._writer = None
                raise LogError(f"{self.settings.topic}[{p}]: record acknowledged at offset {offset}, "
                               f"behind the partition's end {expected[p]}; writer state rebuilt")
            if offset > expected[p]:
                intruders = self._chained_between(p, expected[p], offset)
                if intruders:
                    self._writer = None
                    raise LogError(
                        f"{self.settings.topic}[{p}]: another writer appended ledger records at "
                        f"offsets {intruders[0]}..{intruders[-1]} while this one appended at {offset}: "
                        "the ledger assumes one writer per partition; the hash chain breaks at "
                        f"offset {offset} (`ledger kafka verify` reports it)"
                    )
            expected[p] = offset + 1

    def _chained_between(self, partition: int, start: int, end: int) -> list[int]:
        messages = _Range(self, self._control_consumer(), partition, start, end)
        found = [split_position(r.position)[1] for r in self._records(messages)]
        self._flush_rejects()
        return found

    def _abandon(self) -> None:
        self._writer = None
        producer, self._producer = self._producer, None
        if producer is not None:
            _close_producer(producer, 0)

    def contains(self, event_ids: Sequence[str]) -> set[str]:
        ids = self._writer_state(create=False).ids
        return {e for e in event_ids if _id_bytes(e) in ids}

    # reading --------------------------------------------------------------------------------
    def _inspect(self, partition: int, m: Any) -> LogRecord | str:
        """A valid ledger record, or why the message is not one."""
        try:
            schema, body = split_confluent(m.value, self.ids)
            event = self.codec.decode_body(body, schema)
        except CodecError as e:
            return str(e)
        chain = parse_chain_header(m.headers)
        if chain is None:
            return f"no valid {CHAIN_HEADER} header: not appended through the ledger"
        prev_hash, recorded_at, eid = chain
        try:
            same_id = uuid.UUID(event.event_id).bytes == eid
        except ValueError:
            same_id = False
        if not same_id:
            return f"the {CHAIN_HEADER} event id does not match the event's"
        if recorded_at != event.recorded_at:
            return f"the {CHAIN_HEADER} recorded_at does not match the event's"
        if m.key != event.subject.encode():
            return "the message key is not the event's subject"
        return LogRecord(
            position=kafka_position(partition, m.offset),
            event_id=event.event_id,
            event_type=schema.type,
            recorded_at=recorded_at,
            prev_hash=prev_hash,
            payload=single_object(schema, body),
            partition=partition,
        )

    def _records(self, messages: _Range) -> Iterator[LogRecord]:
        """The valid ledger records of a range; the rest go to the dead-letter topic."""
        for m in messages:
            checked = self._inspect(messages.partition, m)
            if isinstance(checked, str):
                self._reject(messages.partition, m, checked)
            else:
                yield checked

    def read(
        self,
        start: int = 1,
        *,
        recorded_by: int | None = None,
        limit: int | None = None,
        with_duplicates: bool = False,
    ) -> Iterator[LogRecord]:
        """Records with position >= start, partition by partition. With ``recorded_by``, only
        those recorded by then (read and filtered: no reliance on timestamps indexes). With
        ``with_duplicates``, also later copies of an event id (the hash chain includes them;
        chain verifiers need them)."""
        if limit is not None and limit <= 0:
            return
        first_partition, first_offset = split_position(start)
        remaining = limit
        partitions = [p for p in self.partitions() if p >= first_partition]
        if not partitions:
            return
        consumer = self.consumer()
        try:
            for p in partitions:
                offset = first_offset if p == first_partition else 0
                for record in self._read_partition(consumer, p, offset, recorded_by, with_duplicates):
                    yield record
                    if remaining is not None:
                        remaining -= 1
                        if remaining == 0:
                            return
        finally:
            consumer.close()
            self._flush_rejects()

    def read_partition(
        self,
        partition: int,
        offset: int = 0,
        *,
        recorded_by: int | None = None,
        with_duplicates: bool = False,
        scan_prefix: bool = True,
    ) -> Iterator[LogRecord]:
        """One partition from an offset up to its current end: what a projection worker that
        owns the partition reads, resuming from its own stored offset. Without
        ``scan_prefix`` the ids before the offset are not collected: for readers that
        remember what they applied (a projection's events table) and check themselves."""
        consumer = self.consumer()
        try:
            yield from self._read_partition(consumer, partition, offset, recorded_by,
                                            with_duplicates, scan_prefix)
        finally:
            consumer.close()
            self._flush_rejects()

    def _read_partition(self, consumer: KafkaConsumer, partition: int, offset: int,
                        recorded_by: int | None, with_duplicates: bool,
                        scan_prefix: bool = True) -> Iterator[LogRecord]:
        seen: set[str] = set()
        if offset > 0 and scan_prefix and not with_duplicates:
            # Resuming mid-partition: the ids before the offset still count as seen.
            seen.update(r.event_id for r in self._records(_Range(self, consumer, partition, 0, offset)))
        for record in self._records(_Range(self, consumer, partition, offset)):
            if not with_duplicates:
                if record.event_id in seen:
                    logger.info("skipping a second copy of event %s at %s[%d] offset %d",
                                record.event_id, self.settings.topic, partition,
                                split_position(record.position)[1])
                    continue
                seen.add(record.event_id)
            if recorded_by is None or record.recorded_at <= recorded_by:
                yield record

    def heads(self) -> dict[int, LogHead]:
        """Each partition's last chained record, read from the broker (not from memory)."""
        heads = {}
        for p in self.partitions():
            tail = self._tail(p)
            if tail.offset >= 0:
                heads[p] = LogHead(kafka_position(p, tail.offset), tail.hash, tail.recorded_at)
        return heads

    def head_rows(self) -> list[dict[str, Any]]:
        """``heads()`` as JSON-ready rows, by partition: offset, position, recorded_at, hash."""
        return [{"partition": p, "offset": split_position(h.position)[1], "position": h.position,
                 "recorded_at": format_micros(h.recorded_at), "hash": h.hash.hex()}
                for p, h in sorted(self.heads().items())]

    def head(self) -> LogHead:
        """The head of the partition with the latest record (by recorded_at, then position);
        on a one-partition topic, simply the last record. ``heads()`` gives every chain."""
        heads = self.heads()
        if not heads:
            return LogHead(0, GENESIS_HASH, 0)
        return max(heads.values(), key=lambda h: (h.recorded_at, h.position))

    def last_recorded_at(self) -> int:
        """The writer's clock floor (the largest recorded_at in the topic, from its state)."""
        return self._writer_state(create=False).clock

    def _tail(self, partition: int, end: int | None = None) -> _Tail:
        """The last valid record below ``end`` (default: the high-water mark), found by
        reading backwards in growing windows."""
        consumer = self._control_consumer()
        if end is None:
            probe = _Range(self, consumer, partition, 0)
            for _ in probe:
                break  # one fetch tells the high-water mark
            end = probe.end or 0
        window, high = 1, end
        while high > 0:
            low = max(0, end - window)
            records = list(self._records(_Range(self, consumer, partition, low, high)))
            self._flush_rejects()
            if records:
                last = records[-1]
                return _Tail(split_position(last.position)[1], last.hash, last.recorded_at, end)
            high, window = low, window * 8
        return _Tail(end=end)

    # dead letters ---------------------------------------------------------------------------
    def _reject(self, partition: int, m: Any, reason: str) -> None:
        """Copies an invalid message to the dead-letter topic (once per process; the topic is
        compacted by source coordinates, so copies from other readers collapse)."""
        if (partition, m.offset) in self._rejected:
            return
        self._rejected.add((partition, m.offset))
        reason = safe_reason(reason)  # stored in clear: never a value of the message
        source = f"{self.settings.topic}/{partition}/{m.offset}"
        logger.warning("dead letter %s: %s", source, reason)
        from kafka.errors import KafkaError

        try:
            if not self._rejected_ready:
                self.create_topics()
            self.producer().send(
                self.settings.rejected_topic,
                key=source.encode(),
                value=m.value,
                headers=[
                    ("ledger.reason", reason.encode()),
                    ("ledger.source", source.encode()),
                    ("ledger.source.key", m.key or b""),
                    ("ledger.source.timestamp", str(m.timestamp).encode()),
                ],
            )
        except (KafkaError, LogError) as e:
            # A reader must not stop on a poison message, even if it cannot copy it.
            logger.error("cannot copy dead letter %s to %s: %s", source,
                         self.settings.rejected_topic, e)

    def _flush_rejects(self) -> None:
        from kafka.errors import KafkaError

        if self._producer is not None and self._rejected:
            try:
                self._producer.flush(timeout=self.settings.timeout)
            except KafkaError as e:
                logger.error("cannot flush dead letters to %s: %s", self.settings.rejected_topic, e)

    def rejected(self, limit: int | None = None) -> Iterator[dict[str, Any]]:
        """The dead letters on the dead-letter topic, oldest first, one per source message."""
        consumer = self.consumer()
        try:
            with self.translated(f"reading {self.settings.rejected_topic}"):
                partitions = sorted(consumer.partitions_for_topic(self.settings.rejected_topic))
            seen: set[bytes] = set()
            for p in partitions:
                for m in _Range(self, consumer, p, 0, topic=self.settings.rejected_topic):
                    if m.key in seen:
                        continue
                    seen.add(m.key)
                    headers = {k: v.decode("utf-8", "replace") for k, v in m.headers or ()}
                    yield {
                        "source": headers.get("ledger.source", ""),
                        "reason": headers.get("ledger.reason", ""),
                        "bytes": len(m.value or b""),
                        "copied_at_ms": m.timestamp,
                    }
                    if limit is not None and len(seen) >= limit:
                        return
        finally:
            consumer.close()

    def close(self) -> None:
        if self._producer is not None:
            _close_producer(self._producer, self.settings.timeout)
            self._producer = None
        if self._control is not None:
            self._control.close()
            self._control = None


def _id_bytes(event_id: str) -> bytes:
    """The 16 bytes of a UUID string; the canonical form (what intake stores) without
    building a UUID object, which costs more than the rest of the per-record work here."""
    if len(event_id) == 36:
        try:
            raw = bytes.fromhex(event_id.replace("-", ""))
        except ValueError:
            raw = b""
        if len(raw) == 16:
            return raw
    return uuid.UUID(event_id).bytes


def _close_producer(producer: KafkaProducer, timeout: float) -> None:
    """kafka-python's close() flushes first and, if the broker does not answer, raises
    without closing (its __del__ then raises again at a random later moment); here a
    failed flush ends in a forced close. Appends already waited for their acknowledgements,
    so only dead-letter copies can be pending."""
    from kafka.errors import KafkaError

    try:
        producer.close(timeout=timeout)
    except KafkaError as e:
        logger.warning("Kafka producer closed with unsent records: %s", _one_line(e))
        sender = getattr(producer, "_sender", None)
        if sender is not None:
            sender.force_close()
        producer._closed = True  # what close() would have set


def _one_line(e: BaseException) -> str:
    text = str(e) or type(e).__name__
    return " ".join(text.split())[:300]
