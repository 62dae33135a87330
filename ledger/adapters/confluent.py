"""The Confluent wire format on Kafka (SPEC §3): magic ``00`` + 4-byte big-endian schema id +
the Avro body, the same body bytes as the embedded log's single-object encoding.

Schema ids come from one of two sources, chosen by settings:

- ``BuiltinSchemaIds`` (no schema registry configured): the id of a schema is the low 31 bits
  of its CRC-64-AVRO fingerprint (the single-object header's 8 bytes, read little-endian).
  Deterministic and stable: adding a schema never renumbers the others, and every ledger
  computes the same ids without coordination. Collisions are checked when the table is built.
- ``RegistrySchemaIds`` (``--schema-registry URL`` / ``LEDGER_SCHEMA_REGISTRY``): ids assigned
  by a Confluent-compatible schema registry. Schemas are registered on first use under the
  subject ``<topic>-<record full name>`` (TopicRecordNameStrategy: one topic carries many
  event types), and ids read from the topic are resolved with ``GET /schemas/ids/{id}``; both
  directions are cached for the life of the process.

A topic is written in one mode: ids of one mode mean nothing in the other."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.parse
import urllib.request
from typing import Protocol

from fastavro import parse_schema
from fastavro.schema import to_parsing_canonical_form

from ledger.contracts.codec import HEADER_SIZE, SINGLE_OBJECT_MAGIC
from ledger.contracts.schemas import SchemaRegistry, SchemaVersion, crc64_avro
from ledger.domain.errors import CodecError, ConfigError, LedgerError

MAGIC = 0
CONFLUENT_HEADER = 5
_CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"


class SchemaRegistryUnavailable(LedgerError):
    """The schema registry could not be reached or answered with an error (exit code 2)."""

    exit_code = 2


class SchemaIds(Protocol):
    def id_for(self, schema: SchemaVersion) -> int:
        """The schema id to frame a message written with ``schema``."""

    def schema_for(self, schema_id: int) -> SchemaVersion:
        """The ledger schema behind an id read from the topic; CodecError if unknown."""


def builtin_id(schema: SchemaVersion) -> int:
    return int.from_bytes(schema.fingerprint[:4], "little") & 0x7FFFFFFF


class BuiltinSchemaIds:
    """Fingerprint-derived ids (see the module docstring)."""

    def __init__(self, registry: SchemaRegistry) -> None:
        self._by_id: dict[int, SchemaVersion] = {}
        for schema in registry.all_versions():
            sid = builtin_id(schema)
            other = self._by_id.get(sid)
            if other is not None:
                raise ConfigError(
                    f"built-in schema id {sid} collides: {other.type} v{other.version} and "
                    f"{schema.type} v{schema.version}; use a schema registry"
                )
            self._by_id[sid] = schema

    def id_for(self, schema: SchemaVersion) -> int:
        return builtin_id(schema)

    def schema_for(self, schema_id: int) -> SchemaVersion:
        try:
            return self._by_id[schema_id]
        except KeyError:
            raise CodecError(
                f"unknown schema id {schema_id} (not a built-in ledger schema id; was the topic "
                "written with a schema registry?)"
            ) from None

    def table(self) -> dict[int, SchemaVersion]:
        return dict(self._by_id)


class RegistrySchemaIds:
    """A Confluent-compatible schema registry client (standard library HTTP only)."""

    def __init__(self, url: str, topic: str, registry: SchemaRegistry, timeout: float = 10.0) -> None:
        if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
            raise ConfigError(f"expected an http(s) URL, got {url[:80]!r}",
                              parameter="schema_registry")
        self.url = url.rstrip("/")
        self.topic = topic
        self.registry = registry
        self.timeout = timeout
        self._ids: dict[bytes, int] = {}  # fingerprint -> id
        self._schemas: dict[int, SchemaVersion | None] = {}  # id -> schema (None: not ours)
        self._lock = threading.Lock()

    def subject(self, schema: SchemaVersion) -> str:
        return f"{self.topic}-{schema.definition.get('namespace', 'consent_ledger')}.{schema.type}"

    def id_for(self, schema: SchemaVersion) -> int:
        cached = self._ids.get(schema.fingerprint)
        if cached is not None:
            return cached
        with self._lock:
            subject = urllib.parse.quote(self.subject(schema), safe="")
            answer = self._call("POST", f"/subjects/{subject}/versions",
                                {"schema": json.dumps(schema.definition)})
            sid = answer.get("id")
            if not isinstance(sid, int) or not 0 <= sid <= 0x7FFFFFFF:
                raise SchemaRegistryUnavailable(
                    f"schema registry {self.url}: no valid id for {self.subject(schema)}: {answer!r:.120}"
                )
            self._ids[schema.fingerprint] = sid
            self._schemas[sid] = schema
            return sid

    def schema_for(self, schema_id: int) -> SchemaVersion:
        if schema_id not in self._schemas:
            with self._lock:
                self._schemas[schema_id] = self._lookup(schema_id)
        schema = self._schemas[schema_id]
        if schema is None:
            raise CodecError(f"unknown schema id {schema_id} (not a ledger schema in {self.url})")
        return schema

    def _lookup(self, schema_id: int) -> SchemaVersion | None:
        try:
            answer = self._call("GET", f"/schemas/ids/{schema_id}", None)
        except _NotFound:
            return None
        text = answer.get("schema")
        if not isinstance(text, str):
            return None
        try:
            canonical = to_parsing_canonical_form(parse_schema(json.loads(text)))
        except Exception:  # noqa: BLE001 - fastavro/json raise many types for foreign schemas
            return None
        fingerprint = crc64_avro(canonical.encode("utf-8")).to_bytes(8, "little")
        try:
            return self.registry.by_fingerprint(fingerprint)
        except CodecError:
            return None

    def _call(self, method: str, path: str, body: dict[str, str] | None) -> dict[str, object]:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(
            self.url + path, data=data, method=method,
            headers={"Content-Type": _CONTENT_TYPE, "Accept": _CONTENT_TYPE},
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                answer = json.loads(response.read() or b"{}")
        except urllib.error.HTTPError as e:
            if e.code == 404 and method == "GET":
                raise _NotFound from None
            detail = e.read()[:200].decode("utf-8", "replace").replace("\n", " ")
            raise SchemaRegistryUnavailable(
                f"schema registry {self.url}: {method} {path}: HTTP {e.code} {detail}"
            ) from None
        except (urllib.error.URLError, OSError, ValueError) as e:
            reason = getattr(e, "reason", e)
            raise SchemaRegistryUnavailable(f"schema registry {self.url} unreachable: {reason}") from None
        if not isinstance(answer, dict):
            raise SchemaRegistryUnavailable(f"schema registry {self.url}: unexpected answer to {path}")
        return answer


class _NotFound(Exception):
    pass


def to_confluent(payload: bytes, registry: SchemaRegistry, ids: SchemaIds) -> bytes:
    """Single-object encoding -> Confluent framing (same body)."""
    if len(payload) < HEADER_SIZE or payload[:2] != SINGLE_OBJECT_MAGIC:
        raise CodecError("payload is not Avro single-object encoding (bad magic)")
    schema = registry.by_fingerprint(bytes(payload[2:HEADER_SIZE]))
    return b"\x00" + ids.id_for(schema).to_bytes(4, "big") + payload[HEADER_SIZE:]


def split_confluent(value: bytes | None, ids: SchemaIds) -> tuple[SchemaVersion, bytes]:
    """Confluent framing -> (writer schema, body); CodecError naming what is wrong."""
    if value is None or len(value) < CONFLUENT_HEADER:
        size = "no value" if value is None else f"{len(value)} bytes"
        raise CodecError(f"not the Confluent wire format: too short ({size})")
    if value[0] != MAGIC:
        raise CodecError(f"wrong magic byte 0x{value[0]:02x} (the Confluent wire format starts 0x00)")
    schema = ids.schema_for(int.from_bytes(value[1:CONFLUENT_HEADER], "big"))
    return schema, value[CONFLUENT_HEADER:]


def single_object(schema: SchemaVersion, body: bytes) -> bytes:
    return SINGLE_OBJECT_MAGIC + schema.fingerprint + body
