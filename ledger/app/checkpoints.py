"""Signed checkpoints of the log (issue 13, SPEC §7b): the key pair, writing a checkpoint and
reading one back with its verifier key. The formats are pure and live in the domain
(``ledger.domain.signed_note``, ``ledger.domain.checkpoint``); this module reads and writes
the files and asks the ``Auditor`` for the log's size and root.

Keys are files holding one line of text, as Go's ``sumdb/note`` writes them: the signer key
``PRIVATE+KEY+name+keyid+base64`` (mode 0600, refused if another user could read it) and the
verifier key ``name+keyid+base64`` (public: hand it to auditors and witnesses).

The origin of a checkpoint (its first line, the log's name) is, unless given, the name of the
key that signs it, as c2sp.org/tlog-checkpoint recommends; ``keygen`` names a key
``consent-ledger/<8 random hex digits>`` unless told otherwise, so every ledger's log has a
name of its own that stays the same as long as its key does.

A Kafka topic is one chain per partition and has no single Merkle tree, so there is no
checkpoint of it: the commands refuse it (the embedded log only, as for digests)."""

from __future__ import annotations

import os
import secrets
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ledger import bootstrap
from ledger.adapters.files import check_target, write_private_file
from ledger.app.auditing import Auditor
from ledger.config import Settings
from ledger.domain.chain_check import Progress
from ledger.domain.checkpoint import Checkpoint, SignedCheckpoint, read_checkpoint
from ledger.domain.errors import ConfigError, UsageError
from ledger.domain.signed_note import (
    KEY_TEXT_LIMIT,
    MAX_NOTE_BYTES,
    NoteError,
    SignerKey,
    VerifierKey,
)

SIGNER_FILE = "checkpoint.key"
VERIFIER_FILE = "checkpoint.vkey"
DEFAULT_NAME_PREFIX = "consent-ledger/"


@dataclass(frozen=True, slots=True)
class KeyPair:
    verifier: VerifierKey
    signer_file: Path
    verifier_file: Path

    def as_dict(self) -> dict[str, object]:
        return {"name": self.verifier.name, "key_id": f"{self.verifier.key_id:08x}",
                "verifier_key": self.verifier.encode(), "signer_file": str(self.signer_file),
                "verifier_file": str(self.verifier_file)}


def default_key_name() -> str:
    return DEFAULT_NAME_PREFIX + secrets.token_hex(4)


def keygen(out_dir: Path, name: str | None = None, *, force: bool = False) -> KeyPair:
    """A new Ed25519 key pair in ``out_dir`` (created 0700 if missing): the signer key, mode
    0600, and the verifier key. Neither file is replaced without ``force``."""
    if out_dir.exists() and not out_dir.is_dir():
        raise UsageError(f"{out_dir} is not a directory", parameter="out")
    signer = SignerKey.generate(name if name is not None else default_key_name())
    signer_file, verifier_file = out_dir / SIGNER_FILE, out_dir / VERIFIER_FILE
    if out_dir.is_dir():  # refuse before writing either file
        check_target(signer_file, force, "out")
        check_target(verifier_file, force, "out")
    else:
        out_dir.mkdir(mode=0o700)
    write_private_file(signer_file, signer.encode() + "\n", force=force, parameter="out")
    write_private_file(verifier_file, signer.verifier().encode() + "\n", force=force, parameter="out")
    return KeyPair(signer.verifier(), signer_file, verifier_file)


def _read_text(path: Path, parameter: str, limit: int) -> str:
    try:
        with open(path, "rb") as f:
            data = f.read(limit + 1)
    except FileNotFoundError:
        raise UsageError(f"{path} does not exist", parameter=parameter) from None
    except IsADirectoryError:
        raise UsageError(f"{path} is a directory", parameter=parameter) from None
    if len(data) > limit:
        raise UsageError(f"{path} is larger than {limit:,} bytes", parameter=parameter)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise UsageError(f"{path} is not UTF-8 text", parameter=parameter) from None


def _key_line(text: str) -> str:
    """The one line of a key file (a final newline allowed, nothing else)."""
    return text[:-1] if text.endswith("\n") and "\n" not in text[:-1] else text


def load_signer(path: Path, parameter: str = "sign") -> SignerKey:
    """The signer key in ``path``; refused if another local user could read it."""
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode)
    except FileNotFoundError:
        raise UsageError(f"{path} does not exist", parameter=parameter) from None
    if mode & 0o077:
        raise ConfigError(f"{path} is readable by other users (mode {mode:04o}); chmod 600 it",
                          parameter=parameter)
    text = _read_text(path, parameter, KEY_TEXT_LIMIT)
    try:
        return SignerKey.parse(_key_line(text), f"{{{parameter}}} {path}")
    except NoteError as e:
        raise NoteError(str(e)) from None


def load_verifier(value: str, parameter: str = "key") -> VerifierKey:
    """A verifier key given as its text (``name+keyid+base64``) or as a file holding it."""
    path = Path(value)
    try:
        is_file, is_dir = path.is_file(), path.is_dir()
    except (OSError, ValueError):  # a name too long, or a NUL: not a file, so key text
        is_file = is_dir = False
    if is_file:
        return VerifierKey.parse(_key_line(_read_text(path, parameter, KEY_TEXT_LIMIT)),
                                 f"{{{parameter}}} {path}")
    if is_dir:
        raise UsageError(f"{path} is a directory, not a verifier key", parameter=parameter)
    return VerifierKey.parse(value, "{" + parameter + "}")


def load_checkpoint(path: Path, keys: Sequence[VerifierKey] = (),
                    parameter: str = "checkpoint") -> SignedCheckpoint:
    """A checkpoint file, its signatures verified with ``keys`` (none given: unverified)."""
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_NOTE_BYTES + 1)
    except FileNotFoundError:
        raise UsageError(f"{path} does not exist", parameter=parameter) from None
    return read_checkpoint(data, keys, f"{{{parameter}}} {path}")


def refuse_partitioned(settings: Settings, parameter: str) -> None:
    if bootstrap.backend(settings).partitioned:
        raise UsageError("checkpoints cover the embedded log; on Kafka each "
                         "partition is its own chain with no single Merkle tree (see "
                         "`ledger kafka heads`)", parameter=parameter)


@dataclass(frozen=True, slots=True)
class WrittenCheckpoint:
    checkpoint: Checkpoint
    note: bytes  # the signed note, or the bare checkpoint text when unsigned
    signer: VerifierKey | None

    def as_dict(self) -> dict[str, object]:
        return {**self.checkpoint.as_dict(),
                "signed_by": None if self.signer is None else self.signer.label,
                "verifier_key": None if self.signer is None else self.signer.encode(),
                "note": self.note.decode("utf-8")}


def make_checkpoint(settings: Settings, *, sign: Path | None = None, origin: str | None = None,
                    jobs: int = 1, progress: Progress | None = None) -> WrittenCheckpoint:
    """The log's checkpoint, signed with the key in ``sign`` if given. Its origin is
    ``origin``, or the signing key's name; refuses (AuditFinding) a broken chain."""
    refuse_partitioned(settings, "audit checkpoint")
    signer = load_signer(sign) if sign is not None else None
    if origin is None:
        if signer is None:
            raise UsageError("an unsigned checkpoint needs the log's name (with {sign} it is "
                             "the key's name)", parameter="origin")
        origin = signer.name
    if not origin or "\n" in origin:
        raise UsageError("the log's name must be one non-empty line", parameter="origin")
    with Auditor.open(settings, jobs) as auditor:
        checkpoint = auditor.checkpoint(origin, progress=progress)
    try:
        note = checkpoint.sign([signer]) if signer else checkpoint.text().encode("utf-8")
    except NoteError as e:
        raise UsageError(str(e), parameter="origin") from None
    return WrittenCheckpoint(checkpoint, note, None if signer is None else signer.verifier())


def write_checkpoint(written: WrittenCheckpoint, out: Path, *, force: bool = False) -> Path:
    return write_private_file(out, written.note, force=force)
