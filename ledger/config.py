"""Settings and the data directory.

Settings come from CLI options or the environment (``LEDGER_DATA``, ``LEDGER_LOG``,
``LEDGER_NOW``, ``LEDGER_SCHEMA_REGISTRY``, ``LEDGER_MASTER_KEY``) and are read when a ledger is opened, not at import.
The data directory holds::

    ledger.toml          controllers and their policies
    master.key           the master key (0600), unless LEDGER_MASTER_KEY is set
    keys.sqlite          the key vault: wrapped data keys and controller secrets
    log.sqlite           the embedded event log
    dead-letters.jsonl   rejected input, reasons in clear, the input itself encrypted
    write.lock           the writer lock (flock) held around every append, shred and seal

The directory is 0700 and every file in it 0600 whatever the umask: files are created inside
``private_files()`` (or with mode 0600 explicitly), and SQLite gives its -wal/-shm files the
mode of their database. Opening a ledger checks again (``check_private``): a directory or file
another local user could read is tightened, with a warning on stderr; a master.key readable by
others is refused.
"""

from __future__ import annotations

import base64
import binascii
import logging
import os
import re
import stat
import threading
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from ledger.domain.errors import ConfigError, CorruptFile, NoLedger, UsageError

DEFAULT_DATA_DIR = "ledger-data"
DEFAULT_CONTROLLERS = ("coegi", "cowrite")
CONFIG_FILE = "ledger.toml"
MASTER_KEY_FILE = "master.key"
VAULT_FILE = "keys.sqlite"
LOG_FILE = "log.sqlite"
DEAD_LETTERS_FILE = "dead-letters.jsonl"
CONTROLLER_NAME = re.compile(r"[a-z][a-z0-9_-]{0,39}")
PRIVATE_UMASK = 0o077

logger = logging.getLogger("ledger")
_umask_lock = threading.Lock()
_umask_depth = 0
_umask_saved = 0


@contextmanager
def private_files() -> Iterator[None]:
    """Files created inside are at most 0600 and directories 0700, whatever the process umask
    (SQLite's and DuckDB's own files included). The umask is per process: this nests and is
    safe across threads; the caller's umask is restored when the last user leaves."""
    global _umask_depth, _umask_saved
    with _umask_lock:
        if _umask_depth == 0:
            saved = os.umask(PRIVATE_UMASK)
            os.umask(saved | PRIVATE_UMASK)
            _umask_saved = saved
        _umask_depth += 1
    try:
        yield
    finally:
        with _umask_lock:
            _umask_depth -= 1
            if _umask_depth == 0:
                os.umask(_umask_saved)


def private_opener(path: str, flags: int) -> int:
    """An ``opener`` for ``open()``: a file it creates is 0600."""
    return os.open(path, flags | os.O_CLOEXEC, 0o600)


def check_private(data_dir: Path) -> list[str]:
    """Tightens a data directory another local user could read or write: the directory to
    0700 and each file in it to 0600 (symbolic links and sub-directories are left alone), each
    with a warning. master.key is not fixed here: ``master_key`` refuses it. Returns the
    warnings."""
    warnings: list[str] = []
    try:
        mode = stat.S_IMODE(data_dir.stat().st_mode)
    except FileNotFoundError:
        return warnings
    if mode & 0o077:
        warnings.append(_tighten(data_dir, mode, 0o700, "open to other users"))
    with os.scandir(data_dir) as entries:
        for entry in sorted(entries, key=lambda e: e.name):
            if entry.name == MASTER_KEY_FILE or not entry.is_file(follow_symlinks=False):
                continue
            mode = stat.S_IMODE(entry.stat(follow_symlinks=False).st_mode)
            if mode & 0o077:
                warnings.append(_tighten(Path(entry.path), mode, 0o600,
                                         "readable by other users"))
    for w in warnings:
        logger.warning(w)
    return warnings


def _tighten(path: Path, mode: int, private: int, what: str) -> str:
    try:
        os.chmod(path, private, follow_symlinks=False)
    except OSError as e:  # not ours (e.g. an auditor's read-only copy): say so, carry on
        return (f"warning: {path} is {what} (mode {mode:04o}) and could not be tightened "
                f"({e.strerror}): chmod {private:o} it")
    return f"warning: {path} was {what} (mode {mode:04o}); tightened to {private:04o}"


def check_vault_file(data_dir: Path) -> None:
    """An initialised ledger's key vault must exist and hold something: opening it would
    otherwise create an empty vault and every key would be lost without a word."""
    path = data_dir / VAULT_FILE
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        size = -1
    if size <= 0:
        raise CorruptFile(f"{path} is {'missing' if size < 0 else 'empty'}: restore the key vault "
                          "from a backup (without it the personal data cannot be decrypted)")


@dataclass(frozen=True, slots=True)
class ControllerConfig:
    name: str
    policy: str


@dataclass(frozen=True, slots=True)
class LedgerConfig:
    controllers: dict[str, ControllerConfig] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Settings:
    data_dir: Path
    log_url: str = "embedded"
    now: str | None = None  # ISO-8601; None means the wall clock
    schema_registry: str | None = None  # Kafka: a Confluent-compatible registry's URL

    @classmethod
    def from_env(
        cls,
        data_dir: str | Path | None = None,
        log_url: str | None = None,
        now: str | None = None,
        schema_registry: str | None = None,
    ) -> Settings:
        return cls(
            data_dir=Path(data_dir or os.environ.get("LEDGER_DATA") or DEFAULT_DATA_DIR),
            log_url=log_url or os.environ.get("LEDGER_LOG") or "embedded",
            now=now or os.environ.get("LEDGER_NOW") or None,
            schema_registry=schema_registry or os.environ.get("LEDGER_SCHEMA_REGISTRY") or None,
        )


def check_controller_name(name: str) -> str:
    if not CONTROLLER_NAME.fullmatch(name):
        raise UsageError(
            f"invalid controller name {name[:40]!r}: use 1-40 lower-case letters, digits, '_' "
            "or '-', starting with a letter"
        )
    return name


def load_config(data_dir: Path) -> LedgerConfig:
    path = data_dir / CONFIG_FILE
    if not path.exists():
        raise NoLedger(data_dir)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        raise ConfigError(f"{path} is not a valid configuration ({e}): fix it or restore it "
                          "from a backup") from None
    controllers = {}
    table = raw.get("controllers", {})
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: 'controllers' must be a table")
    for name, entry in table.items():
        policy = entry.get("policy", name) if isinstance(entry, dict) else None
        if not isinstance(policy, str):
            raise ConfigError(f"{path}: controllers.{name}.policy must be a string")
        controllers[name] = ControllerConfig(name, policy)
    return LedgerConfig(controllers)


def toml_string(text: str) -> str:
    """A TOML basic string: quotes, backslashes and control characters escaped."""
    out = []
    for ch in text:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def config_text(config: LedgerConfig) -> str:
    """ledger.toml's text for ``config``; it reads back as ``config`` (checked)."""
    lines = ["# consent-ledger configuration: controllers and the retention policy of each", ""]
    for c in config.controllers.values():
        check_controller_name(c.name)
        lines += [f"[controllers.{c.name}]", f"policy = {toml_string(c.policy)}", ""]
    text = "\n".join(lines)
    try:
        text.encode("utf-8")
        back = tomllib.loads(text).get("controllers", {})
    except (UnicodeEncodeError, tomllib.TOMLDecodeError):
        back = None
    if back != {c.name: {"policy": c.policy} for c in config.controllers.values()}:
        raise ConfigError("a controller's policy cannot be written to ledger.toml",
                          parameter="policy")
    return text


def write_config(data_dir: Path, config: LedgerConfig) -> None:
    """Replaces ledger.toml atomically (a new 0600 file renamed into place). Callers that
    change a ledger's configuration hold its writer lock."""
    text = config_text(config) + "\n".join(_kept_audit_table(data_dir / CONFIG_FILE))
    from ledger.adapters.files import write_private_file

    write_private_file(data_dir / CONFIG_FILE, text, force=True, parameter=CONFIG_FILE)


def _kept_audit_table(path: Path) -> list[str]:
    """The ``[audit]`` table of the configuration being replaced (its checkpoint key, set by
    hand: see docs/checkpoints.md), so rewriting the controllers keeps it."""
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return []
    table = raw.get("audit")
    if not isinstance(table, dict):
        return []
    kept = [f"{k} = {toml_string(v)}" for k, v in table.items()
            if isinstance(v, str) and re.fullmatch(r"[a-z_]+", k)]
    return ["[audit]", *kept, ""] if kept else []


def _decode_master_key(text: str, origin: str) -> bytes:
    text = text.strip()
    try:
        key = bytes.fromhex(text) if len(text) == 64 else base64.b64decode(text, validate=True)
    except (ValueError, binascii.Error):
        key = b""
    if len(key) != 32:
        raise ConfigError(f"{origin}: the master key must be 32 bytes, as 64 hex digits or base64")
    return key


def master_key(data_dir: Path, create: bool = False) -> bytes:
    env = os.environ.get("LEDGER_MASTER_KEY")
    if env:
        return _decode_master_key(env, "LEDGER_MASTER_KEY")
    path = data_dir / MASTER_KEY_FILE
    if not path.exists():
        if not create:
            raise ConfigError(f"no master key: set LEDGER_MASTER_KEY or restore {path}")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(base64.b64encode(os.urandom(32)).decode() + "\n")
            f.flush()
            os.fsync(f.fileno())
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise ConfigError(f"{path} is readable by others (mode {mode:o}); chmod 600 it")
    try:
        text = path.read_bytes().decode("ascii")
    except UnicodeDecodeError:
        raise CorruptFile(f"{path} is not a master key (binary, not base64 text): restore it "
                          "from a backup or set LEDGER_MASTER_KEY") from None
    try:
        return _decode_master_key(text, str(path))
    except ConfigError as e:
        raise CorruptFile(f"{e}: restore it from a backup or set LEDGER_MASTER_KEY") from None
