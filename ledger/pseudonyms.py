"""Subject pseudonyms (SPEC §3): HMAC-SHA256, keyed with the controller's secret, over the
normalised natural identifier. The identifier kind is part of the message so that an e-mail
address and an account id that happen to be equal strings never collide."""

from __future__ import annotations

import hashlib
import hmac
import re

PSEUDONYM = re.compile(r"[0-9a-f]{64}")
IDENTIFIER_KINDS = ("email", "account")
MAX_IDENTIFIER = 320  # RFC 5321 caps an address at 254; account ids are short


def normalise(kind: str, value: str) -> str:
    """E-mail: trimmed and lower-cased. Account id: trimmed (ids are case-sensitive)."""
    if kind == "email":
        return value.strip().lower()
    if kind == "account":
        return value.strip()
    raise ValueError(f"unknown identifier kind {kind!r}")


def pseudonym(secret: bytes, kind: str, value: str) -> str:
    message = f"{kind}:{normalise(kind, value)}".encode()
    return hmac.new(secret, message, hashlib.sha256).hexdigest()


def is_pseudonym(value: str) -> bool:
    return bool(PSEUDONYM.fullmatch(value))
