"""The key vault (SPEC §6): per-subject data keys, one per category, wrapped by a master key
and kept apart from the log. Erasure destroys keys (crypto-shredding); the log is never
rewritten.

``KeyVault`` is the port a KMS or HashiCorp Vault can implement; ``SQLiteKeyVault`` is the
embedded adapter (its own SQLite file under the data directory)."""

from __future__ import annotations

import abc
import functools
import os
import sqlite3
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ledger import killpoints
from ledger.config import private_files
from ledger.errors import ConfigError, KeyUnavailable, LedgerError
from ledger.files import storage_error
from ledger.vocabulary import KEY_CATEGORIES

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


@dataclass(frozen=True, slots=True)
class PendingEffect:
    """What a recorded sweep event does to keys (record first, then act): ``erase`` shreds the
    subject's keys of ``categories``, ``pseudonymise`` seals all its keys. Kept in the vault
    from before the event is appended until the effect is done."""

    event_id: str
    controller: str
    subject: str
    action: str  # erase | pseudonymise
    categories: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class EffectsDone:
    keys_shredded: int = 0
    subjects_sealed: int = 0


@dataclass(frozen=True, slots=True)
class KeyRecord:
    """A live key as an audit sees it: no key material."""

    controller: str
    subject: str
    category: str
    generation: int
    sealed: bool


@dataclass(frozen=True, slots=True)
class Tombstone:
    """A destroyed key: the generation and, where the sweep destroyed it, the SubjectErased
    event it carried out (None for keys shredded before that was recorded)."""

    controller: str
    subject: str
    category: str
    generation: int
    event_id: str | None


class KeyVault(abc.ABC):
    """Port: where subject data keys and controller secrets live."""

    @abc.abstractmethod
    def data_keys(self, wanted: set[tuple[str, str, str]]) -> dict[tuple[str, str, str], DataKey]:
        """Current keys for (controller, subject, category), created where missing. New keys
        are durable before this returns, so no ciphertext is ever written under a key that a
        crash could lose."""

    @abc.abstractmethod
    def data_key(
        self, controller: str, subject: str, category: str, generation: int,
        *, include_sealed: bool = False,
    ) -> bytes:
        """A key for decryption; raises KeyUnavailable if it was shredded, or sealed (the
        subject is pseudonymised) unless ``include_sealed`` is given explicitly."""

    @abc.abstractmethod
    def seal(self, controller: str, subject: str) -> None:
        """Moves the subject's keys out of normal reach (pseudonymisation): they still encrypt
        new events, but decrypt only on the explicit export/billing path."""

    @abc.abstractmethod
    def shred(self, controller: str, subject: str, categories: list[str]) -> list[str]:
        """Destroys the subject's keys of these categories; returns the categories destroyed."""

    # record first, then act (SPEC §7a) ------------------------------------------------------
    @abc.abstractmethod
    def record_effects(self, effects: Sequence[PendingEffect]) -> None:
        """Durably notes what these sweep events will do, pinned to the key generations live
        now, before the events are appended. Call under the ledger's writer lock."""

    @abc.abstractmethod
    def pending_effects(self) -> list[PendingEffect]:
        """The effects noted and not yet done or dropped (empty in a healthy vault; cheap)."""

    @abc.abstractmethod
    def complete_effects(self, event_ids: Iterable[str]) -> EffectsDone:
        """Does the noted effects of these (recorded) events: shreds or seals the keys they
        were pinned to, if those still exist, and forgets the notes, atomically. Idempotent.
        Call under the ledger's writer lock, only for events that are in the log."""

    @abc.abstractmethod
    def drop_effects(self, event_ids: Iterable[str]) -> None:
        """Forgets noted effects whose events never reached the log (nothing is done)."""

    @abc.abstractmethod
    def live_keys(self, subjects: Iterable[tuple[str, str]]) -> list[KeyRecord]:
        """The live (not shredded) keys of these (controller, subject) pairs, for audits."""

    @abc.abstractmethod
    def tombstones(self) -> list[Tombstone]:
        """Every destroyed key, for audits."""

    @abc.abstractmethod
    def secret(self, name: str, create: bool = False) -> bytes:
        """A named secret (controller pseudonym secrets, the dead-letter keys). Created where
        missing if ``create``; a new secret is durable before this returns."""

    @abc.abstractmethod
    def destroy_secret(self, name: str) -> bool:
        """Destroys a named secret (crypto-shredding, like ``shred``); False if there was none."""

    @abc.abstractmethod
    def secret_names(self, prefix: str) -> list[str]:
        """The names of the secrets that start with ``prefix``, sorted."""

    def close(self) -> None:  # noqa: B027 - optional for adapters
        pass


_M = TypeVar("_M", bound=Callable[..., Any])


def _storage_errors(method: _M) -> _M:
    """A damaged keys.sqlite or a full disk becomes one clear error (exit 2) naming the file;
    an opening that fails closes its connection."""

    @functools.wraps(method)
    def wrapper(self: SQLiteKeyVault, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except sqlite3.Error as e:
            if method.__name__ == "__init__" and hasattr(self, "_db"):
                self._db.close()
            error = storage_error(self.path, e, what="key vault",
                                  remedy="restore it from a backup")
            if error is None:
                raise
            raise error from None

    return wrapper  # type: ignore[return-value]


class SQLiteKeyVault(KeyVault):
    """Keys AES-GCM-wrapped by the master key, in ``keys.sqlite``. Shredding deletes the row
    with SQLite's secure_delete on and checkpoints the WAL, so the wrapped key bytes do not
    linger in free pages or the journal."""

    @_storage_errors
    def __init__(self, path: Path, master_key: bytes) -> None:
        if len(master_key) != KEY_SIZE:
            raise ConfigError("the master key must be 32 bytes")
        self.path = path
        self._master = AESGCM(master_key)
        self._lock = threading.Lock()
        self._cache: dict[tuple[str, str, str], DataKey] = {}
        with private_files():  # keys.sqlite is 0600; SQLite gives its -wal/-shm the same mode
            self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA secure_delete=ON")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS data_keys (controller TEXT, subject TEXT, "
            "category TEXT, generation INTEGER, wrapped BLOB, sealed INTEGER DEFAULT 0, "
            "created_at TEXT DEFAULT CURRENT_TIMESTAMP, "
            "PRIMARY KEY (controller, subject, category))"
        )
        # A shredded key leaves a tombstone (no key material) so that a later key for the same
        # subject gets a new generation and old ciphertext can never be opened with it.
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS shredded (controller TEXT, subject TEXT, "
            "category TEXT, generation INTEGER, shredded_at TEXT DEFAULT CURRENT_TIMESTAMP, "
            "PRIMARY KEY (controller, subject, category, generation))"
        )
        if "event_id" not in {r[1] for r in self._db.execute("PRAGMA table_info(shredded)")}:
            self._db.execute("ALTER TABLE shredded ADD COLUMN event_id TEXT")  # the SubjectErased
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS secrets (name TEXT PRIMARY KEY, wrapped BLOB)"
        )
        # Record first, then act: the keys a sweep event will shred or seal, noted before the
        # event is appended and removed when done (category '' notes an effect with no key).
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS pending_effects (event_id TEXT, controller TEXT, "
            "subject TEXT, action TEXT, category TEXT, generation INTEGER, "
            "PRIMARY KEY (event_id, category))"
        )

    # wrapping -----------------------------------------------------------------------------
    def _wrap(self, key: bytes, label: str) -> bytes:
        nonce = os.urandom(NONCE_SIZE)
        return nonce + self._master.encrypt(nonce, key, label.encode())

    def _unwrap(self, wrapped: bytes, label: str) -> bytes:
        try:
            return self._master.decrypt(wrapped[:NONCE_SIZE], wrapped[NONCE_SIZE:], label.encode())
        except InvalidTag:
            raise ConfigError(
                "cannot unwrap keys: wrong master key (LEDGER_MASTER_KEY or master.key)"
            ) from None

    # data keys ----------------------------------------------------------------------------
    @_storage_errors
    def data_keys(self, wanted: set[tuple[str, str, str]]) -> dict[tuple[str, str, str], DataKey]:
        with self._lock:
            found = {k: self._cache[k] for k in wanted if k in self._cache}
            missing = [k for k in wanted if k not in found]
            if not missing:
                return found
            self._db.execute("BEGIN IMMEDIATE")
            try:
                for controller, subject, category in missing:
                    row = self._db.execute(
                        "SELECT generation, wrapped, sealed FROM data_keys "
                        "WHERE controller=? AND subject=? AND category=?",
                        (controller, subject, category),
                    ).fetchone()
                    label = f"{controller}/{subject}/{category}"
                    sealed = False
                    if row is not None:
                        generation, wrapped, sealed = row[0], row[1], bool(row[2])
                        key = self._unwrap(wrapped, f"{label}/{generation}")
                    else:
                        generation = self._next_generation(controller, subject, category)
                        key = AESGCM.generate_key(bit_length=256)
                        self._db.execute(
                            "INSERT INTO data_keys (controller, subject, category, generation,"
                            " wrapped) VALUES (?,?,?,?,?)",
                            (controller, subject, category, generation,
                             self._wrap(key, f"{label}/{generation}")),
                        )
                    dk = DataKey(controller, subject, category, generation, key, sealed)
                    found[(controller, subject, category)] = dk
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            for k in missing:
                self._cache[k] = found[k]
            if len(self._cache) > 200_000:  # bounded memory on huge histories
                self._cache.clear()
            return found

    def _next_generation(self, controller: str, subject: str, category: str) -> int:
        row = self._db.execute(
            "SELECT MAX(generation) FROM shredded WHERE controller=? AND subject=? AND category=?",
            (controller, subject, category),
        ).fetchone()
        return 1 if row[0] is None else row[0] + 1

    @_storage_errors
    def data_key(
        self, controller: str, subject: str, category: str, generation: int,
        *, include_sealed: bool = False,
    ) -> bytes:
        cached = self._cache.get((controller, subject, category))
        if cached is not None and cached.generation == generation and not cached.sealed:
            return cached.key
        with self._lock:
            row = self._db.execute(
                "SELECT generation, wrapped, sealed FROM data_keys "
                "WHERE controller=? AND subject=? AND category=?",
                (controller, subject, category),
            ).fetchone()
        if row is None or row[0] != generation:
            raise KeyUnavailable(f"the {category} key of this subject was shredded")
        if row[2] and not include_sealed:
            raise KeyUnavailable(
                f"the {category} key of this subject is sealed (pseudonymised); "
                "only an explicit export may use it"
            )
        return self._unwrap(row[1], f"{controller}/{subject}/{category}/{generation}")

    @_storage_errors
    def seal(self, controller: str, subject: str) -> None:
        with self._lock:
            self._db.execute(
                "UPDATE data_keys SET sealed=1 WHERE controller=? AND subject=?", (controller, subject)
            )
            for category in KEY_CATEGORIES:
                self._cache.pop((controller, subject, category), None)

    @_storage_errors
    def shred(self, controller: str, subject: str, categories: list[str]) -> list[str]:
        destroyed = []
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                for category in categories:
                    row = self._db.execute(
                        "DELETE FROM data_keys WHERE controller=? AND subject=? AND category=? "
                        "RETURNING generation",
                        (controller, subject, category),
                    ).fetchone()
                    self._cache.pop((controller, subject, category), None)
                    if row is not None:
                        self._db.execute(
                            "INSERT OR IGNORE INTO shredded (controller, subject, category,"
                            " generation) VALUES (?,?,?,?)",
                            (controller, subject, category, row[0]),
                        )
                        destroyed.append(category)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            # Push the deletion out of the WAL into the (secure-deleted) main file.
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return destroyed

    # record first, then act ----------------------------------------------------------------
    @_storage_errors
    def record_effects(self, effects: Sequence[PendingEffect]) -> None:
        if not effects:
            return
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                for e in effects:
                    live = dict(self._db.execute(
                        "SELECT category, generation FROM data_keys WHERE controller=? AND subject=?",
                        (e.controller, e.subject)).fetchall())
                    wanted = e.categories if e.action == "erase" else tuple(sorted(live))
                    rows = [(c, live[c]) for c in wanted if c in live] or [("", None)]
                    self._db.executemany(
                        "INSERT OR REPLACE INTO pending_effects (event_id, controller, subject, "
                        "action, category, generation) VALUES (?,?,?,?,?,?)",
                        [(e.event_id, e.controller, e.subject, e.action, c, g) for c, g in rows])
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    @_storage_errors
    def pending_effects(self) -> list[PendingEffect]:
        with self._lock:
            rows = self._db.execute(
                "SELECT event_id, controller, subject, action, category FROM pending_effects "
                "ORDER BY rowid").fetchall()
        found: dict[str, PendingEffect] = {}
        for event_id, controller, subject, action, category in rows:
            e = found.get(event_id) or PendingEffect(event_id, controller, subject, action)
            found[event_id] = PendingEffect(event_id, controller, subject, action,
                                            e.categories + ((category,) if category else ()))
        return list(found.values())

    @_storage_errors
    def complete_effects(self, event_ids: Iterable[str]) -> EffectsDone:
        shredded = sealed = 0
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                for event_id in event_ids:
                    rows = self._db.execute(
                        "DELETE FROM pending_effects WHERE event_id=? "
                        "RETURNING controller, subject, action, category, generation",
                        (event_id,)).fetchall()
                    killpoints.reached("vault:complete")
                    touched = False
                    for controller, subject, action, category, generation in rows:
                        if not category:
                            continue
                        self._cache.pop((controller, subject, category), None)
                        if action == "erase":
                            gone = self._db.execute(
                                "DELETE FROM data_keys WHERE controller=? AND subject=? AND "
                                "category=? AND generation=? RETURNING generation",
                                (controller, subject, category, generation)).fetchone()
                            if gone is not None:
                                self._db.execute(
                                    "INSERT OR IGNORE INTO shredded (controller, subject, "
                                    "category, generation, event_id) VALUES (?,?,?,?,?)",
                                    (controller, subject, category, generation, event_id))
                                shredded += 1
                        else:
                            touched |= self._db.execute(
                                "UPDATE data_keys SET sealed=1 WHERE controller=? AND subject=? "
                                "AND category=? AND generation=? AND sealed=0",
                                (controller, subject, category, generation)).rowcount > 0
                    sealed += touched
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            killpoints.reached("vault:completed")
            if shredded:  # push the deletions out of the WAL into the secure-deleted file
                self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return EffectsDone(shredded, sealed)

    @_storage_errors
    def drop_effects(self, event_ids: Iterable[str]) -> None:
        with self._lock:
            self._db.executemany("DELETE FROM pending_effects WHERE event_id=?",
                                 [(e,) for e in event_ids])

    @_storage_errors
    def live_keys(self, subjects: Iterable[tuple[str, str]]) -> list[KeyRecord]:
        pairs = sorted(set(subjects))
        found: list[KeyRecord] = []
        with self._lock:
            for i in range(0, len(pairs), 400):
                chunk = pairs[i:i + 400]
                where = " OR ".join("(controller=? AND subject=?)" for _ in chunk)
                found += [KeyRecord(c, s, k, g, bool(sealed)) for c, s, k, g, sealed in
                          self._db.execute(
                              "SELECT controller, subject, category, generation, sealed FROM "
                              f"data_keys WHERE {where}", [v for p in chunk for v in p])]
        return found

    @_storage_errors
    def tombstones(self) -> list[Tombstone]:
        with self._lock:
            return [Tombstone(*r) for r in self._db.execute(
                "SELECT controller, subject, category, generation, event_id FROM shredded "
                "ORDER BY rowid")]

    # secrets ------------------------------------------------------------------------------
    @_storage_errors
    def secret(self, name: str, create: bool = False) -> bytes:
        with self._lock:
            row = self._db.execute("SELECT wrapped FROM secrets WHERE name=?", (name,)).fetchone()
            if row is not None:
                return self._unwrap(row[0], f"secret/{name}")
            if not create:
                raise ConfigError(f"no secret {name!r} in the key vault")
            value = os.urandom(KEY_SIZE)
            self._db.execute(
                "INSERT INTO secrets (name, wrapped) VALUES (?,?)",
                (name, self._wrap(value, f"secret/{name}")),
            )
            return value

    @_storage_errors
    def destroy_secret(self, name: str) -> bool:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                rows = self._db.execute(
                    "DELETE FROM secrets WHERE name=? RETURNING name", (name,)).fetchall()
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            # As in shred: the row goes with secure_delete on, and out of the WAL.
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return bool(rows)

    @_storage_errors
    def secret_names(self, prefix: str) -> list[str]:
        with self._lock:
            rows = self._db.execute(
                "SELECT name FROM secrets WHERE substr(name, 1, ?) = ? ORDER BY name",
                (len(prefix), prefix),
            ).fetchall()
        return [r[0] for r in rows]

    def close(self) -> None:
        self._db.close()


# Sealing personal data --------------------------------------------------------------------
def seal(key: DataKey, plaintext: bytes, event_id: str) -> bytes:
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


def unseal(key: bytes, blob: bytes, event_id: str) -> bytes:
    header = blob[:4]
    nonce = blob[4:_BLOB_HEADER]
    try:
        return AESGCM(key).decrypt(nonce, blob[_BLOB_HEADER:], header + event_id.encode())
    except InvalidTag:
        raise KeyUnavailable("personal data cannot be decrypted with this key") from None
