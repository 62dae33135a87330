"""A columnar Avro decoder: many records of one schema at once, straight into Arrow arrays.

Decoding record by record with fastavro costs several microseconds per event in Python
objects (a dict per record and per envelope), which bounds any projector that does it. All
records of a page that share a writer schema have the same field sequence, so each field can
be decoded for every record at once: one cursor per record (a numpy array of offsets), a
vectorised zig-zag varint reader, and strings gathered into an Arrow string buffer.

Covers the field types of the high-volume event types: string, long/int (including
timestamp-micros), boolean, bytes, and ``["null", T]`` unions of those. Anything else (arrays,
maps, other unions), and any group in which a record does not parse exactly to its end, is
declined with ``None``: the caller then decodes that group record by record with fastavro,
which also isolates the corrupt records and gives their reasons."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa

_PAD = 16  # zero bytes after the data, so a varint read past a record's end stays in bounds


class Declined(Exception):
    """The group does not fit the columnar path (unsupported type or malformed data)."""


def supported(fields: Sequence[dict[str, Any]]) -> bool:
    return all(_kind(f["type"]) is not None for f in fields)


def _kind(avro_type: Any) -> tuple[bool, str] | None:
    """(nullable, primitive) for the supported shapes, else None."""
    nullable = False
    if isinstance(avro_type, list):
        if len(avro_type) != 2 or avro_type[0] != "null":
            return None
        nullable, avro_type = True, avro_type[1]
    if isinstance(avro_type, dict):  # logical types that are plain primitives on the wire
        logical = (avro_type.get("type"), avro_type.get("logicalType"))
        if logical not in (("long", "timestamp-micros"), ("string", "uuid")):
            return None
        avro_type = avro_type["type"]
    if avro_type in ("string", "long", "int", "boolean", "bytes"):
        return nullable, str(avro_type)
    return None


class Records:
    """Many records in one buffer: ``data`` (padded) and each record's [start, end)."""

    def __init__(self, payloads: Sequence[bytes]) -> None:
        lengths = np.fromiter(map(len, payloads), dtype=np.int64, count=len(payloads))
        self.ends = np.cumsum(lengths)
        self.starts = self.ends - lengths
        self.data = np.frombuffer(b"".join(payloads) + bytes(_PAD), dtype=np.uint8)

    def fingerprints(self, skip: int, size: int) -> np.ndarray:
        """``size`` bytes after ``skip`` of each record, as one unsigned integer (records
        shorter than that read into the next record or the padding: check lengths first)."""
        index = self.starts[:, None] + skip + np.arange(size, dtype=np.int64)
        index = np.minimum(index, len(self.data) - 1)
        weights = np.uint64(256) ** np.arange(size, dtype=np.uint64)
        sums: np.ndarray = (self.data[index].astype(np.uint64) * weights).sum(axis=1, dtype=np.uint64)
        return sums


class _Cursor:
    def __init__(self, records: Records, rows: np.ndarray, skip: int) -> None:
        self.ends = records.ends[rows]
        self.offsets = records.starts[rows] + skip
        self.data = records.data
        self.limit = len(self.data) - _PAD

    def varint(self, where: np.ndarray | None = None) -> np.ndarray:
        """Zig-zag varints at the cursors (all, or those where ``where``); advances them."""
        off = self.offsets if where is None else self.offsets[where]
        if len(off) and off.max() >= self.limit:
            raise Declined("read past the end")
        byte = self.data[off].astype(np.uint64)
        value = byte & np.uint64(0x7F)
        more = byte >= 0x80
        size = np.ones(len(off), dtype=np.int64)
        shift = 7
        while more.any():
            if shift > 63:
                raise Declined("varint longer than 10 bytes")
            nxt = self.data[np.minimum(off + size, self.limit + _PAD - 1)].astype(np.uint64)
            value |= np.where(more, (nxt & np.uint64(0x7F)) << np.uint64(shift), np.uint64(0))
            size += more
            more &= nxt >= 0x80
            shift += 7
        decoded: np.ndarray = (value >> np.uint64(1)).astype(np.int64) ^ -(value & np.uint64(1)).astype(np.int64)
        if where is None:
            self.offsets = self.offsets + size
        else:
            self.offsets[where] += size
        return decoded

    def blobs(self, where: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Length-prefixed byte strings: (starts, lengths); advances past them."""
        lengths = self.varint(where)
        if len(lengths) and lengths.min() < 0:
            raise Declined("negative length")
        starts = self.offsets if where is None else self.offsets[where]
        starts = starts.copy()
        ends = self.ends if where is None else self.ends[where]
        if len(lengths) and (lengths > ends - starts).any():  # before adding: no int64 overflow
            raise Declined("field runs past its record")
        if where is None:
            self.offsets = self.offsets + lengths
        else:
            self.offsets[where] += lengths
        self._check()
        return starts, lengths

    def booleans(self, where: np.ndarray | None = None) -> np.ndarray:
        off = self.offsets if where is None else self.offsets[where]
        values = self.data[off]
        if len(values) and values.max() > 1:
            raise Declined("boolean byte not 0 or 1")
        if where is None:
            self.offsets = self.offsets + 1
        else:
            self.offsets[where] += 1
        self._check()
        flags: np.ndarray = values.astype(bool)
        return flags

    def _check(self) -> None:
        if (self.offsets > self.ends).any():
            raise Declined("field runs past its record")

    def strings(self, starts: np.ndarray, lengths: np.ndarray, valid: np.ndarray | None,
                binary: bool = False) -> pa.Array:
        n = len(lengths)
        offsets = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        total = int(offsets[-1])
        index = np.repeat(starts - offsets[:-1], lengths) + np.arange(total, dtype=np.int64)
        body = self.data[index]
        if total >= 2**31:
            raise Declined("page too large for 32-bit string offsets")
        validity = None if valid is None else pa.array(valid, pa.bool_()).buffers()[1]
        array = pa.Array.from_buffers(
            pa.binary() if binary else pa.string(), n,
            [validity, pa.py_buffer(offsets.astype(np.int32)), pa.py_buffer(body)],
            null_count=-1 if valid is not None else 0,
        )
        if not binary:
            try:
                array.validate(full=True)  # UTF-8
            except pa.ArrowInvalid as e:
                raise Declined(str(e)) from None
        return array


def decode(records: Records, rows: np.ndarray, skip: int,
           fields: Sequence[dict[str, Any]]) -> dict[str, pa.Array]:
    """Decodes the records ``rows`` (indices into ``records``), which all have the record
    schema ``fields`` after ``skip`` header bytes. Returns one Arrow array per field (bytes
    fields: only whether they are set, as booleans). Raises Declined if the group must go the
    record-by-record way."""
    cursor = _Cursor(records, rows, skip)
    out: dict[str, pa.Array] = {}
    n = len(rows)
    for f in fields:
        shape = _kind(f["type"])
        if shape is None:
            raise Declined(f"unsupported type of {f['name']}")
        nullable, primitive = shape
        where: np.ndarray | None = None
        if nullable:
            branch = cursor.varint()
            if len(branch) and (branch.min() < 0 or branch.max() > 1):
                raise Declined("union branch out of range")
            where = branch == 1
        out[f["name"]] = _read(cursor, primitive, where, n)
    if not np.array_equal(cursor.offsets, cursor.ends):
        raise Declined("records do not end where their fields do")
    return out


def _read(cursor: _Cursor, primitive: str, where: np.ndarray | None, n: int) -> pa.Array:
    if primitive in ("long", "int"):
        values = cursor.varint(where)
        if where is None:
            return pa.array(values, pa.int64())
        full = np.zeros(n, dtype=np.int64)
        full[where] = values
        return pa.array(full, pa.int64(), mask=~where)
    if primitive == "boolean":
        flags = cursor.booleans(where)
        if where is None:
            return pa.array(flags, pa.bool_())
        full = np.zeros(n, dtype=bool)
        full[where] = flags
        return pa.array(full, pa.bool_(), mask=~where)
    starts, lengths = cursor.blobs(where)
    if where is not None:
        all_starts, all_lengths = np.zeros(n, dtype=np.int64), np.zeros(n, dtype=np.int64)
        all_starts[where], all_lengths[where] = starts, lengths
        starts, lengths = all_starts, all_lengths
    if primitive == "bytes":  # only whether it is there (pii: never copied)
        return pa.array(np.ones(n, dtype=bool) if where is None else where, pa.bool_())
    return cursor.strings(starts, lengths, where)
