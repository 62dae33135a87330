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
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import stat
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from ledger.errors import ConfigError, UsageError

DEFAULT_DATA_DIR = "ledger-data"
DEFAULT_CONTROLLERS = ("coegi", "cowrite")
CONFIG_FILE = "ledger.toml"
MASTER_KEY_FILE = "master.key"
VAULT_FILE = "keys.sqlite"
LOG_FILE = "log.sqlite"
DEAD_LETTERS_FILE = "dead-letters.jsonl"
CONTROLLER_NAME = re.compile(r"[a-z][a-z0-9_-]{0,39}")


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
        raise ConfigError(f"no ledger in {data_dir}: run `ledger init` (or `ledger --data DIR init`)")
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        raise ConfigError(f"{path}: {e}") from None
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


def write_config(data_dir: Path, config: LedgerConfig) -> None:
    lines = ["# consent-ledger configuration: controllers and the retention policy of each", ""]
    for c in config.controllers.values():
        lines += [f"[controllers.{c.name}]", f'policy = "{c.policy}"', ""]
    tmp = data_dir / (CONFIG_FILE + ".tmp")
    tmp.write_text("\n".join(lines), encoding="utf-8")
    os.replace(tmp, data_dir / CONFIG_FILE)


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
    return _decode_master_key(path.read_text(), str(path))
