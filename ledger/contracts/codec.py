"""Avro codec (SPEC §3 wire formats).

Embedded log: Avro single-object encoding, ``C3 01`` + 8-byte CRC-64-AVRO fingerprint
(little-endian) + body. Kafka: Confluent framing, magic ``00`` + 4-byte big-endian schema id +
body. The body bytes are the same in both."""

from __future__ import annotations

import re
from io import BytesIO
from typing import Any

from fastavro import schemaless_reader, schemaless_writer

from ledger.contracts.schemas import SchemaRegistry, SchemaVersion, default_registry
from ledger.domain.errors import CodecError
from ledger.domain.events import Event

SINGLE_OBJECT_MAGIC = b"\xc3\x01"
HEADER_SIZE = 10


class AvroCodec:
    """Encodes events with the latest schema of their type; decodes any known version into
    the latest (Avro schema resolution fills defaulted fields)."""

    def __init__(self, registry: SchemaRegistry | None = None) -> None:
        self.registry = registry or default_registry()
        self._buf = BytesIO()

    def encode_body(self, event: Event, schema: SchemaVersion | None = None) -> bytes:
        schema = schema or self.registry.latest(event.type)
        buf = self._buf
        buf.seek(0)
        buf.truncate()
        try:
            schemaless_writer(buf, schema.fast, event.to_record())
        except (TypeError, ValueError, KeyError, AttributeError, OverflowError) as e:
            raise CodecError(f"{event.type}: does not fit its schema: {e}") from None
        return buf.getvalue()

    def encode(self, event: Event) -> bytes:
        schema = self.registry.latest(event.type)
        return SINGLE_OBJECT_MAGIC + schema.fingerprint + self.encode_body(event, schema)

    def decode(self, data: bytes) -> Event:
        if len(data) < HEADER_SIZE or data[:2] != SINGLE_OBJECT_MAGIC:
            raise CodecError("not Avro single-object encoding (bad magic)")
        writer = self.registry.by_fingerprint(bytes(data[2:HEADER_SIZE]))
        return self.decode_body(data[HEADER_SIZE:], writer)

    def decode_body(self, body: bytes, writer: SchemaVersion) -> Event:
        reader = self.registry.latest(writer.type)
        stream = BytesIO(body)
        try:
            record: Any = schemaless_reader(
                stream, writer.fast, None if reader is writer else reader.fast
            )
        except Exception as e:  # noqa: BLE001 - fastavro raises many types on corrupt input
            raise CodecError(corrupt_body(writer.type, e)) from None
        if stream.tell() != len(body):
            raise CodecError(f"corrupt {writer.type} body: {len(body) - stream.tell()} trailing bytes")
        return Event.from_record(writer.type, record)


_OBJECT_REPR = re.compile(r"<[\w.]+ object at 0x[0-9a-f]+>")


def corrupt_body(event_type: str, error: Exception) -> str:
    """Why a body does not decode, the same on every run: fastavro's messages may quote a
    stream's repr, whose memory address would make a replay's error text differ."""
    return f"corrupt {event_type} body: {type(error).__name__}: " + _OBJECT_REPR.sub("the body", str(error))
