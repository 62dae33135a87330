"""Personal data at rest: AES-256-GCM blobs under a subject's data key.

A blob is ``version (1) || key category (1) || key generation (2) || nonce (12) || ciphertext``;
the header and the event id are authenticated, so a blob moved onto another event, or read
with another category's key, does not decrypt. Destroying the key (crypto-shredding) makes
every blob under it unreadable; the log itself is never rewritten."""

from __future__ import annotations

import os
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ledger.domain.errors import KeyUnavailable, LedgerError
from ledger.domain.vocabulary import KEY_CATEGORIES

KEY_SIZE = 32  # AES-256
NONCE_SIZE = 12
BLOB_VERSION = 1
_CATEGORY_CODES = {name: code for code, name in enumerate(KEY_CATEGORIES)}
_BLOB_HEADER = 1 + 1 + 2 + NONCE_SIZE  # version, category, key generation, nonce


@dataclass(frozen=True, slots=True)
class DataKey:
    controller: str
    subject: str
    category: str
    generation: int
    key: bytes
    sealed: bool = False
    pending: bool = False  # created for records whose log append has not been confirmed



def encrypt_blob(key: DataKey, plaintext: bytes, event_id: str) -> bytes:
    """Encrypts an event's personal data. The event id is authenticated as associated data, so
    a blob moved onto another event does not decrypt."""
    nonce = os.urandom(NONCE_SIZE)
    header = bytes((BLOB_VERSION, _CATEGORY_CODES[key.category])) + key.generation.to_bytes(2, "big")
    return header + nonce + AESGCM(key.key).encrypt(nonce, plaintext, header + event_id.encode())


@dataclass(frozen=True, slots=True)
class BlobHeader:
    category: str
    generation: int


def blob_header(blob: bytes) -> BlobHeader:
    if len(blob) < _BLOB_HEADER + 16 or blob[0] != BLOB_VERSION or blob[1] >= len(KEY_CATEGORIES):
        raise LedgerError("not a ledger pii blob")
    return BlobHeader(KEY_CATEGORIES[blob[1]], int.from_bytes(blob[2:4], "big"))


def decrypt_blob(key: bytes, blob: bytes, event_id: str) -> bytes:
    header = blob[:4]
    nonce = blob[4:_BLOB_HEADER]
    try:
        return AESGCM(key).decrypt(nonce, blob[_BLOB_HEADER:], header + event_id.encode())
    except InvalidTag:
        raise KeyUnavailable("personal data cannot be decrypted with this key") from None
