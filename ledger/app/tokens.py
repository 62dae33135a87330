"""API tokens for ``ledger serve``: a token is shown once, at creation; the data directory
keeps only its SHA-256 (``tokens.json``, mode 0600), its name and its scopes."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from ledger.domain.errors import ConfigError, UsageError

TOKENS_FILE: Final = "tokens.json"
SCOPES: Final = ("publish", "permits", "export", "decisions", "sweep", "metrics", "notify")
PREFIX: Final = "lt_"
_NAME: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


@dataclass(frozen=True, slots=True)
class TokenInfo:
    name: str
    scopes: tuple[str, ...]
    created_at: str

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "scopes": list(self.scopes), "created_at": self.created_at}


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def parse_scopes(text: str) -> tuple[str, ...]:
    scopes = tuple(dict.fromkeys(s.strip() for s in text.split(",") if s.strip()))
    unknown = [s for s in scopes if s not in SCOPES]
    if not scopes or unknown:
        raise UsageError(f"unknown scope {unknown[0][:40]!r} (use {', '.join(SCOPES)})" if unknown
                         else f"name at least one scope ({', '.join(SCOPES)})", parameter="scope")
    return scopes


class TokenStore:
    """The tokens of one data directory."""

    def __init__(self, data_dir: Path) -> None:
        self.path = Path(data_dir) / TOKENS_FILE

    def _load(self) -> dict[str, dict[str, Any]]:
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return {}
        try:
            data = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            raise ConfigError(f"{TOKENS_FILE} is not valid JSON") from None
        if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
            raise ConfigError(f"{TOKENS_FILE} is not a table of tokens")
        return data

    def _save(self, data: dict[str, dict[str, Any]]) -> None:
        # Written to a private temporary file, then renamed: a crash leaves the old or the new.
        tmp = self.path.with_name(f".{TOKENS_FILE}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=1, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)

    def create(self, name: str, scopes: tuple[str, ...]) -> str:
        """A new random token named ``name``; returns it (the only time it is seen)."""
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise UsageError("a token name is 1-64 letters, digits, '.', '_' or '-'",
                             parameter="name")
        data = self._load()
        if name in data:
            raise UsageError(f"a token named {name!r} exists (revoke it first)", parameter="name")
        token = PREFIX + secrets.token_urlsafe(32)
        data[name] = {"sha256": _digest(token), "scopes": list(scopes),
                      "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        self._save(data)
        return token

    def list(self) -> list[TokenInfo]:
        return [TokenInfo(n, tuple(v.get("scopes", ())), str(v.get("created_at", "")))
                for n, v in sorted(self._load().items())]

    def revoke(self, name: str) -> bool:
        data = self._load()
        if name not in data:
            return False
        del data[name]
        self._save(data)
        return True

    def authenticate(self, token: str) -> TokenInfo | None:
        """The token's name and scopes, or None for an unknown token."""
        digest = _digest(token)
        found = None
        for name, entry in self._load().items():
            if hmac.compare_digest(str(entry.get("sha256", "")), digest):
                found = TokenInfo(name, tuple(entry.get("scopes", ())),
                                  str(entry.get("created_at", "")))
        return found
