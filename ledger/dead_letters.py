"""Dead letters (SPEC §7): every rejected input is kept with its reason. Reasons are written in
clear (they never quote personal values); the rejected input itself may hold personal data, so
it is stored AES-GCM encrypted under the vault's dead-letter key."""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ledger.timeutil import format_micros

MAX_KEPT_BYTES = 1 << 20  # an oversize line is kept truncated to this


@dataclass(frozen=True, slots=True)
class Reject:
    origin: str  # file name, '-' for stdin, 'api'
    line: int  # 1-based line number (or item number for the Python API)
    reason: str
    raw: bytes


class DeadLetters:
    def __init__(self, path: Path, key: bytes) -> None:
        self.path = path
        self._aead = AESGCM(key)

    def write(self, rejects: list[Reject], rejected_at: int) -> None:
        if not rejects:
            return
        lines = []
        for r in rejects:
            nonce = os.urandom(12)
            sealed = nonce + self._aead.encrypt(nonce, r.raw[:MAX_KEPT_BYTES], None)
            lines.append(json.dumps({
                "rejected_at": format_micros(rejected_at),
                "origin": r.origin,
                "line": r.line,
                "reason": r.reason,
                "input_sealed": base64.b64encode(sealed).decode(),
            }, ensure_ascii=False))
        with open(self.path, "a", encoding="utf-8") as f:
            f.write("\n".join(lines) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def read(self, *, decrypt: bool = False) -> Iterator[dict[str, Any]]:
        if not self.path.exists():
            return
        with open(self.path, encoding="utf-8") as f:
            for line in f:
                entry = json.loads(line)
                if decrypt:
                    sealed = base64.b64decode(entry["input_sealed"])
                    entry["input"] = self._aead.decrypt(sealed[:12], sealed[12:], None).decode(
                        "utf-8", "replace"
                    )
                del entry["input_sealed"]
                yield entry
