"""Transparency-log checkpoints (c2sp.org/tlog-checkpoint): a log's size and RFC 6962 Merkle
root as the text of a signed note (``ledger.domain.signed_note``)::

    <origin>
    <tree size, decimal, no leading zeros>
    <base64 of the 32-byte Merkle root>
    [extension lines]

    — <key name> base64(key id || Ed25519 signature)

The root is the one a digest carries (``ledger.domain.proofs``): leaf i is the RFC 6962 leaf
hash of the chain hash of the record at position i + 1. So a checkpoint verified with its key
gives exactly the size and root a digest gives, and ``Checkpoint`` has a digest's ``size``
and ``merkle_root``: the code that checks a log or a proof against a digest takes either.

The origin names the log; a witness keys its state by it. The ledger writes no extension
lines (the spec does not recommend them), but reads and keeps those of others."""

from __future__ import annotations

import base64
import re
from collections.abc import Sequence
from dataclasses import dataclass

from ledger.domain import merkle
from ledger.domain.signed_note import (
    MAX_NOTE_BYTES,
    NoteError,
    NoteNotVerified,
    Signature,
    SignerKey,
    VerifierKey,
    canonical_b64decode,
    check_text,
    parse_note,
    sign_note,
    verify_note,
)

MAX_SIZE = 2**63 - 1  # what Go's int64 tree sizes hold
_DECIMAL = re.compile(r"0|[1-9][0-9]*")


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A log's origin, tree size and RFC 6962 root (and any extension lines)."""

    origin: str
    size: int
    merkle_root: bytes
    extensions: tuple[str, ...] = ()

    def text(self) -> str:
        """The note text: origin, size and root lines, then the extension lines."""
        lines = [self.origin, str(self.size), base64.b64encode(self.merkle_root).decode("ascii"),
                 *self.extensions]
        text = "".join(line + "\n" for line in lines)
        parse_checkpoint(text)  # what is written must read back: refuse a bad origin here
        return text

    def sign(self, signers: Sequence[SignerKey], keep: Sequence[Signature] = ()) -> bytes:
        """The checkpoint as a signed note (with the signatures to ``keep``, for co-signing)."""
        if not signers:
            raise NoteError("a signed checkpoint needs a signer key")
        return sign_note(self.text(), signers, keep)

    def as_dict(self) -> dict[str, object]:
        return {"origin": self.origin, "size": self.size, "merkle_root": self.merkle_root.hex(),
                "extensions": list(self.extensions)}


def parse_checkpoint(text: str, what: str = "checkpoint") -> Checkpoint:
    """A checkpoint from a note's text, strictly: three or more non-empty lines, each ending
    in a newline, a decimal size without leading zeros, a canonical base64 32-byte root."""
    check_text(text, what)
    lines = text[:-1].split("\n")
    if len(lines) < 3:
        raise NoteError(f"{what}: needs an origin, a tree size and a root hash line, found "
                        f"{len(lines)} line{'' if len(lines) == 1 else 's'}")
    origin, size_line, root_line, *extensions = lines
    if not origin:
        raise NoteError(f"{what}: the origin (line 1) is empty")
    if not _DECIMAL.fullmatch(size_line):
        raise NoteError(f"{what}: the tree size (line 2) is not a decimal number without "
                        f"leading zeros: {size_line[:30]!r}")
    size = int(size_line)
    if size > MAX_SIZE:
        raise NoteError(f"{what}: the tree size (line 2) is larger than 2^63 - 1")
    root = canonical_b64decode(root_line, f"{what}: the root hash (line 3)")
    if len(root) != merkle.HASH_SIZE:
        raise NoteError(f"{what}: the root hash (line 3) is {len(root)} bytes, not 32")
    for number, line in enumerate(extensions, 4):
        if not line:
            raise NoteError(f"{what}: line {number} is empty (extension lines must not be)")
    return Checkpoint(origin, size, root, tuple(extensions))


@dataclass(frozen=True, slots=True)
class SignedCheckpoint:
    """A checkpoint read from a file: its signatures, and which were verified (none when it
    was read without a key)."""

    checkpoint: Checkpoint
    verified: tuple[Signature, ...]
    unverified: tuple[Signature, ...]

    @property
    def size(self) -> int:
        return self.checkpoint.size

    @property
    def merkle_root(self) -> bytes:
        return self.checkpoint.merkle_root

    def as_dict(self) -> dict[str, object]:
        return {**self.checkpoint.as_dict(),
                "verified_by": [s.label for s in self.verified],
                "other_signatures": [s.label for s in self.unverified]}


def read_checkpoint(data: bytes, keys: Sequence[VerifierKey] = (),
                    what: str = "checkpoint") -> SignedCheckpoint:
    """A checkpoint file: a signed note, or (to be signed elsewhere) the bare checkpoint text.
    With ``keys`` its signatures are verified (NoteNotVerified if they do not, exit 1); without,
    nothing is verified and ``verified`` is empty."""
    try:
        note = parse_note(data, what)
    except NoteError:
        bare = _bare(data)
        if bare is None:
            raise
        if keys:
            raise NoteNotVerified(f"{what}: not signed (no blank line and signature lines "
                                  "after the checkpoint)") from None
        return SignedCheckpoint(parse_checkpoint(bare, what), (), ())
    checkpoint = parse_checkpoint(note.text, what)
    if not keys:
        return SignedCheckpoint(checkpoint, (), note.signatures)
    opened = verify_note(note, keys, what)
    return SignedCheckpoint(checkpoint, opened.verified, opened.unverified)


def _bare(data: bytes) -> str | None:
    """The data as a bare checkpoint text (no blank line, no signature), or None."""
    if len(data) > MAX_NOTE_BYTES or b"\n\n" in data:
        return None
    try:
        text = data.decode("utf-8")
        parse_checkpoint(text)
    except (UnicodeDecodeError, NoteError):
        return None
    return text
