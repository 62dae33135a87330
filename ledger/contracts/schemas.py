"""The schema registry in code: loads the Avro schemas in ``schemas/`` once, expands the shared
envelope into each event schema, and fingerprints them (CRC-64-AVRO over the Parsing Canonical
Form, as Avro single-object encoding requires)."""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from fastavro import parse_schema
from fastavro.schema import to_parsing_canonical_form

from ledger.domain.errors import CodecError, ConfigError

NAMESPACE = "consent_ledger"
ENVELOPE = f"{NAMESPACE}.Envelope"
_FILE = re.compile(r"consent_ledger\.(?P<type>[A-Za-z]+)\.v(?P<version>\d+)\.avsc")

# CRC-64-AVRO (Rabin) lookup table, from the Avro specification's reference algorithm.
_EMPTY64 = 0xC15D213AA4D7A795


def _fp_table() -> list[int]:
    table = []
    for i in range(256):
        fp = i
        for _ in range(8):
            fp = (fp >> 1) ^ (_EMPTY64 & -(fp & 1))
        table.append(fp)
    return table


_FP_TABLE = _fp_table()


def crc64_avro(data: bytes) -> int:
    fp = _EMPTY64
    for b in data:
        fp = (fp >> 8) ^ _FP_TABLE[(fp ^ b) & 0xFF]
    return fp


@dataclass(frozen=True, slots=True)
class SchemaVersion:
    """One version of one event type's schema."""

    type: str
    version: int
    definition: dict[str, Any]  # the expanded JSON schema (envelope inlined), as published
    canonical: str  # Parsing Canonical Form
    fingerprint: bytes  # CRC-64-AVRO, 8 bytes little-endian (single-object header order)
    parsed: Any  # fastavro-parsed, with logical types (for tools and registries)
    fast: Any  # fastavro-parsed, logical types stripped: same bytes, ints instead of objects

    @property
    def fingerprint_hex(self) -> str:
        return self.fingerprint.hex()


def _strip_logical_types(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _strip_logical_types(v) for k, v in node.items() if k != "logicalType"}
    if isinstance(node, list):
        return [_strip_logical_types(v) for v in node]
    return node


def _inline(node: Any, name: str, definition: dict[str, Any]) -> Any:
    """Replaces the first reference to a named type by its definition (Avro allows one
    definition per name in a schema; later references stay names)."""
    done = False

    def walk(n: Any) -> Any:
        nonlocal done
        if n == name and not done:
            done = True
            return copy.deepcopy(definition)
        if isinstance(n, dict):
            return {k: walk(v) for k, v in n.items()}
        if isinstance(n, list):
            return [walk(v) for v in n]
        return n

    return walk(node)


def default_schema_dir() -> Path:
    return Path(str(resources.files("schemas")))


class SchemaRegistry:
    """Every event schema version, indexed by type and by fingerprint."""

    def __init__(self, versions: list[SchemaVersion]) -> None:
        self._by_type: dict[str, list[SchemaVersion]] = {}
        self._by_fingerprint: dict[bytes, SchemaVersion] = {}
        for v in sorted(versions, key=lambda v: (v.type, v.version)):
            self._by_type.setdefault(v.type, []).append(v)
            self._by_fingerprint[v.fingerprint] = v

    @classmethod
    def load(cls, directory: Path | None = None) -> SchemaRegistry:
        directory = directory or default_schema_dir()
        envelope_path = directory / f"{ENVELOPE}.avsc"
        try:
            envelope = json.loads(envelope_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise ConfigError(f"cannot load the envelope schema {envelope_path}: {e}") from None
        versions = []
        for path in sorted(directory.glob("consent_ledger.*.v*.avsc")):
            m = _FILE.fullmatch(path.name)
            if not m:
                continue
            try:
                raw = json.loads(path.read_text(encoding="utf-8"))
                definition = _inline(raw, ENVELOPE, envelope)
                parsed = parse_schema(definition)
                fast = parse_schema(_strip_logical_types(definition))
            except Exception as e:  # noqa: BLE001 - fastavro raises several types for bad schemas
                raise ConfigError(f"invalid schema {path.name}: {e}") from None
            if raw.get("name") != m["type"]:
                raise ConfigError(f"{path.name}: record name {raw.get('name')!r} != file name")
            canonical = to_parsing_canonical_form(parsed)
            fp = crc64_avro(canonical.encode("utf-8")).to_bytes(8, "little")
            versions.append(
                SchemaVersion(m["type"], int(m["version"]), definition, canonical, fp, parsed, fast)
            )
        if not versions:
            raise ConfigError(f"no event schemas found in {directory}")
        return cls(versions)

    def types(self) -> list[str]:
        return list(self._by_type)

    def versions(self, event_type: str) -> list[SchemaVersion]:
        return list(self._by_type.get(event_type, ()))

    def all_versions(self) -> Iterator[SchemaVersion]:
        for versions in self._by_type.values():
            yield from versions

    def latest(self, event_type: str) -> SchemaVersion:
        try:
            return self._by_type[event_type][-1]
        except KeyError:
            raise CodecError(f"unknown event type {event_type!r}") from None

    def by_fingerprint(self, fingerprint: bytes) -> SchemaVersion:
        try:
            return self._by_fingerprint[fingerprint]
        except KeyError:
            raise CodecError(f"unknown schema fingerprint {fingerprint.hex()}") from None

    def body_fields(self, event_type: str) -> list[dict[str, Any]]:
        """The latest schema's fields except the envelope, as JSON definitions."""
        return [f for f in self.latest(event_type).definition["fields"] if f["name"] != "envelope"]


@cache
def default_registry() -> SchemaRegistry:
    return SchemaRegistry.load()
