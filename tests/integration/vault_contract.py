"""The KeyVault contract: one test suite, subclassed once per adapter (SQLite in
tests/integration/test_vault.py, in-memory in tests/unit/ledger/adapters/test_memory_adapters.py), like the
EventLog contract in log_contract.py. It states what the ledger relies on: keys reused until
destroyed, a destroyed key's generation never given out again, sealing, the epoch counter,
pending keys, record first then act, audits and secrets."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from ledger.domain.blobs import blob_header, decrypt_blob, encrypt_blob
from ledger.domain.errors import ConfigError, KeyUnavailable
from ledger.ports import (
    EffectsDone,
    KeyRecord,
    KeyVault,
    PendingEffect,
    Tombstone,
)

C, S = "cowrite", "ab" * 32
K = (C, S, "profile")
B = (C, S, "bookkeeping")
OTHER = (C, "cd" * 32, "profile")

Reopen = Callable[[KeyVault], KeyVault]


class VaultContract:
    @pytest.fixture
    def vault(self) -> Iterator[KeyVault]:
        raise NotImplementedError

    @pytest.fixture
    def reopen(self) -> Reopen:
        """Closes a vault and opens its storage again (persistent adapters only)."""
        raise NotImplementedError

    # data keys ----------------------------------------------------------------------------
    def test_keys_are_created_once_and_reused(self, vault: KeyVault) -> None:
        first = vault.data_keys({K, B, OTHER})
        again = vault.data_keys({K})[K]
        assert again == first[K]
        assert (again.controller, again.subject, again.category, again.generation) == (*K, 1)
        assert len(again.key) == 32 and not again.sealed and not again.pending
        assert len({first[k].key for k in (K, B, OTHER)}) == 3  # one key per subject and category
        assert vault.data_key(*K, generation=1) == again.key

    def test_keys_encrypt_blobs_that_name_their_category_and_generation(self, vault: KeyVault) -> None:
        key = vault.data_keys({K})[K]
        blob = encrypt_blob(key, "Åsa Öberg".encode(), "e1")
        header = blob_header(blob)
        assert (header.category, header.generation) == ("profile", 1)
        assert decrypt_blob(vault.data_key(*K, generation=header.generation), blob, "e1") == "Åsa Öberg".encode()

    def test_an_unknown_generation_is_unavailable(self, vault: KeyVault) -> None:
        vault.data_keys({K})
        with pytest.raises(KeyUnavailable):
            vault.data_key(*K, generation=2)
        with pytest.raises(KeyUnavailable):
            vault.data_key(*OTHER, generation=1)

    def test_shredding_destroys_for_good_and_a_new_key_gets_a_new_generation(self, vault: KeyVault) -> None:
        old = vault.data_keys({K, B})[K]
        blob = encrypt_blob(old, b"personal", "e1")
        before = vault.epoch()
        assert vault.shred(C, S, ["profile", "marketing"]) == ["profile"]  # only what existed
        if before is not None:
            assert vault.epoch() != before
        with pytest.raises(KeyUnavailable, match="shredded"):
            vault.data_key(*K, generation=1)
        assert vault.data_key(*B, generation=1)  # other categories stay
        assert vault.tombstones() == [Tombstone(*K, 1, None)]
        assert vault.shredded_without_key([(C, S), OTHER[:2]], "profile") == {(C, S)}
        assert vault.shredded_without_key([(C, S)], "bookkeeping") == set()
        new = vault.data_keys({K})[K]
        assert new.generation == 2 and new.key != old.key
        with pytest.raises(KeyUnavailable):
            decrypt_blob(new.key, blob, "e1")
        with pytest.raises(KeyUnavailable):
            vault.data_key(*K, generation=1)
        assert vault.shredded_without_key([(C, S)], "profile") == set()  # a live key again
        assert vault.shred(C, S, ["profile"]) == ["profile"]
        assert vault.data_keys({K})[K].generation == 3
        assert [t.generation for t in vault.tombstones()] == [1, 2]

    def test_sealed_keys_still_encrypt_but_decrypt_only_when_asked(self, vault: KeyVault) -> None:
        key = vault.data_keys({K, B, OTHER})[K]
        before = vault.epoch()
        vault.seal(C, S)
        if before is not None:
            assert vault.epoch() != before
        for k in (K, B):
            with pytest.raises(KeyUnavailable, match="sealed"):
                vault.data_key(*k, generation=1)
        assert vault.data_key(*K, generation=1, include_sealed=True) == key.key
        assert vault.data_key(*OTHER, generation=1)  # another subject is not sealed
        again = vault.data_keys({K})[K]  # new events (a last invoice) can still be written
        assert again.key == key.key and again.sealed

    def test_stale_names_the_keys_that_are_no_longer_current(self, vault: KeyVault) -> None:
        vault.data_keys({K, B})
        assert vault.stale({(*K, 1), (*B, 1)}) == set()
        vault.shred(C, S, ["profile"])
        assert vault.stale({(*K, 1), (*B, 1), (*B, 2)}) == {(*K, 1), (*B, 2)}
        vault.data_keys({K})
        assert vault.stale({(*K, 1), (*K, 2)}) == {(*K, 1)}

    def test_live_keys_carry_no_key_material(self, vault: KeyVault) -> None:
        vault.data_keys({K, B, OTHER})
        vault.seal(*OTHER[:2])
        assert sorted(vault.live_keys([(C, S)]), key=lambda r: r.category) == [
            KeyRecord(*B, 1, False), KeyRecord(*K, 1, False)]
        assert vault.live_keys([OTHER[:2]]) == [KeyRecord(*OTHER, 1, True)]
        assert vault.live_keys([]) == []

    # pending keys -------------------------------------------------------------------------
    def test_new_keys_handed_out_for_users_are_pending_until_confirmed(self, vault: KeyVault) -> None:
        keys = vault.data_keys({K, B}, {K: ["e1"], B: []})
        assert keys[K].pending and not keys[B].pending  # no users: confirmed from the start
        again = vault.data_keys({K}, {K: ["e2"]})[K]
        assert again.pending and again.key == keys[K].key
        # The new users are noted too, or (SQLite: a key this instance already handed out)
        # need not be: that earlier package commits and confirms the key first.
        (ref, ids), = vault.pending_keys().items()
        assert ref == (*K, 1) and ids[0] == "e1" and set(ids) <= {"e1", "e2"}
        vault.confirm({(*K, 1)})
        assert vault.pending_keys() == {}
        assert not vault.data_keys({K}, {K: ["e3"]})[K].pending  # confirmed stays confirmed

    def test_pending_keys_made_before_a_time(self, vault: KeyVault) -> None:
        vault.data_keys({K}, {K: ["e1"]})
        assert vault.pending_keys("1970-01-01 00:00:00") == {}
        assert vault.pending_keys("9999-12-31 23:59:59") == {(*K, 1): ["e1"]}

    def test_a_discarded_key_is_gone_and_its_generation_never_reused(self, vault: KeyVault) -> None:
        orphan = vault.data_keys({K, B}, {K: ["e1"], B: ["e2"]})
        vault.confirm({(*B, 1)})
        before = vault.epoch()
        vault.discard({(*K, 1), (*B, 1)})  # only pending keys are destroyed
        if before is not None:
            assert vault.epoch() != before
        assert vault.pending_keys() == {}
        assert vault.stale({(*K, 1), (*B, 1)}) == {(*K, 1)}
        with pytest.raises(KeyUnavailable):
            vault.data_key(*K, generation=1)
        new = vault.data_keys({K})[K]
        assert new.generation == 2 and new.key != orphan[K].key
        assert vault.tombstones() == []  # no erasure happened

    # record first, then act ----------------------------------------------------------------
    def test_an_erasure_is_noted_then_done_once(self, vault: KeyVault) -> None:
        vault.data_keys({K, B})
        vault.record_effects([PendingEffect("x1", C, S, "erase", ("profile", "marketing"))])
        assert vault.pending_effects() == [PendingEffect("x1", C, S, "erase", ("profile",))]
        assert vault.data_key(*K, generation=1)  # nothing is done yet
        assert vault.complete_effects(["x1"]) == EffectsDone(keys_shredded=1)
        assert vault.pending_effects() == []
        assert vault.tombstones() == [Tombstone(*K, 1, "x1")]
        assert vault.data_key(*B, generation=1)
        assert vault.complete_effects(["x1"]) == EffectsDone()  # idempotent

    def test_an_effect_is_pinned_to_the_keys_live_when_noted(self, vault: KeyVault) -> None:
        vault.data_keys({K})
        vault.record_effects([PendingEffect("x1", C, S, "erase", ("profile",))])
        vault.shred(C, S, ["profile"])
        new = vault.data_keys({K})[K]  # a new relationship's key, after the note
        assert vault.complete_effects(["x1"]) == EffectsDone()
        assert vault.data_key(*K, generation=2) == new.key

    def test_a_pseudonymisation_seals_every_key_of_the_subject(self, vault: KeyVault) -> None:
        vault.data_keys({K, B, OTHER})
        vault.record_effects([PendingEffect("x2", C, S, "pseudonymise")])
        assert vault.pending_effects() == [PendingEffect("x2", C, S, "pseudonymise",
                                                         ("bookkeeping", "profile"))]
        assert vault.complete_effects(["x2"]) == EffectsDone(subjects_sealed=1)
        for k in (K, B):
            with pytest.raises(KeyUnavailable, match="sealed"):
                vault.data_key(*k, generation=1)
        assert vault.data_key(*OTHER, generation=1)
        vault.record_effects([PendingEffect("x3", C, S, "pseudonymise")])
        assert vault.complete_effects(["x3"]) == EffectsDone()  # sealed already

    def test_an_effect_with_no_keys_is_noted_too(self, vault: KeyVault) -> None:
        vault.record_effects([PendingEffect("x4", C, S, "erase", ("profile",))])
        assert vault.pending_effects() == [PendingEffect("x4", C, S, "erase", ())]
        assert vault.complete_effects(["x4"]) == EffectsDone()
        assert vault.pending_effects() == []

    def test_dropped_effects_do_nothing(self, vault: KeyVault) -> None:
        vault.data_keys({K})
        vault.record_effects([PendingEffect("x5", C, S, "erase", ("profile",)),
                              PendingEffect("x6", C, S, "pseudonymise")])
        vault.drop_effects(["x5"])
        assert [e.event_id for e in vault.pending_effects()] == ["x6"]
        vault.drop_effects(["x6", "unknown"])
        assert vault.pending_effects() == []
        assert vault.complete_effects(["x5", "x6"]) == EffectsDone()
        assert vault.data_key(*K, generation=1)

    # secrets ------------------------------------------------------------------------------
    def test_secrets_are_created_once_listed_and_destroyed(self, vault: KeyVault) -> None:
        with pytest.raises(ConfigError, match="no secret"):
            vault.secret("controller/cowrite")
        first = vault.secret("controller/cowrite", create=True)
        assert len(first) == 32
        assert vault.secret("controller/cowrite") == first
        assert vault.secret("controller/cowrite", create=True) == first
        vault.secret("controller/coegi", create=True)
        vault.secret("deadletters/2026-03", create=True)
        assert vault.secret_names("controller/") == ["controller/coegi", "controller/cowrite"]
        assert vault.destroy_secret("controller/cowrite") is True
        assert vault.destroy_secret("controller/cowrite") is False
        assert vault.secret_names("controller/") == ["controller/coegi"]
        with pytest.raises(ConfigError):
            vault.secret("controller/cowrite")
        assert vault.secret("controller/cowrite", create=True) != first

    # durability ---------------------------------------------------------------------------
    def test_new_keys_and_secrets_are_durable_before_use(self, vault: KeyVault, reopen: Reopen) -> None:
        key = vault.data_keys({K}, {K: ["e1"]})[K]
        secret = vault.secret("controller/cowrite", create=True)
        again = reopen(vault)
        assert again.data_key(*K, generation=1) == key.key
        assert again.pending_keys() == {(*K, 1): ["e1"]}
        assert again.secret("controller/cowrite") == secret
