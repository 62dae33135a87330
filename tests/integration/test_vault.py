from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from ledger.adapters.sqlite_vault import SQLiteKeyVault
from ledger.domain.blobs import blob_header, decrypt_blob, encrypt_blob
from ledger.domain.errors import ConfigError, KeyUnavailable
from ledger.ports import KeyVault
from tests.integration.vault_contract import Reopen, VaultContract

MASTER = bytes(range(32))
K = ("cowrite", "ab" * 32, "profile")


@pytest.fixture
def vault(tmp_path: Path) -> SQLiteKeyVault:
    return SQLiteKeyVault(tmp_path / "keys.sqlite", MASTER)


def test_keys_are_created_once_and_reused(vault: SQLiteKeyVault, tmp_path: Path) -> None:
    first = vault.data_keys({K})[K]
    again = SQLiteKeyVault(tmp_path / "keys.sqlite", MASTER).data_keys({K})[K]
    assert first.key == again.key and first.generation == again.generation == 1


def test_seal_and_unseal(vault: SQLiteKeyVault) -> None:
    key = vault.data_keys({K})[K]
    blob = encrypt_blob(key, "Åsa Öberg 🙂".encode(), "e1")
    assert b"\xc3\x85sa" not in blob
    assert blob_header(blob).category == "profile"
    assert decrypt_blob(key.key, blob, "e1").decode() == "Åsa Öberg 🙂"


def test_a_blob_moved_to_another_event_does_not_open(vault: SQLiteKeyVault) -> None:
    key = vault.data_keys({K})[K]
    with pytest.raises(KeyUnavailable):
        decrypt_blob(key.key, encrypt_blob(key, b"x", "e1"), "e2")


def test_key_material_is_never_stored_in_clear(vault: SQLiteKeyVault, tmp_path: Path) -> None:
    key = vault.data_keys({K})[K].key
    stored = b"".join(p.read_bytes() for p in tmp_path.iterdir())
    assert key not in stored


def test_shredding_makes_old_blobs_unreadable_forever(vault: SQLiteKeyVault, tmp_path: Path) -> None:
    key = vault.data_keys({K})[K]
    blob = encrypt_blob(key, b"personal", "e1")
    assert vault.shred(*K[:2], ["profile", "bookkeeping"]) == ["profile"]
    with pytest.raises(KeyUnavailable, match="shredded"):
        vault.data_key(*K, generation=1)
    # A new relationship gets a new key generation; the old blob still cannot be opened.
    new = vault.data_keys({K})[K]
    assert new.generation == 2
    with pytest.raises(KeyUnavailable):
        decrypt_blob(new.key, blob, "e1")
    with pytest.raises(KeyUnavailable):
        vault.data_key(*K, generation=1)


def test_shredded_key_bytes_do_not_linger_on_disk(tmp_path: Path) -> None:
    vault = SQLiteKeyVault(tmp_path / "keys.sqlite", MASTER)
    vault.data_keys({K})
    wrapped = vault._db.execute("SELECT wrapped FROM data_keys").fetchone()[0]
    vault.shred(*K[:2], ["profile"])
    vault.close()
    stored = b"".join(p.read_bytes() for p in tmp_path.iterdir())
    assert wrapped not in stored


def test_a_wrong_master_key_is_a_clear_error(vault: SQLiteKeyVault, tmp_path: Path) -> None:
    vault.data_keys({K})
    vault.secret("controller/cowrite", create=True)
    other = SQLiteKeyVault(tmp_path / "keys.sqlite", os.urandom(32))
    with pytest.raises(ConfigError, match="wrong master key"):
        other.secret("controller/cowrite")
    with pytest.raises(ConfigError, match="wrong master key"):
        other.data_keys({K})


def test_master_key_must_be_32_bytes(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="32 bytes"):
        SQLiteKeyVault(tmp_path / "keys.sqlite", b"short")


def test_sealed_keys_still_encrypt_but_decrypt_only_when_asked(vault: SQLiteKeyVault) -> None:
    key = vault.data_keys({K})[K]
    vault.seal(*K[:2])
    with pytest.raises(KeyUnavailable, match="sealed"):
        vault.data_key(*K, generation=1)
    assert vault.data_key(*K, generation=1, include_sealed=True) == key.key
    again = vault.data_keys({K})[K]  # new events (e.g. a last invoice) can still be written
    assert again.key == key.key and again.sealed


class TestSQLiteKeyVault(VaultContract):
    @pytest.fixture
    def vault(self, tmp_path: Path) -> Iterator[KeyVault]:
        opened = SQLiteKeyVault(tmp_path / "keys.sqlite", MASTER)
        yield opened
        opened.close()

    @pytest.fixture
    def reopen(self, tmp_path: Path) -> Iterator[Reopen]:
        opened: list[KeyVault] = []

        def again(vault: KeyVault) -> KeyVault:
            vault.close()
            opened.append(SQLiteKeyVault(tmp_path / "keys.sqlite", MASTER))
            return opened[-1]

        yield again
        for v in opened:
            v.close()
