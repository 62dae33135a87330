"""The checkpoint the sweep signs after each run (issue 13 §2), and the one ``audit report``
cites.

A ledger's checkpoint key is configured in its ``ledger.toml``::

    [audit]
    checkpoint_key = "/etc/consent-ledger/checkpoint.key"   # from `ledger audit keygen`

(a relative path is relative to the data directory). The key is checked before the sweep
does anything: a missing, malformed or world-readable key is refused (exit 2) and nothing is
swept. After a sweep that appended durably, the log's signed checkpoint — the same note
``ledger audit checkpoint --sign`` writes — goes to ``DATA/checkpoints/<size>.checkpoint``
(mode 0600, written atomically; a file already there for that size is kept, not rewritten).
Record first, then act: signing comes after the sweep's events and effects are done, so a
failure to sign undoes nothing; it is reported and the next sweep signs again."""

from __future__ import annotations

import base64
import os
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

from ledger.adapters.files import write_private_file
from ledger.app.checkpoints import load_checkpoint, load_signer, make_checkpoint, refuse_partitioned
from ledger.config import CONFIG_FILE, Settings
from ledger.domain.checkpoint import SignedCheckpoint
from ledger.domain.errors import ConfigError, LedgerError
from ledger.domain.signed_note import SignerKey

CHECKPOINTS_DIR = "checkpoints"
SETTING = "checkpoint_key"
_NAME = re.compile(r"([1-9][0-9]*|0)\.checkpoint")


def configured_key(data_dir: Path) -> Path | None:
    """The checkpoint key file ``ledger.toml`` names (``[audit] checkpoint_key``), or None."""
    path = data_dir / CONFIG_FILE
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        raise ConfigError(f"{path} is not a valid configuration ({e})") from None
    table = raw.get("audit", {})
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: 'audit' must be a table")
    value = table.get(SETTING)
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{path}: audit.{SETTING} must be the path of a signer key file")
    return data_dir / Path(value).expanduser()


def configured_signer(settings: Settings) -> SignerKey | None:
    """The configured checkpoint key, loaded (refused if another user could read it), or
    None when none is configured."""
    path = configured_key(settings.data_dir)
    if path is None:
        return None
    refuse_partitioned(settings, SETTING)
    return load_signer(path, parameter=SETTING)


@dataclass(frozen=True, slots=True)
class SweepCheckpoint:
    """What the sweep did about its checkpoint: the file (written now or already there), or
    why it could not sign."""

    path: Path | None = None
    size: int | None = None
    written: bool = False
    signed_by: str | None = None
    error: str | None = None

    def as_dict(self) -> dict[str, object]:
        return {"file": None if self.path is None else str(self.path), "size": self.size,
                "written": self.written, "signed_by": self.signed_by, "error": self.error}


def checkpoints_dir(data_dir: Path) -> Path:
    return data_dir / CHECKPOINTS_DIR


def sign_after_sweep(settings: Settings, key: Path) -> SweepCheckpoint:
    """Signs the log's checkpoint with ``key`` into DATA/checkpoints/<size>.checkpoint. Never
    raises a LedgerError or OSError: a failure is returned as ``error``."""
    try:
        written = make_checkpoint(settings, sign=key)
        directory = checkpoints_dir(settings.data_dir)
        directory.mkdir(mode=0o700, exist_ok=True)
        target = directory / f"{written.checkpoint.size}.checkpoint"
        label = None if written.signer is None else written.signer.label
        if os.path.lexists(target):
            if target.is_file() and not target.is_symlink() and target.read_bytes() == written.note:
                return SweepCheckpoint(target, written.checkpoint.size, False, label)
            return SweepCheckpoint(target, written.checkpoint.size, False, label,
                                   error=f"{target} already holds another checkpoint of that size "
                                         "(another key, or a log that changed?): left as it is")
        write_private_file(target, written.note, parameter=SETTING)
        return SweepCheckpoint(target, written.checkpoint.size, True, label)
    except (LedgerError, OSError) as e:
        text = str(e) if isinstance(e, LedgerError) else f"{e.strerror or e}"
        return SweepCheckpoint(error=" ".join(text.split())[:300])


@dataclass(frozen=True, slots=True)
class CitedCheckpoint:
    """The signed checkpoint a report cites."""

    path: Path
    checkpoint: SignedCheckpoint

    def as_dict(self) -> dict[str, object]:
        c = self.checkpoint
        return {"file": str(self.path), "origin": c.checkpoint.origin, "size": c.size,
                "root": base64.b64encode(c.merkle_root).decode("ascii"),
                "merkle_root": c.merkle_root.hex(),
                "signed_by": [s.label for s in c.verified]}


def latest_checkpoint(settings: Settings, position: int) -> CitedCheckpoint | None:
    """The largest checkpoint in DATA/checkpoints that covers ``position`` (its size is at
    least that) and whose signature verifies with the configured key; None if there is no key
    or no such checkpoint."""
    signer = configured_signer(settings)
    if signer is None:
        return None
    verifier = signer.verifier()
    directory = checkpoints_dir(settings.data_dir)
    try:
        names = os.listdir(directory)
    except (FileNotFoundError, NotADirectoryError):
        return None
    sizes = sorted((int(m.group(1)) for n in names if (m := _NAME.fullmatch(n))), reverse=True)
    for size in sizes:
        if size < position:
            break
        path = directory / f"{size}.checkpoint"
        try:
            cp = load_checkpoint(path, [verifier])
        except (LedgerError, OSError):
            continue  # not verified by the configured key: not cited
        if cp.size == size and cp.verified:
            return CitedCheckpoint(path, cp)
    return None
