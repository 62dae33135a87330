"""Subject pseudonyms (SPEC §3, §7a): HMAC-SHA256, keyed with the controller's secret, over the
normalised natural identifier. The identifier kind is part of the message so that an e-mail
address and an account id that happen to be equal strings never collide.

Normalisation (``normalise``), so that one person gets one pseudonym however the identifier was
typed or copied:

1. Trimmed at both ends of whitespace (``str.isspace``: spaces, tabs, newlines, NBSP and the
   other Unicode spaces) and of the zero-width characters U+200B, U+200C, U+200D, U+2060 and
   U+FEFF (BOM), in any mix.
2. Unicode NFC, so that a precomposed ``å`` and ``a`` + combining ring are the same address.
3. E-mail only: case-folded with ``str.casefold()`` (Unicode default full case folding, no
   locale: ``ß`` and ``ẞ`` fold to ``ss``; Turkish ``İ`` folds to ``i`` + U+0307, not to a
   plain ``i``), then NFC again. For ASCII, ``casefold`` is ``lower``: pseudonyms of ASCII
   addresses (and of every ASCII account id) are the same as before this normalisation existed.
   A non-ASCII address typed in NFD, or with ``ß``/ligatures/final sigma, now gets the
   pseudonym of its normalised form. Account ids keep their case (ids are case-sensitive).

Refused (``InvalidIdentifier``, a ``ValueError`` and a usage error naming the rule, never the
value): an identifier that is empty after trimming; one with a lone surrogate; one with a
zero-width character *inside* (it is invisible, so nobody can tell the two identifiers apart,
and removing it could merge two distinct ids; in practice it is a copy-paste artefact the
producer should fix); one with a control character (C0, DEL, C1) or a bidi override/isolate
(U+202A-202E, U+2066-2069) left after trimming. Intake applies the same checks, so a
published event is rejected rather than hashed."""

from __future__ import annotations

import hashlib
import hmac
import re
import unicodedata

from ledger.domain.errors import UsageError

PSEUDONYM = re.compile(r"[0-9a-f]{64}")
IDENTIFIER_KINDS = ("email", "account")
MAX_IDENTIFIER = 320  # RFC 5321 caps an address at 254; account ids are short

ZERO_WIDTH = "\u200b\u200c\u200d\u2060\ufeff"
# C0 controls, DEL, C1 controls and the bidi embeddings/overrides/isolates.
CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
_TRIM = re.compile(rf"^[\s{ZERO_WIDTH}]+|[\s{ZERO_WIDTH}]+$")
_INNER_ZERO_WIDTH = re.compile(f"[{ZERO_WIDTH}]")


class InvalidIdentifier(UsageError, ValueError):
    """A natural identifier that cannot be normalised; the message names the rule only."""


def normalise(kind: str, value: str) -> str:
    """The normalised identifier (see the module docstring); raises InvalidIdentifier."""
    if kind not in IDENTIFIER_KINDS:
        raise ValueError(f"unknown identifier kind {kind!r}")
    trimmed = _TRIM.sub("", value)
    if not trimmed:
        raise InvalidIdentifier("the identifier is empty")
    if not trimmed.isascii():
        try:
            trimmed.encode("utf-8")
        except UnicodeEncodeError:
            raise InvalidIdentifier("the identifier is not valid Unicode (lone surrogate)") from None
    if CONTROL.search(trimmed):
        raise InvalidIdentifier("the identifier contains a control character (C0, DEL, C1 or a bidi override)")
    if _INNER_ZERO_WIDTH.search(trimmed):
        raise InvalidIdentifier("the identifier contains a zero-width character inside it")
    text = trimmed if trimmed.isascii() else unicodedata.normalize("NFC", trimmed)
    if kind == "email":
        text = text.lower() if text.isascii() else unicodedata.normalize("NFC", text.casefold())
    return text


def pseudonym(secret: bytes, kind: str, value: str) -> str:
    message = f"{kind}:{normalise(kind, value)}".encode()
    return hmac.new(secret, message, hashlib.sha256).hexdigest()


def is_pseudonym(value: str) -> bool:
    return bool(PSEUDONYM.fullmatch(value))
