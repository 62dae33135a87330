"""The key vault (SPEC §6): per-subject data keys, one per category, wrapped by a master key
and kept apart from the log. Erasure destroys keys (crypto-shredding); the log is never
rewritten.

``SQLiteKeyVault`` is the embedded adapter of the ``KeyVault`` port (``ledger.ports``; a KMS or
HashiCorp Vault could implement it too): its own SQLite file under the data directory. The blob
format of the personal data it protects is in ``ledger.domain.blobs``."""

from __future__ import annotations

import functools
import os
import sqlite3
import threading
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ledger.adapters import killpoints
from ledger.adapters.files import storage_error
from ledger.config import private_files
from ledger.domain.blobs import KEY_SIZE, NONCE_SIZE, DataKey
from ledger.domain.errors import ConfigError, KeyUnavailable
from ledger.domain.vocabulary import KEY_CATEGORIES
from ledger.ports import (
    EffectsDone,
    KeyRecord,
    KeyRef,
    KeyVault,
    PendingEffect,
    Tombstone,
)

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
        self._epoch = -1  # the epoch the cache was last known to be valid at
        self._prepare_liveness()

    def _prepare_liveness(self) -> None:
        """The epoch counter (bumped by triggers, so every DELETE or UPDATE of a key row,
        whoever runs it, bumps it in its own transaction) and the pending marks."""
        db = self._db
        db.execute("CREATE TABLE IF NOT EXISTS vault_epoch (id INTEGER PRIMARY KEY CHECK (id = 0),"
                   " epoch INTEGER NOT NULL)")
        db.execute("INSERT OR IGNORE INTO vault_epoch VALUES (0, 0)")
        for event in ("DELETE", "UPDATE OF generation, wrapped, sealed"):
            name = event.split()[0].lower()
            db.execute(f"CREATE TRIGGER IF NOT EXISTS data_keys_epoch_{name} AFTER {event} ON "
                       "data_keys BEGIN UPDATE vault_epoch SET epoch = epoch + 1; END")
        columns = {row[1] for row in db.execute("PRAGMA table_info(data_keys)")}
        if "pending" not in columns:  # a vault from before pending marks: all keys confirmed
            db.execute("ALTER TABLE data_keys ADD COLUMN pending TEXT")
        db.execute("CREATE TABLE IF NOT EXISTS discarded (controller TEXT, subject TEXT, "
                   "category TEXT, generation INTEGER, "
                   "PRIMARY KEY (controller, subject, category, generation))")
        # Partial, on a small column: the few pending rows are found without a scan, and the
        # pending id lists are not copied into the index.
        db.execute("CREATE INDEX IF NOT EXISTS data_keys_pending ON data_keys(generation) "
                   "WHERE pending IS NOT NULL")

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
    def _read_epoch(self) -> int:
        return int(self._db.execute("SELECT epoch FROM vault_epoch").fetchone()[0])

    def _check_cache(self) -> None:
        """Drops the cache if any key changed since it was filled (another process shredded)."""
        epoch = self._read_epoch()
        if epoch != self._epoch:
            self._cache.clear()
            self._epoch = epoch

    def epoch(self) -> int | None:
        with self._lock:
            return self._read_epoch()

    @_storage_errors
    def data_keys(
        self, wanted: set[tuple[str, str, str]],
        users: dict[tuple[str, str, str], list[str]] | None = None,
    ) -> dict[tuple[str, str, str], DataKey]:
        with self._lock:
            self._check_cache()
            # A cached pending key needs no new users recorded: this process made or fetched it
            # for an earlier package, which commits (and confirms it) before any later one;
            # if that append fails, ``discard`` drops it from the cache.
            found = {k: self._cache[k] for k in wanted if k in self._cache}
            missing = [k for k in wanted if k not in found]
            if not missing:
                return found
            self._db.execute("BEGIN IMMEDIATE")
            try:
                if self._read_epoch() != self._epoch:  # a key changed since the check above
                    self._check_cache()
                    found, missing = {}, list(wanted)
                for controller, subject, category in missing:
                    k = (controller, subject, category)
                    row = self._db.execute(
                        "SELECT generation, wrapped, sealed, pending FROM data_keys "
                        "WHERE controller=? AND subject=? AND category=?",
                        (controller, subject, category),
                    ).fetchone()
                    label = f"{controller}/{subject}/{category}"
                    sealed = pending = False
                    ids = " ".join(users.get(k, ())) if users is not None else ""
                    if row is not None:
                        generation, wrapped, sealed = row[0], row[1], bool(row[2])
                        key = self._unwrap(wrapped, f"{label}/{generation}")
                        if row[3] is not None and ids:  # still pending: its new users too
                            pending = True
                            self._db.execute(
                                "UPDATE data_keys SET pending = pending || ' ' || ? "
                                "WHERE controller=? AND subject=? AND category=?",
                                (ids, controller, subject, category))
                    else:
                        generation = self._next_generation(controller, subject, category)
                        key = AESGCM.generate_key(bit_length=256)
                        pending = bool(ids)
                        self._db.execute(
                            "INSERT INTO data_keys (controller, subject, category, generation,"
                            " wrapped, pending) VALUES (?,?,?,?,?,?)",
                            (controller, subject, category, generation,
                             self._wrap(key, f"{label}/{generation}"), ids or None),
                        )
                    dk = DataKey(controller, subject, category, generation, key, sealed, pending)
                    found[k] = dk
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            for k in missing:
                self._cache[k] = found[k]
            if len(self._cache) > 200_000:  # bounded memory on huge histories
                self._cache.clear()
            return found

    def stale(self, keys: set[KeyRef]) -> set[KeyRef]:
        with self._lock:
            out = set()
            for ref in keys:
                row = self._db.execute(
                    "SELECT generation FROM data_keys WHERE controller=? AND subject=? AND category=?",
                    ref[:3]).fetchone()
                if row is None or row[0] != ref[3]:
                    out.add(ref)
            return out

    def confirm(self, keys: set[KeyRef]) -> None:
        if not keys:
            return
        with self._lock:
            # Not synchronous: a confirmation lost in a crash is redone from the log at the
            # next open (pending_keys: its users are in the log).
            self._db.execute("PRAGMA synchronous=NORMAL")
            try:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    self._db.executemany(
                        "UPDATE data_keys SET pending=NULL WHERE controller=? AND subject=? AND "
                        "category=? AND generation=? AND pending IS NOT NULL", list(keys))
                    self._db.execute("COMMIT")
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
            finally:
                self._db.execute("PRAGMA synchronous=FULL")
            for ref in keys:
                dk = self._cache.get(ref[:3])
                if dk is not None and dk.generation == ref[3] and dk.pending:
                    self._cache[ref[:3]] = DataKey(*ref, dk.key, dk.sealed, False)

    def pending_keys(self, created_before: str | None = None) -> dict[KeyRef, list[str]]:
        with self._lock:
            rows = self._db.execute(
                "SELECT controller, subject, category, generation, pending FROM data_keys "
                "WHERE pending IS NOT NULL AND (? IS NULL OR created_at < ?)",
                (created_before, created_before)).fetchall()
        return {tuple(r[:4]): r[4].split() for r in rows}

    def discard(self, keys: set[KeyRef]) -> None:
        if not keys:
            return
        with self._lock:
            for ref in keys:  # first: even if the deletion fails, their next use re-reads them
                self._cache.pop(ref[:3], None)
            self._db.execute("BEGIN IMMEDIATE")
            try:
                for ref in keys:
                    row = self._db.execute(
                        "DELETE FROM data_keys WHERE controller=? AND subject=? AND category=? "
                        "AND generation=? AND pending IS NOT NULL RETURNING generation", ref,
                    ).fetchone()
                    if row is not None:
                        self._db.execute("INSERT OR IGNORE INTO discarded VALUES (?,?,?,?)", ref)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            # A tombstone of its own (not ``shredded``: no erasure happened), so that the
            # generation is never reused: a stale copy must never pass for a live key.

    def _next_generation(self, controller: str, subject: str, category: str) -> int:
        row = self._db.execute(
            "SELECT MAX(g) FROM (SELECT MAX(generation) AS g FROM shredded WHERE controller=? "
            "AND subject=? AND category=? UNION ALL SELECT MAX(generation) FROM discarded "
            "WHERE controller=? AND subject=? AND category=?)",
            (controller, subject, category) * 2,
        ).fetchone()
        return 1 if row[0] is None else row[0] + 1

    @_storage_errors
    def data_key(
        self, controller: str, subject: str, category: str, generation: int,
        *, include_sealed: bool = False,
    ) -> bytes:
        with self._lock:
            self._check_cache()  # another process may have shredded or sealed it since
            cached = self._cache.get((controller, subject, category))
            if cached is not None and cached.generation == generation and not cached.sealed:
                return cached.key
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
    def shredded_without_key(self, subjects: Iterable[tuple[str, str]], category: str,
                             ) -> set[tuple[str, str]]:
        pairs = sorted(set(subjects))
        found: set[tuple[str, str]] = set()
        with self._lock:
            for i in range(0, len(pairs), 400):
                chunk = pairs[i:i + 400]
                where = " OR ".join("(s.controller=? AND s.subject=?)" for _ in chunk)
                found.update(self._db.execute(
                    "SELECT DISTINCT s.controller, s.subject FROM shredded s "
                    f"WHERE s.category=? AND ({where}) AND NOT EXISTS (SELECT 1 FROM data_keys k "
                    "WHERE k.controller=s.controller AND k.subject=s.subject AND k.category=?)",
                    [category, *(v for pair in chunk for v in pair), category]).fetchall())
        return found

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
