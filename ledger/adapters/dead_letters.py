"""Dead letters (SPEC §7, §7a): every rejected input is kept with its reason. Reasons are
written in clear and never quote a value of the input (``safe_reason``); the rejected input
itself may hold personal data, so it is stored AES-GCM encrypted, and erasure reaches it:

- a line whose subject can be derived (it parses, names a known controller and a usable
  ``subject``, even if other fields are invalid: ``intake.subject_hint``) is encrypted under that
  subject's ``profile`` data key (fetched or created through the vault's ``data_keys``, so it
  is durable before use); erasing the subject (shredding the key) makes it unreadable;
- the rest is encrypted under a dead-letter key of its month (vault secret
  ``dead-letters/YYYY-MM``, by ``rejected_at`` in UTC), destroyed by ``purge``: by
  ``ledger dead-letters purge --before T`` or by the sweep after the policy's
  ``dead_letter_retention`` (default P30D).

Each entry names the key that encrypted it (``sealed_with``: the controller, the subject's
pseudonym, the category and the key generation; or the secret's name). The field names
``sealed_with`` and ``input_sealed`` are the file's format, older than the rule that "seal"
means only freezing a pseudonymised subject's keys: kept, so existing files stay readable. Entries of the old
format (before issue 9) name none: they were encrypted under the one global secret
``dead-letters``, stay readable until purged, and a purge destroys that secret once no entry
needs it. The file is appended to (and rewritten by a purge: temporary file, fsync, rename)
under the data directory's writer lock."""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import os
import re
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ledger.adapters import killpoints
from ledger.adapters.files import write_all
from ledger.domain.errors import KeyUnavailable
from ledger.domain.intake import subject_hint
from ledger.domain.pseudonyms import InvalidIdentifier, pseudonym
from ledger.domain.timeutil import (
    format_micros,
    from_micros,
    parse_timestamp,
    to_micros,
)
from ledger.ports import KeyVault

MAX_KEPT_BYTES = 1 << 20  # an oversize line is kept truncated to this
MAX_REASON = 300
LEGACY_SECRET = "dead-letters"  # the one global key of the old format
PERIOD_PREFIX = "dead-letters/"  # + YYYY-MM: one key per calendar month (UTC)
SUBJECT_CATEGORY = "profile"
NONCE_SIZE = 12


# Reasons ------------------------------------------------------------------------------------
_EMAILISH = re.compile(r"[^\s'\"@]+@[^\s'\"@]+\.[A-Za-z]{2,}")
# Phone numbers, personnummer (>= 9 digits); not a log position the ledger itself names (on
# Kafka a position encodes partition and offset: a large number).
_DIGIT_RUN = re.compile(r"(?<!position )(?<![\d+])\+?\d(?:[ -]?\d){8,}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
HIDDEN = "…"


def safe_reason(reason: str, raw: bytes | None = None) -> str:
    """A rejection reason fit to be stored in clear: every quoted string value of the input
    (``raw``, if it parses) and anything shaped like an e-mail address, a phone number or a
    personnummer is replaced by "…", control characters by "?", and the length is capped.
    Reasons name the field and the rule; this is the backstop for any that quote a value."""
    obj = _parse(raw) if raw is not None else None
    values = sorted({v for v in _strings(obj) if v}, key=len, reverse=True)
    for value in values:
        for quoted in {repr(value), repr(value[:40]), f"'{value}'", f'"{value}"'}:
            if quoted in reason:
                reason = reason.replace(quoted, f"'{HIDDEN}'")
    reason = _EMAILISH.sub(HIDDEN, reason)
    reason = _DIGIT_RUN.sub(HIDDEN, reason)
    reason = _CONTROL.sub("?", reason)
    return reason if len(reason) <= MAX_REASON else reason[: MAX_REASON - 1] + HIDDEN


def _strings(obj: Any, depth: int = 0) -> Iterator[str]:
    """String values (not keys: keys are field names) of a parsed input."""
    if depth > 64:
        return
    if isinstance(obj, str):
        yield obj
    elif isinstance(obj, dict):
        for v in obj.values():
            yield from _strings(v, depth + 1)
    elif isinstance(obj, list):
        for v in obj:
            yield from _strings(v, depth + 1)


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        raise ValueError("duplicate key")  # ambiguous: whose input is it?
    return obj


_DECODER = json.JSONDecoder(object_pairs_hook=_no_duplicates)


def _parse(raw: bytes) -> Any:
    """The input as JSON, or None; never raises."""
    if len(raw) > MAX_KEPT_BYTES:
        return None
    try:
        return _DECODER.decode(raw.decode("utf-8"))
    except (ValueError, RecursionError):
        return None


@dataclass(frozen=True, slots=True)
class Reject:
    origin: str  # file name, '-' for stdin, 'api'
    line: int  # 1-based line number (or item number for the Python API)
    reason: str
    raw: bytes

    def __post_init__(self) -> None:
        # Wherever a reject is made, its reason never quotes a value of its input.
        object.__setattr__(self, "reason", safe_reason(self.reason, self.raw))


# Keys ---------------------------------------------------------------------------------------
def period_secret(rejected_at: int) -> str:
    """The dead-letter key of the month of ``rejected_at``: ``dead-letters/2026-11``."""
    return f"{PERIOD_PREFIX}{from_micros(rejected_at).strftime('%Y-%m')}"


def period_end(name: str) -> int | None:
    """When the period of a dead-letter key ends (the first instant of the next month)."""
    try:
        start = datetime.strptime(name[len(PERIOD_PREFIX):], "%Y-%m").replace(tzinfo=UTC)
    except ValueError:
        return None
    year, month = divmod(start.year * 12 + start.month, 12)  # the next month, 1-based
    return to_micros(start.replace(year=year, month=month + 1))


def _aad(encrypted_with: Mapping[str, Any]) -> bytes | None:
    """The key id is authenticated with the ciphertext; the old format has none."""
    if encrypted_with == {"secret": LEGACY_SECRET}:
        return None
    return json.dumps(encrypted_with, sort_keys=True, separators=(",", ":")).encode()


def _key_ids(entry: Mapping[str, Any]) -> str | None:
    encrypted_with = entry.get("sealed_with", {"secret": LEGACY_SECRET})
    return encrypted_with.get("secret") if isinstance(encrypted_with, Mapping) else None


@dataclass(frozen=True, slots=True)
class PurgeReport:
    before: int
    entries: int  # entries dropped from the file
    keys: int  # dead-letter keys destroyed
    dry_run: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {"before": format_micros(self.before), "dry_run": self.dry_run,
                "entries_purged": self.entries, "keys_destroyed": self.keys}


class DeadLetters:
    def __init__(
        self,
        path: Path,
        vault: KeyVault,
        secrets: Mapping[str, bytes] | None = None,
        *,
        lock: AbstractContextManager[Any] | None = None,
    ) -> None:
        """``secrets``: the controllers' pseudonym secrets (the known controllers; the mapping
        is read at each write, so controllers added later count). ``lock``: held around every
        change of the file and of the dead-letter keys (the data directory's writer lock)."""
        self.path = path
        self.vault = vault
        self._secrets: Mapping[str, bytes] = secrets if secrets is not None else {}
        self._lock: AbstractContextManager[Any] = lock if lock is not None else contextlib.nullcontext()

    # writing ------------------------------------------------------------------------------
    def write(self, rejects: list[Reject], rejected_at: int) -> None:
        if not rejects:
            return
        with self._lock:
            owners = [self._owner(r.raw) for r in rejects]
            # An erased subject gets no key again for a dead letter (no erasure would destroy
            # it): their rejected input goes under the month's key, like input of no subject.
            erased = self.vault.shredded_without_key(
                {(c, s) for c, s in owners if c is not None and s is not None}, SUBJECT_CATEGORY)
            owners = [(c, None if (c, s) in erased else s) for c, s in owners]
            wanted = {(c, s, SUBJECT_CATEGORY) for c, s in owners if c is not None and s is not None}
            keys = self.vault.data_keys(wanted) if wanted else {}  # durable before use
            period = period_secret(rejected_at)
            period_key = (self.vault.secret(period, create=True)
                          if any(s is None for _, s in owners) else b"")
            lines = []
            for r, (controller, subject) in zip(rejects, owners, strict=True):
                if subject is not None:
                    assert controller is not None
                    dk = keys[(controller, subject, SUBJECT_CATEGORY)]
                    encrypted_with: dict[str, Any] = {"controller": controller, "subject": subject,
                                                   "category": dk.category,
                                                   "generation": dk.generation}
                    key = dk.key
                else:
                    encrypted_with, key = {"secret": period}, period_key
                nonce = os.urandom(NONCE_SIZE)
                ciphertext = nonce + AESGCM(key).encrypt(nonce, r.raw[:MAX_KEPT_BYTES], _aad(encrypted_with))
                entry: dict[str, Any] = {
                    "rejected_at": format_micros(rejected_at),
                    "origin": r.origin,
                    "line": r.line,
                    "reason": safe_reason(r.reason),
                }
                if controller is not None:
                    entry["controller"] = controller
                entry["sealed_with"] = encrypted_with
                entry["input_sealed"] = base64.b64encode(ciphertext).decode()
                lines.append(json.dumps(entry, ensure_ascii=False))
            self._append(("\n".join(lines) + "\n").encode("utf-8"))

    def _owner(self, raw: bytes) -> tuple[str | None, str | None]:
        """(known controller or None, subject pseudonym or None) of a rejected input."""
        obj = _parse(raw)
        hint = subject_hint(obj, self._secrets.keys())
        if hint is not None:
            controller, kind, value = hint
            try:
                subject = value if kind == "id" else pseudonym(self._secrets[controller], kind, value)
            except InvalidIdentifier:  # e.g. a lone surrogate: no subject, the monthly key
                return controller, None
            return controller, subject
        named = obj.get("controller") if isinstance(obj, dict) else None
        return (named if isinstance(named, str) and named in self._secrets else None), None

    def _append(self, data: bytes) -> None:
        fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            size = os.fstat(fd).st_size
            if size and os.pread(fd, 1, size - 1) != b"\n":
                data = b"\n" + data  # a torn last line (a crash mid-write) stays on its own
            write_all(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)

    # reading ------------------------------------------------------------------------------
    def read(self, *, decrypt: bool = False) -> Iterator[dict[str, Any]]:
        """The entries, oldest first, without their ciphertext; every one has ``sealed_with``
        (old-format entries: ``{"secret": "dead-letters"}``). With ``decrypt``, also
        ``input`` (the text, or None) and ``input_status``: readable, erased (the subject's
        key was shredded), sealed (the subject is pseudonymised), purged (the dead-letter key
        was destroyed) or corrupt. Never raises for a key that is gone."""
        keys: dict[str, bytes | str] = {}
        for number, entry in self._entries():
            ciphertext = entry.pop("input_sealed", None)
            if "sealed_with" not in entry and "rejected_at" in entry:
                entry["sealed_with"] = {"secret": LEGACY_SECRET}
            if "rejected_at" not in entry:
                entry = {"rejected_at": "?", "origin": self.path.name, "line": number,
                         "reason": "corrupt dead-letter entry", "sealed_with": None}
            if decrypt:
                entry["input"], entry["input_status"] = self._open(entry, ciphertext, keys)
            yield entry

    def _entries(self) -> Iterator[tuple[int, dict[str, Any]]]:
        """(line number in the file, entry); an unparsable line gives an empty entry, except
        an unterminated last line (a write in progress or torn by a crash)."""
        try:
            f = open(self.path, "rb")
        except FileNotFoundError:
            return
        with f:
            for number, raw in enumerate(f, 1):
                try:
                    entry = json.loads(raw)
                    if not isinstance(entry, dict):
                        raise ValueError("not an object")
                except (ValueError, RecursionError):
                    if not raw.endswith(b"\n"):
                        return
                    entry = {}
                yield number, entry

    def _open(self, entry: Mapping[str, Any], ciphertext: Any,
              keys: dict[str, bytes | str]) -> tuple[str | None, str]:
        encrypted_with = entry.get("sealed_with")
        if not isinstance(encrypted_with, Mapping) or not isinstance(ciphertext, str):
            return None, "corrupt"
        key_id = json.dumps(encrypted_with, sort_keys=True)
        if key_id not in keys:
            keys[key_id] = self._key(encrypted_with)
        key = keys[key_id]
        if isinstance(key, str):
            return None, key
        try:
            blob = base64.b64decode(ciphertext, validate=True)
            plain = AESGCM(key).decrypt(blob[:NONCE_SIZE], blob[NONCE_SIZE:], _aad(encrypted_with))
        except (binascii.Error, ValueError, InvalidTag):
            return None, "corrupt"
        return plain.decode("utf-8", "replace"), "readable"

    def _key(self, encrypted_with: Mapping[str, Any]) -> bytes | str:
        """The key bytes, or why there are none (erased, sealed, purged, corrupt)."""
        if "secret" in encrypted_with:
            name = encrypted_with["secret"]
            if not isinstance(name, str) or not (
                    name == LEGACY_SECRET or name.startswith(PERIOD_PREFIX)):
                return "corrupt"
            if name not in self.vault.secret_names(name):
                return "purged"
            return self.vault.secret(name)
        try:
            where = (str(encrypted_with["controller"]), str(encrypted_with["subject"]),
                     str(encrypted_with["category"]), int(encrypted_with["generation"]))
        except (KeyError, TypeError, ValueError):
            return "corrupt"
        try:
            return self.vault.data_key(*where)
        except KeyUnavailable:
            pass
        try:
            self.vault.data_key(*where, include_sealed=True)
        except KeyUnavailable:
            return "erased"
        return "sealed"  # pseudonymised: only the explicit export path may use the key

    # purging ------------------------------------------------------------------------------
    def purge(self, before: int, *, controllers: Mapping[str, int] | None = None,
              dry_run: bool = False) -> PurgeReport:
        """Destroys rejected input older than ``before``: drops every entry rejected before it
        (rewriting the file atomically), then destroys the dead-letter keys of every month
        wholly before it that no remaining entry needs, and the old global key once no entry
        needs it. Corrupt lines are dropped too.

        ``controllers`` (the sweep: controller -> its own cutoff) narrows it: an entry of a
        controller in the mapping is dropped if rejected before that controller's cutoff, one
        of another controller is kept, and one with no known controller falls to ``before``."""
        keys_before = max([before, *(controllers or {}).values()])
        with self._lock:
            dropped = 0
            needed: set[str] = set()
            for _, entry in self._entries():
                if self._expired(entry, before, controllers):
                    dropped += 1
                elif (name := _key_ids(entry)) is not None:
                    needed.add(name)
            if dropped and not dry_run:
                self._rewrite(before, controllers)
            killpoints.reached("dead-letters:rewritten")
            doomed = [
                name for name in self.vault.secret_names(LEGACY_SECRET)
                if name not in needed and (
                    name == LEGACY_SECRET
                    or (name.startswith(PERIOD_PREFIX)
                        and (end := period_end(name)) is not None and end <= keys_before))
            ]
            destroyed = 0
            for name in doomed:
                destroyed += 1 if dry_run else self.vault.destroy_secret(name)
                killpoints.reached("dead-letters:key-destroyed")
        return PurgeReport(before, dropped, destroyed, dry_run)

    @staticmethod
    def _expired(entry: Mapping[str, Any], before: int,
                 controllers: Mapping[str, int] | None) -> bool:
        try:
            rejected_at = parse_timestamp(entry["rejected_at"])
        except (KeyError, ValueError):
            return True  # corrupt: cannot be dated or read usefully
        if controllers is None:
            return rejected_at < before
        encrypted_with = entry.get("sealed_with")
        controller = entry.get("controller") or (
            encrypted_with.get("controller") if isinstance(encrypted_with, Mapping) else None)
        if controller is None:
            return rejected_at < before
        cutoff = controllers.get(controller)
        return cutoff is not None and rejected_at < cutoff

    def _rewrite(self, before: int, controllers: Mapping[str, int] | None) -> None:
        """The file without the expired entries: a new file beside it, fsynced, renamed over it."""
        for stale in self.path.parent.glob(f".{self.path.name}.*.tmp"):  # of a killed purge
            stale.unlink(missing_ok=True)  # (under the writer lock: no purge is running)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        try:
            with os.fdopen(fd, "wb") as out, open(self.path, "rb") as f:
                for raw in f:
                    try:
                        entry = json.loads(raw)
                    except (ValueError, RecursionError):
                        continue  # corrupt: dropped
                    if isinstance(entry, dict) and not self._expired(entry, before, controllers):
                        out.write(raw if raw.endswith(b"\n") else raw + b"\n")
                out.flush()
                os.fsync(out.fileno())
            killpoints.reached("dead-letters:temp-written")
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        dir_fd = os.open(self.path.parent, os.O_RDONLY | os.O_CLOEXEC)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
