"""Digests and proofs an auditor keeps or checks outside the system (issue 5): the JSON
formats, and checking inclusion and consistency proofs with no access to the log.

A digest is ``{size, head_hash, merkle_root, head_recorded_at, created_at}`` of one chain.
Merkle leaf i is the chain hash of the record at position i + 1 (RFC 6962 leaf hash
``SHA-256(0x00 || chain hash)``); an inclusion proof carries the record itself, so a verifier
recomputes its leaf and decodes its event id rather than taking either on trust."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from ledger.contracts.codec import AvroCodec
from ledger.domain import merkle
from ledger.domain.chain import chain_hash
from ledger.domain.errors import CodecError, UsageError
from ledger.domain.timeutil import format_micros, parse_timestamp

DIGEST_FORMAT = "consent-ledger/digest/1"
INCLUSION_FORMAT = "consent-ledger/inclusion-proof/1"
CONSISTENCY_FORMAT = "consent-ledger/consistency-proof/1"
LEAF_DEFINITION = "RFC 6962 leaf i = SHA-256(0x00 || chain hash of the record at position i+1)"


def id_key(event_id: str) -> str:
    """An event id compared the way the log stores it (hex, no dashes, lower case)."""
    return event_id.replace("-", "").lower()


def _hex(value: Any, name: str, source: str) -> bytes:
    try:
        raw = bytes.fromhex(value)
    except (TypeError, ValueError):
        raise UsageError(f"{source}: {name} is not a hex string") from None
    if len(raw) != merkle.HASH_SIZE:
        raise UsageError(f"{source}: {name} is not a 32-byte hash")
    return raw


def _int(value: Any, name: str, source: str, minimum: int = 0) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise UsageError(f"{source}: {name} must be an integer >= {minimum}")
    return value


def _time(value: Any, name: str, source: str) -> int:
    try:
        return parse_timestamp(value)
    except ValueError as e:
        raise UsageError(f"{source}: {name}: {e}") from None


_FORMAT_NAMES = {DIGEST_FORMAT: "a digest", INCLUSION_FORMAT: "an inclusion proof",
                 CONSISTENCY_FORMAT: "a consistency proof"}


def _expect_format(data: Any, expected: str, source: str) -> None:
    if not isinstance(data, dict):
        raise UsageError(f"{source}: not a JSON object")
    found = data.get("format")
    if found != expected:
        what = _FORMAT_NAMES.get(str(found), f"format {str(found)[:40]!r}")
        raise UsageError(f"{source}: {what}, not {_FORMAT_NAMES[expected]}")


@dataclass(frozen=True, slots=True)
class Digest:
    """What an auditor keeps outside the system: the log's size, head and Merkle root."""

    size: int
    head_hash: bytes
    merkle_root: bytes
    head_recorded_at: int | None
    created_at: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "format": DIGEST_FORMAT,
            "size": self.size,
            "head_hash": self.head_hash.hex(),
            "merkle_root": self.merkle_root.hex(),
            "head_recorded_at": None if self.head_recorded_at is None
            else format_micros(self.head_recorded_at),
            "created_at": format_micros(self.created_at),
            "tree": "RFC 6962, SHA-256",
            "leaves": LEAF_DEFINITION,
        }

    @classmethod
    def from_dict(cls, data: Any, source: str = "digest") -> Digest:
        _expect_format(data, DIGEST_FORMAT, source)
        at = data.get("head_recorded_at")
        return cls(
            size=_int(data.get("size"), "size", source),
            head_hash=_hex(data.get("head_hash"), "head_hash", source),
            merkle_root=_hex(data.get("merkle_root"), "merkle_root", source),
            head_recorded_at=None if at is None else _time(at, "head_recorded_at", source),
            created_at=_time(data.get("created_at"), "created_at", source),
        )


@dataclass(frozen=True, slots=True)
class InclusionProof:
    """An event's record and the audit path from its leaf to a digest's Merkle root. The
    record itself is in the proof, so a verifier recomputes its leaf and decodes its event
    id instead of taking either on trust."""

    event_id: str
    position: int
    leaf_index: int
    tree_size: int
    merkle_root: bytes
    prev_hash: bytes
    recorded_at: int
    payload: bytes
    path: tuple[bytes, ...]

    @property
    def record_hash(self) -> bytes:
        return chain_hash(self.prev_hash, self.recorded_at, self.payload)

    def as_dict(self) -> dict[str, Any]:
        return {
            "format": INCLUSION_FORMAT,
            "event_id": self.event_id,
            "position": self.position,
            "leaf_index": self.leaf_index,
            "tree_size": self.tree_size,
            "merkle_root": self.merkle_root.hex(),
            "record": {
                "prev_hash": self.prev_hash.hex(),
                "recorded_at": self.recorded_at,
                "payload": base64.b64encode(self.payload).decode("ascii"),
            },
            "record_hash": self.record_hash.hex(),
            "audit_path": [h.hex() for h in self.path],
        }

    @classmethod
    def from_dict(cls, data: Any, source: str = "proof") -> InclusionProof:
        _expect_format(data, INCLUSION_FORMAT, source)
        record = data.get("record")
        path = data.get("audit_path")
        if not isinstance(record, dict) or not isinstance(path, list):
            raise UsageError(f"{source}: needs a record and an audit_path")
        try:
            payload = base64.b64decode(record.get("payload", ""), validate=True)
        except (binascii.Error, TypeError, ValueError):
            raise UsageError(f"{source}: record.payload is not base64") from None
        recorded_at = record.get("recorded_at")
        if not isinstance(recorded_at, int) or isinstance(recorded_at, bool):
            raise UsageError(f"{source}: record.recorded_at must be an integer")
        event_id = data.get("event_id")
        if not isinstance(event_id, str):
            raise UsageError(f"{source}: event_id must be a string")
        return cls(
            event_id=event_id,
            position=_int(data.get("position"), "position", source, 1),
            leaf_index=_int(data.get("leaf_index"), "leaf_index", source),
            tree_size=_int(data.get("tree_size"), "tree_size", source, 1),
            merkle_root=_hex(data.get("merkle_root"), "merkle_root", source),
            prev_hash=_hex(record.get("prev_hash"), "record.prev_hash", source),
            recorded_at=recorded_at,
            payload=payload,
            path=tuple(_hex(h, "audit_path", source) for h in path),
        )


@dataclass(frozen=True, slots=True)
class ConsistencyProof:
    """RFC 6962 proof that the tree of ``old_size`` leaves is a prefix of ``new_size``'s."""

    old_size: int
    old_root: bytes
    new_size: int
    new_root: bytes
    new_head_hash: bytes
    path: tuple[bytes, ...]

    def as_dict(self) -> dict[str, Any]:
        return {
            "format": CONSISTENCY_FORMAT,
            "old_size": self.old_size,
            "old_root": self.old_root.hex(),
            "new_size": self.new_size,
            "new_root": self.new_root.hex(),
            "new_head_hash": self.new_head_hash.hex(),
            "consistency_path": [h.hex() for h in self.path],
        }

    @classmethod
    def from_dict(cls, data: Any, source: str = "proof") -> ConsistencyProof:
        _expect_format(data, CONSISTENCY_FORMAT, source)
        path = data.get("consistency_path")
        if not isinstance(path, list):
            raise UsageError(f"{source}: needs a consistency_path")
        return cls(
            old_size=_int(data.get("old_size"), "old_size", source),
            old_root=_hex(data.get("old_root"), "old_root", source),
            new_size=_int(data.get("new_size"), "new_size", source),
            new_root=_hex(data.get("new_root"), "new_root", source),
            new_head_hash=_hex(data.get("new_head_hash"), "new_head_hash", source),
            path=tuple(_hex(h, "consistency_path", source) for h in path),
        )


def read_json(path: Path, what: str) -> Any:
    """Reads a digest or proof file; a file that is not JSON is a usage error naming it."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise UsageError(f"{path}: not a JSON {what}") from None


def load_digest(path: Path) -> Digest:
    return Digest.from_dict(read_json(path, "digest"), str(path))


def load_proof(path: Path) -> InclusionProof | ConsistencyProof:
    data = read_json(path, "proof")
    kind = data.get("format") if isinstance(data, dict) else None
    if kind == CONSISTENCY_FORMAT:
        return ConsistencyProof.from_dict(data, str(path))
    return InclusionProof.from_dict(data, str(path))


# Checking proofs without the log --------------------------------------------------------------
class TreeHead(Protocol):
    """What a proof is pinned to: a digest, or a checkpoint whose signature was verified."""

    @property
    def size(self) -> int: ...

    @property
    def merkle_root(self) -> bytes: ...


@dataclass(frozen=True, slots=True)
class ProofCheck:
    ok: bool
    detail: str
    pinned: bool  # checked against a digest the auditor holds, not only the proof's own root
    event: dict[str, Any] | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "detail": self.detail, "pinned_to_digest": self.pinned,
                "event": self.event}


def _held(*heads: TreeHead) -> str:
    """What the auditor gave: digests, or (any not a digest) signed checkpoints."""
    return "digest" if all(isinstance(h, Digest) for h in heads) else "checkpoint"


def _pin(trees: dict[int, bytes], digests: Sequence[TreeHead]) -> str | None:
    """Every digest the auditor gave must be one of the trees the proof speaks about."""
    for d in digests:
        if d.size not in trees:
            sizes = " or ".join(str(s) for s in sorted(trees))
            return f"the {_held(d)} covers {d.size} records, the proof a tree of {sizes}"
        if trees[d.size] != d.merkle_root:
            return f"the proof's root for {d.size} records is not the {_held(d)}'s merkle_root"
    return None


def check_inclusion(proof: InclusionProof, digests: Sequence[TreeHead] = (),
                    codec: AvroCodec | None = None) -> ProofCheck:
    """Verifies an inclusion proof with no access to the log: the record decodes to the
    claimed event, its leaf leads up the audit path to the root, and the root is the one in
    each digest given."""
    pinned = bool(digests)
    codec = codec or AvroCodec()
    try:
        event = codec.decode(proof.payload)
    except CodecError as e:
        return ProofCheck(False, f"the record in the proof is not a ledger event: {e}", pinned)
    summary = {k: v for k, v in event.describe().items() if k != "has_pii"}
    if id_key(event.event_id) != id_key(proof.event_id):
        return ProofCheck(False, f"the record in the proof is event {event.event_id}, not "
                                 f"{proof.event_id}", pinned, summary)
    if event.recorded_at != proof.recorded_at:
        return ProofCheck(False, "the record's recorded_at does not match its payload", pinned,
                          summary)
    if proof.leaf_index != proof.position - 1:
        return ProofCheck(False, f"position {proof.position} is not leaf {proof.leaf_index}",
                          pinned, summary)
    leaf = merkle.leaf_hash(proof.record_hash)
    if not merkle.verify_inclusion(leaf, proof.leaf_index, proof.tree_size, proof.path,
                                   proof.merkle_root):
        return ProofCheck(False, f"the audit path does not lead from position {proof.position} to "
                                 f"the Merkle root of {proof.tree_size} records", pinned, summary)
    problem = _pin({proof.tree_size: proof.merkle_root}, digests)
    if problem:
        return ProofCheck(False, problem, pinned, summary)
    where = f"the {_held(*digests)}'s Merkle root" if pinned else "the proof's own Merkle root (no digest given)"
    return ProofCheck(True, f"event {proof.event_id} is record {proof.position} of "
                            f"{proof.tree_size}: included under {where}", pinned, summary)


def check_consistency(proof: ConsistencyProof, digests: Sequence[TreeHead] = ()) -> ProofCheck:
    pinned = bool(digests)
    if not merkle.verify_consistency(proof.old_size, proof.new_size, proof.old_root,
                                     proof.new_root, proof.path):
        return ProofCheck(False, f"the tree of {proof.old_size} records is not proven a prefix of "
                                 f"the tree of {proof.new_size}", pinned)
    problem = _pin({proof.old_size: proof.old_root, proof.new_size: proof.new_root}, digests)
    if problem:
        return ProofCheck(False, problem, pinned)
    return ProofCheck(True, f"the first {proof.old_size} records are unchanged in the log of "
                            f"{proof.new_size}", pinned)


def check_proof(proof: InclusionProof | ConsistencyProof, digests: Sequence[TreeHead] = ()) -> ProofCheck:
    if isinstance(proof, ConsistencyProof):
        return check_consistency(proof, digests)
    return check_inclusion(proof, digests)
