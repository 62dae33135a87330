"""The in-memory adapters pass the same contract suites as the SQLite (and Kafka) ones."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator

import pytest

from ledger.adapters.memory import MemoryEventLog, MemoryKeyVault
from ledger.domain.chain import PendingRecord
from ledger.ports import EventLog, KeyVault
from tests.integration.log_contract import EventLogContract, pending
from tests.integration.vault_contract import K, Reopen, VaultContract


class TestMemoryEventLog(EventLogContract):
    @pytest.fixture
    def log(self) -> Iterator[EventLog]:
        log = MemoryEventLog()
        yield log
        log.close()


class TestMemoryKeyVault(VaultContract):
    @pytest.fixture
    def vault(self) -> Iterator[KeyVault]:
        vault = MemoryKeyVault()
        yield vault
        vault.close()

    @pytest.fixture
    def reopen(self) -> Reopen:
        pytest.skip("in memory: nothing outlives the instance, so durability is not promised")


def _with_digest(record: PendingRecord, digest: bytes | None) -> PendingRecord:
    return PendingRecord(record.event_id, record.event_type, record.subject, record.recorded_at,
                         record.payload, digest)


def test_conflicts_know_whether_the_stored_record_had_a_digest() -> None:
    """As the SQLite log (not promised by the contract: Kafka counts a stored record without a
    digest as the same content); the service compares decoded content when not ``known``."""
    log = MemoryEventLog()
    first = _with_digest(pending(10), b"a" * 32)
    plain = pending(10)
    assert log.append([first, plain]) == [1, 2]
    assert log.append([_with_digest(first, b"a" * 32)]) == [None]  # same content: a duplicate
    outcomes = log.append([_with_digest(first, b"b" * 32), _with_digest(plain, b"c" * 32), plain])
    assert [type(o).__name__ for o in outcomes] == ["Conflict", "Conflict", "NoneType"]
    assert (outcomes[0].position, outcomes[0].known) == (1, True)  # type: ignore[union-attr]
    assert (outcomes[1].position, outcomes[1].known) == (2, False)  # type: ignore[union-attr]
    again = pending(11)
    batch = log.append([_with_digest(again, b"d" * 32), _with_digest(again, b"e" * 32)])
    assert batch[0] == 3 and (batch[1].position, batch[1].known) == (3, True)  # type: ignore[union-attr]
    assert len(list(log.read())) == 3


def test_threads_share_one_chain_and_one_key_per_subject() -> None:
    log, vault = MemoryEventLog(), MemoryKeyVault()
    keys: list[bytes] = []

    def work() -> None:
        for _ in range(50):
            log.append([pending(5), pending(5)])
        keys.append(vault.data_keys({K})[K].key)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    records = list(log.read())
    assert [r.position for r in records] == list(range(1, 401))
    assert all(b.prev_hash == a.hash for a, b in itertools.pairwise(records))
    assert len(set(keys)) == 1
