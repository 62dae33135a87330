"""Decoding a page of log records into per-type columns for the fold.

Records are grouped by writer schema (the fingerprint in the single-object header), decoded
with fastavro into the latest version of their type (schema resolution fills fields added
later), and turned into ``EventColumns``. A record that does not decode (corrupt bytes, a
schema this version does not know, e.g. a future event type) becomes a ``ProjectionError``
and the rest of the page goes on (SPEC §7)."""

from __future__ import annotations

from dataclasses import dataclass, field
from io import BytesIO
from typing import Any

import numpy as np
import pyarrow as pa
from fastavro import schemaless_reader

from ledger.contracts.codec import HEADER_SIZE, SINGLE_OBJECT_MAGIC, corrupt_body
from ledger.contracts.schemas import SchemaRegistry, SchemaVersion
from ledger.domain.chain import RecordPage
from ledger.domain.errors import CodecError
from ledger.domain.events import ENVELOPE_FIELDS
from projections.engine import columnar_avro
from projections.engine.fold import EventColumns

_MAGIC = int.from_bytes(SINGLE_OBJECT_MAGIC, "little")


@dataclass(frozen=True, slots=True)
class ProjectionError:
    position: int
    recorded_at: int
    event_type: str | None
    reason: str


@dataclass(slots=True)
class DecodedPage:
    first_position: int
    last_position: int
    last_recorded_at: int
    groups: list[EventColumns] = field(default_factory=list)
    errors: list[ProjectionError] = field(default_factory=list)

    @property
    def count(self) -> int:
        return self.last_position - self.first_position + 1


class PageDecoder:
    def __init__(self, registry: SchemaRegistry, *, columnar: bool = True) -> None:
        self.registry = registry
        self.columnar = columnar
        self._flat: dict[bytes, list[dict[str, Any]] | None] = {}
        self._positions = np.zeros(0, dtype=np.int64)

    def decode(self, page: RecordPage) -> DecodedPage:
        result = DecodedPage(page.positions[0], page.positions[-1], page.recorded_at[-1])
        records = columnar_avro.Records(page.payloads)
        lengths = records.ends - records.starts
        magic = records.fingerprints(0, 2)
        ok = (lengths >= HEADER_SIZE) & (magic == _MAGIC)
        for i in np.flatnonzero(~ok):
            result.errors.append(self._error(page, int(i), None, "not Avro single-object encoding"))
        rows = np.flatnonzero(ok)
        self._positions = np.asarray(page.positions, dtype=np.int64)
        schema_ids = records.fingerprints(2, 8)[rows]
        order = np.argsort(schema_ids, kind="stable")  # groups keep log order inside
        ids, starts = np.unique(schema_ids[order], return_index=True)
        groups = np.split(rows[order], starts[1:]) if len(rows) else []
        # in order of first appearance, so that the output does not depend on fingerprints
        for schema_id, group in sorted(zip(ids.tolist(), groups, strict=True),
                                       key=lambda g: g[1][0]):
            fingerprint = int(schema_id).to_bytes(8, "little")
            try:
                writer = self.registry.by_fingerprint(fingerprint)
            except CodecError as e:
                result.errors.extend(self._error(page, int(i), None, str(e)) for i in group)
                continue
            self._decode_group(page, records, writer, group, result)
        result.errors.sort(key=lambda e: e.position)
        return result

    def _decode_group(
        self, page: RecordPage, records: columnar_avro.Records, writer: SchemaVersion,
        rows: np.ndarray, result: DecodedPage,
    ) -> None:
        fields = self._columnar_fields(writer)
        if fields is not None:
            try:
                arrays = columnar_avro.decode(records, rows, HEADER_SIZE, fields)
            except columnar_avro.Declined:
                pass  # record by record below, which also names the corrupt records
            else:
                positions = pa.array(self._positions[rows], pa.int64())
                result.groups.append(_columns_from_arrays(writer, positions, arrays))
                return
        self._decode_records(page, writer, rows.tolist(), result)

    def _columnar_fields(self, writer: SchemaVersion) -> list[dict[str, Any]] | None:
        """The writer's fields, envelope flattened, if the columnar path can decode them: the
        latest version of its type (older ones need schema resolution) with simple fields."""
        if writer.fingerprint not in self._flat:
            fields = None
            if self.columnar and self.registry.latest(writer.type) is writer:
                envelope, *body = writer.definition["fields"]
                flat = [*envelope["type"]["fields"], *body]
                names = [f["name"] for f in flat]
                if len(set(names)) == len(names) and columnar_avro.supported(flat):
                    fields = flat
            self._flat[writer.fingerprint] = fields
        return self._flat[writer.fingerprint]

    def _decode_records(
        self, page: RecordPage, writer: SchemaVersion, indices: list[int], result: DecodedPage
    ) -> None:
        reader = self.registry.latest(writer.type)
        writer_schema, reader_schema = writer.fast, None if reader is writer else reader.fast
        payloads = page.payloads
        records: list[dict[str, Any]] = []
        kept: list[int] = []
        for i in indices:
            body = payloads[i]
            stream = BytesIO(body)
            stream.seek(HEADER_SIZE)
            try:
                record = schemaless_reader(stream, writer_schema, reader_schema)
                if stream.tell() != len(body):
                    raise ValueError(f"{len(body) - stream.tell()} trailing bytes")
            except Exception as e:  # noqa: BLE001 - fastavro raises many types on corrupt input
                result.errors.append(self._error(
                    page, i, writer.type, corrupt_body(writer.type, e)))
                continue
            records.append(record)  # type: ignore[arg-type]
            kept.append(i)
        if records:
            result.groups.append(_columns(writer.type, writer.version, page, kept, records,
                                          [f["name"] for f in self.registry.body_fields(writer.type)]))

    @staticmethod
    def _error(page: RecordPage, i: int, event_type: str | None, reason: str) -> ProjectionError:
        return ProjectionError(page.positions[i], page.recorded_at[i], event_type, reason)


def _columns_from_arrays(
    writer: SchemaVersion, positions: pa.Array, arrays: dict[str, Any]
) -> EventColumns:
    return EventColumns(
        type=writer.type,
        version=writer.version,
        position=positions,
        event_id=arrays["event_id"],
        controller=arrays["controller"],
        subject=arrays["subject"],
        occurred_at=arrays["occurred_at"],
        recorded_at=arrays["recorded_at"],
        source=arrays["source"],
        actor=arrays["actor"],
        has_pii=arrays["pii"],
        body={k: v for k, v in arrays.items() if k not in ENVELOPE_FIELDS},
    )


def _columns(
    event_type: str,
    version: int,
    page: RecordPage,
    kept: list[int],
    records: list[dict[str, Any]],
    body_fields: list[str],
) -> EventColumns:
    envelopes = [r["envelope"] for r in records]
    return EventColumns(
        type=event_type,
        version=version,
        position=[page.positions[i] for i in kept],
        event_id=[e["event_id"] for e in envelopes],
        controller=[e["controller"] for e in envelopes],
        subject=[e["subject"] for e in envelopes],
        occurred_at=[e["occurred_at"] for e in envelopes],
        recorded_at=[e["recorded_at"] for e in envelopes],
        source=[e["source"] for e in envelopes],
        actor=[e["actor"] for e in envelopes],
        has_pii=[e["pii"] is not None for e in envelopes],
        body={name: [r.get(name) for r in records] for name in body_fields},
    )
