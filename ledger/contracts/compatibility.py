"""Schema compatibility (SPEC §3): every version of an event type must read every event
written with an earlier version. Checked by writing generated events with the old schema and
reading them with the new one (Avro schema resolution), field by field."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from io import BytesIO
from typing import Any

from fastavro import schemaless_reader, schemaless_writer
from fastavro.utils import generate_many

from ledger.contracts.schemas import SchemaRegistry, SchemaVersion, default_registry

SAMPLES = 50


@dataclass(frozen=True, slots=True)
class Compatibility:
    type: str
    writer_version: int
    reader_version: int
    ok: bool
    problem: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def check_pair(writer: SchemaVersion, reader: SchemaVersion, samples: int = SAMPLES) -> Compatibility:
    defaults = {f["name"]: f.get("default") for f in reader.definition["fields"]}
    writer_fields = {f["name"] for f in writer.definition["fields"]}
    try:
        for record in generate_many(writer.fast, samples):
            buf = BytesIO()
            schemaless_writer(buf, writer.fast, record)
            buf.seek(0)
            read: Any = schemaless_reader(buf, writer.fast, reader.fast)
            for name, default in defaults.items():
                expected = record[name] if name in writer_fields else default
                if read.get(name) != expected:
                    raise ValueError(f"field {name!r} read as {read.get(name)!r}")
    except Exception as e:  # noqa: BLE001 - fastavro signals incompatibility in several ways
        return Compatibility(writer.type, writer.version, reader.version, False, str(e)[:200])
    return Compatibility(writer.type, writer.version, reader.version, True)


def check_all(registry: SchemaRegistry | None = None) -> list[Compatibility]:
    registry = registry or default_registry()
    results = []
    for event_type in registry.types():
        versions = registry.versions(event_type)
        if len(versions) == 1:
            results.append(check_pair(versions[0], versions[0]))
        for i, writer in enumerate(versions):
            for reader in versions[i + 1 :]:
                results.append(check_pair(writer, reader))
    return results
