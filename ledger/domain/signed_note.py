"""Signed notes (c2sp.org/signed-note, the format of Go's ``golang.org/x/mod/sumdb/note``):
a UTF-8 text ending in a newline, a blank line, then one or more signature lines
``— <key name> base64(4-byte key id || signature)`` (an em dash, U+2014, and a space).

Only Ed25519 (signature type 0x01) is supported. Keys are text, as Go writes them:

- a verifier key ``<name>+<hex key id>+base64(0x01 || 32-byte public key)``;
- a signer key ``PRIVATE+KEY+<name>+<hex key id>+base64(0x01 || 32-byte seed)``;

with ``key id = SHA-256(name || 0x0A || 0x01 || public key)[:4]`` read big-endian.

Parsing is strict, because a note is what an attacker hands an auditor: a note larger than
``MAX_NOTE_BYTES``, not UTF-8, with a control character other than a newline (a CRLF line end
included), without the blank line, with a signature line that is not one, with base64 that is
not canonical, with more than ``MAX_SIGNATURES`` signatures or two from the same key is
refused with the reason (``NoteError``, a usage error: exit 2). A well-formed note whose
signatures do not verify is a finding (``NoteNotVerified``, exit 1). Verification follows the
spec: signatures by unknown keys are ignored, one that matches a known key must verify, and
at least one must."""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from ledger.domain.errors import LedgerError, UsageError

ED25519 = 0x01
SIGNATURE_PREFIX = "\u2014 "  # em dash, space
SIGNER_PREFIX = "PRIVATE+KEY+"
MAX_NOTE_BYTES = 64 * 1024  # a checkpoint is ~100 bytes; ample room for co-signatures
MAX_SIGNATURES = 100  # the spec asks verifiers to accept at least 16
KEY_TEXT_LIMIT = 1024


class NoteError(UsageError):
    """A note or a key that is not well-formed (exit 2): the message says what is wrong."""


class NoteNotVerified(LedgerError):
    """A well-formed note whose signatures do not verify with the keys given (exit 1)."""


def is_valid_name(name: str) -> bool:
    """A key name: non-empty, no Unicode space, no '+', no control character."""
    return bool(name) and "+" not in name and not any(c.isspace() or ord(c) < 0x20 for c in name)


def key_id(name: str, public_key: bytes, algorithm: int = ED25519) -> int:
    """The recommended key id: the first four bytes of SHA-256(name || 0x0A || type || key)."""
    digest = hashlib.sha256(name.encode("utf-8") + b"\n" + bytes([algorithm]) + public_key).digest()
    return int.from_bytes(digest[:4], "big")


def canonical_b64decode(text: str, what: str) -> bytes:
    """Standard base64 (RFC 4648 §4) with padding, in its one canonical spelling."""
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (UnicodeEncodeError, binascii.Error, ValueError):
        raise NoteError(f"{what} is not base64") from None
    if base64.b64encode(raw).decode("ascii") != text:
        raise NoteError(f"{what} is not canonical base64")
    return raw


def _hex_id(text: str, what: str) -> int:
    if len(text) != 8 or any(c not in "0123456789abcdef" for c in text):
        raise NoteError(f"{what}: the key id must be 8 lower-case hex digits")
    return int(text, 16)


def _key_material(text: str, what: str) -> bytes:
    raw = canonical_b64decode(text, f"{what}: the key")
    if not raw:
        raise NoteError(f"{what}: the key is empty")
    if raw[0] != ED25519:
        raise NoteError(f"{what}: unknown signature type 0x{raw[0]:02x} (only Ed25519, 0x01, "
                        "is supported)")
    if len(raw) != 33:
        raise NoteError(f"{what}: an Ed25519 key is 32 bytes, not {len(raw) - 1}")
    return raw[1:]


def _check_key_text(text: str, what: str) -> None:
    if len(text) > KEY_TEXT_LIMIT:
        raise NoteError(f"{what}: longer than {KEY_TEXT_LIMIT} characters")
    if any(c.isspace() for c in text):
        raise NoteError(f"{what}: contains white space")


def _name(name: str, what: str) -> str:
    if not is_valid_name(name):
        raise NoteError(f"{what}: the key name must be non-empty, without spaces or '+'")
    return name


def _key_fields(text: str, what: str, form: str,
                public_of: Callable[[bytes], bytes]) -> tuple[str, int, bytes]:
    """(name, key id, key material) of ``name+keyid+base64key``, the id checked against the
    name and the public key (``public_of`` the material)."""
    parts = text.split("+", 2)
    if len(parts) != 3:
        raise NoteError(f"{what}: not a {'signer' if form.startswith('PRIVATE') else 'verifier'} "
                        f"key ({form})")
    name, hex_id, material = parts
    _name(name, what)
    kid = _hex_id(hex_id, what)
    key = _key_material(material, what)
    if key_id(name, public_of(key)) != kid:
        raise NoteError(f"{what}: the key id {hex_id} does not match the name and key")
    return name, kid, key


@dataclass(frozen=True, slots=True)
class VerifierKey:
    """A public key that verifies a note's signatures: its name, id and Ed25519 key."""

    name: str
    key_id: int
    public_key: bytes

    @classmethod
    def parse(cls, text: str, what: str = "verifier key") -> VerifierKey:
        _check_key_text(text, what)
        if text.startswith(SIGNER_PREFIX):
            raise NoteError(f"{what}: this is a private signer key (PRIVATE+KEY+…), not a "
                            "verifier key: never hand it out")
        name, kid, public = _key_fields(text, what, "name+keyid+base64key", lambda m: m)
        return cls(name, kid, public)

    def encode(self) -> str:
        material = base64.b64encode(bytes([ED25519]) + self.public_key).decode("ascii")
        return f"{self.name}+{self.key_id:08x}+{material}"

    @property
    def label(self) -> str:
        """``name+keyid``, how the Go package names a key in its errors."""
        return f"{self.name}+{self.key_id:08x}"

    def verify(self, message: bytes, signature: bytes) -> bool:
        try:
            Ed25519PublicKey.from_public_bytes(self.public_key).verify(signature, message)
        except (InvalidSignature, ValueError):
            return False
        return True


@dataclass(frozen=True, slots=True)
class SignerKey:
    """A private Ed25519 key (its 32-byte seed) with the name it signs under."""

    name: str
    key_id: int
    seed: bytes

    @classmethod
    def generate(cls, name: str) -> SignerKey:
        _name(name, "{name}")  # the CLI shows its flag
        seed = os.urandom(32)
        return cls(name, key_id(name, _public_key(seed)), seed)

    @classmethod
    def parse(cls, text: str, what: str = "signer key") -> SignerKey:
        _check_key_text(text, what)
        if not text.startswith(SIGNER_PREFIX):
            raise NoteError(f"{what}: not a signer key (it starts with PRIVATE+KEY+)")
        name, kid, seed = _key_fields(text[len(SIGNER_PREFIX):], what,
                                      "PRIVATE+KEY+name+keyid+base64key", _public_key)
        return cls(name, kid, seed)

    def encode(self) -> str:
        material = base64.b64encode(bytes([ED25519]) + self.seed).decode("ascii")
        return f"{SIGNER_PREFIX}{self.name}+{self.key_id:08x}+{material}"

    def verifier(self) -> VerifierKey:
        return VerifierKey(self.name, self.key_id, _public_key(self.seed))

    def sign(self, message: bytes) -> bytes:
        return Ed25519PrivateKey.from_private_bytes(self.seed).sign(message)

    def __repr__(self) -> str:  # never print the seed
        return f"SignerKey({self.name!r}, {self.key_id:08x})"


def _public_key(seed: bytes) -> bytes:
    return Ed25519PrivateKey.from_private_bytes(seed).public_key().public_bytes(
        Encoding.Raw, PublicFormat.Raw)


@dataclass(frozen=True, slots=True)
class Signature:
    """One signature line: the key's name and id and the signature bytes after the id."""

    name: str
    key_id: int
    signature: bytes

    @property
    def label(self) -> str:
        return f"{self.name}+{self.key_id:08x}"

    def line(self) -> str:
        raw = self.key_id.to_bytes(4, "big") + self.signature
        return f"{SIGNATURE_PREFIX}{self.name} {base64.b64encode(raw).decode('ascii')}\n"


@dataclass(frozen=True, slots=True)
class Note:
    """A note's text (with its final newline) and its signatures, not yet verified."""

    text: str
    signatures: tuple[Signature, ...]

    def encode(self) -> bytes:
        return (self.text + "\n" + "".join(s.line() for s in self.signatures)).encode("utf-8")


def check_text(text: str, what: str = "note") -> None:
    """The rules a note's text obeys: non-empty, ends in a newline, no control character
    but newlines."""
    if not text.endswith("\n"):
        raise NoteError(f"{what}: the text must end with a newline")
    _no_controls(text, what)


def _no_controls(text: str, what: str) -> None:
    for number, line in enumerate(text.split("\n"), 1):
        for c in line:
            if c == "\r":
                raise NoteError(f"{what}: carriage return on line {number} (CRLF line ends?): "
                                "lines end with a newline only")
            if ord(c) < 0x20:
                raise NoteError(f"{what}: control character U+{ord(c):04X} on line {number}")


def parse_note(data: bytes, what: str = "note") -> Note:
    """A signed note's text and signatures, strictly (see the module docstring); nothing is
    verified yet."""
    if len(data) > MAX_NOTE_BYTES:
        raise NoteError(f"{what}: larger than {MAX_NOTE_BYTES:,} bytes")
    try:
        decoded = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise NoteError(f"{what}: not UTF-8 (byte {e.start})") from None
    if decoded.startswith("\ufeff"):
        raise NoteError(f"{what}: starts with a byte-order mark")
    _no_controls(decoded, what)
    split = decoded.rfind("\n\n")
    if split < 0:
        raise NoteError(f"{what}: no blank line between the text and the signatures")
    text, block = decoded[:split + 1], decoded[split + 2:]
    if not block:
        raise NoteError(f"{what}: no signature lines after the blank line")
    if not block.endswith("\n"):
        raise NoteError(f"{what}: the last signature line does not end with a newline")
    lines = block[:-1].split("\n")
    if len(lines) > MAX_SIGNATURES:
        raise NoteError(f"{what}: more than {MAX_SIGNATURES} signatures")
    first = text.count("\n") + 2  # the line number of the first signature line
    signatures: list[Signature] = []
    seen: set[tuple[str, int]] = set()
    for number, line in enumerate(lines, first):
        signature = _signature_line(line, f"{what}: line {number}")
        if (signature.name, signature.key_id) in seen:
            raise NoteError(f"{what}: line {number}: a second signature by key {signature.label}")
        seen.add((signature.name, signature.key_id))
        signatures.append(signature)
    return Note(text, tuple(signatures))


def _signature_line(line: str, what: str) -> Signature:
    if not line.startswith(SIGNATURE_PREFIX):
        raise NoteError(f"{what} is not a signature line (one starts with an em dash and a space)")
    name, space, encoded = line[len(SIGNATURE_PREFIX):].partition(" ")
    if not space or not is_valid_name(name):
        raise NoteError(f"{what}: a signature line is '— name base64', with a name "
                        "without spaces or '+'")
    raw = canonical_b64decode(encoded, f"{what}: the signature")
    if len(raw) < 5:
        raise NoteError(f"{what}: the signature is too short")
    return Signature(name, int.from_bytes(raw[:4], "big"), raw[4:])


def sign_note(text: str, signers: Sequence[SignerKey], keep: Iterable[Signature] = ()) -> bytes:
    """The signed note of ``text``: the signatures to ``keep`` (a note's earlier ones, for
    co-signing; one by a key that signs again is replaced) and one per signer."""
    check_text(text)
    if len(text.encode("utf-8")) > MAX_NOTE_BYTES:
        raise NoteError(f"note: larger than {MAX_NOTE_BYTES:,} bytes")
    message = text.encode("utf-8")
    new = [Signature(s.name, s.key_id, s.sign(message)) for s in signers]
    ids = {(s.name, s.key_id) for s in new}
    kept = [s for s in keep if (s.name, s.key_id) not in ids]
    return Note(text, (*kept, *new)).encode()


@dataclass(frozen=True, slots=True)
class OpenedNote:
    """A note with at least one signature verified by a known key."""

    text: str
    verified: tuple[Signature, ...]
    unverified: tuple[Signature, ...]  # by keys not given: ignored, as the spec says


def verify_note(note: Note, keys: Sequence[VerifierKey], what: str = "note") -> OpenedNote:
    """Verifies ``note`` with the known ``keys``; NoteNotVerified if a signature by a known
    key fails, or if none of its signatures is by a known key."""
    if not keys:
        raise NoteError(f"{what}: no verifier key given")
    known: dict[tuple[str, int], VerifierKey] = {}
    for k in keys:
        if known.setdefault((k.name, k.key_id), k) != k:
            raise NoteError(f"ambiguous verifier key {k.label}: two keys with one name and id")
    message = note.text.encode("utf-8")
    verified: list[Signature] = []
    unverified: list[Signature] = []
    for s in note.signatures:
        key = known.get((s.name, s.key_id))
        if key is None:
            unverified.append(s)
        elif key.verify(message, s.signature):
            verified.append(s)
        else:
            raise NoteNotVerified(f"{what}: the signature by {s.label} does not verify: the text "
                                  "was changed after it was signed, or the signature is forged")
    if not verified:
        given = ", ".join(k.label for k in keys)
        if not note.signatures:
            raise NoteNotVerified(f"{what}: not signed (the key given is {given})")
        found = ", ".join(s.label for s in note.signatures)
        raise NoteNotVerified(f"{what}: not signed by {given}; signed only by {found}")
    return OpenedNote(note.text, tuple(verified), tuple(unverified))


def open_note(data: bytes, keys: Sequence[VerifierKey], what: str = "note") -> OpenedNote:
    """Parses and verifies a signed note (``parse_note`` then ``verify_note``)."""
    return verify_note(parse_note(data, what), keys, what)
