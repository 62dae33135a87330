"""The write side of the ledger (publishing, record first then act, key recovery) on the
in-memory adapters: no data directory, no file, no SQLite. The sweep, permits and exports
read DuckDB projections and are tested in tests/integration."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from ledger.adapters.memory import (
    MemoryDeadLetters,
    MemoryEventLog,
    MemoryKeyVault,
    MemoryWriterLock,
)
from ledger.app.service import Ledger, controller_secret_name
from ledger.config import DEFAULT_CONTROLLERS, ControllerConfig, LedgerConfig
from ledger.domain.blobs import blob_header
from ledger.domain.clock import FixedClock
from ledger.domain.errors import (
    ClockError,
    InvalidEvent,
    KeyUnavailable,
    UsageError,
)
from ledger.domain.events import Event
from ledger.domain.timeutil import parse_timestamp
from ledger.ports import EffectsDone, PendingEffect
from tests.conftest import BODIES, make_event

NOWHERE = Path("/nonexistent/in-memory-ledger")  # a data directory that is never created
NOW = parse_timestamp("2026-03-05T12:00:00Z")
ANNA = "Anna.Svensson@example.se"

OpenLedger = Callable[[MemoryEventLog, MemoryKeyVault], Ledger]


def memory_vault() -> MemoryKeyVault:
    """What ``Ledger.init`` leaves in a new vault: each controller's pseudonym secret."""
    vault = MemoryKeyVault()
    for name in DEFAULT_CONTROLLERS:
        vault.secret(controller_secret_name(name), create=True)
    return vault


@pytest.fixture
def open_ledger() -> Iterator[OpenLedger]:
    """Opens a Ledger on the given in-memory log and vault (as the next process would)."""
    opened: list[Ledger] = []

    def open_(log: MemoryEventLog, vault: MemoryKeyVault) -> Ledger:
        config = LedgerConfig({n: ControllerConfig(n, n) for n in DEFAULT_CONTROLLERS})
        opened.append(Ledger(NOWHERE, config, log, vault, FixedClock(NOW),
                             writer_lock=MemoryWriterLock(), dead_letters=MemoryDeadLetters))
        return opened[-1]

    yield open_
    for ledger in opened:
        ledger.close()
    assert not NOWHERE.exists()


@pytest.fixture
def ledger(open_ledger: OpenLedger) -> Ledger:
    return open_ledger(MemoryEventLog(), memory_vault())


def lines(*events: dict) -> list[bytes]:
    return [json.dumps(e, ensure_ascii=False).encode() + b"\n" for e in events]


def counts(report: object) -> tuple[int, int, int, int]:
    d = report.as_dict()  # type: ignore[attr-defined]
    return d["accepted"], d["duplicates"], d["rejected"], d["conflicts"]


# publishing ---------------------------------------------------------------------------------
def test_published_events_are_accepted_then_duplicates(ledger: Ledger) -> None:
    batch = lines(*[make_event(t) for t in sorted(BODIES)])
    first = ledger.publish(batch + batch[:2])  # two duplicates inside the input too
    assert counts(first) == (len(BODIES), 2, 0, 0)
    assert first.last_position == len(BODIES)
    head = ledger.log.head()
    ledger.clock = FixedClock(NOW + 1)
    assert counts(ledger.publish(batch)) == (0, len(BODIES), 0, 0)
    assert ledger.log.head() == head
    anna = ledger.subject_id("cowrite", email=ANNA)
    for record, event in ledger.events():
        assert event.subject == anna and event.recorded_at == NOW
        assert ANNA.encode() not in record.payload and b"Anna Svensson" not in record.payload
        personal = ledger.personal_data(event)
        assert personal is not None and personal["pii"]["name"] == "Anna Svensson"


def test_the_same_id_with_other_content_is_a_conflict(ledger: Ledger) -> None:
    given = make_event("ConsentGiven")
    position = ledger.record(given).position
    withdrawn = make_event("ConsentWithdrawn", event_id=given["event_id"])
    report = ledger.publish(lines(given, withdrawn), origin="in.jsonl")
    assert counts(report) == (0, 1, 1, 1)
    reason = f"event_id: conflicts with the event at position {position} (same id, different content)"
    assert [(r.line, r.reason) for r in report.rejects] == [(2, reason)]
    (letter,) = ledger.dead_letters.read(decrypt=True)
    assert (letter["origin"], letter["line"], letter["reason"]) == ("in.jsonl", 2, reason)
    assert json.loads(letter["input"])["type"] == "ConsentWithdrawn"
    assert letter["input_status"] == "readable"
    with pytest.raises(InvalidEvent, match=f"position {position}"):
        ledger.record(withdrawn)
    assert ledger.log.head().position == 1


def test_rejected_lines_go_to_the_dead_letters_and_never_stop_the_rest(ledger: Ledger) -> None:
    good = make_event()
    unknown = make_event(controller="acme")
    report = ledger.publish([b"not json\n", *lines(good, unknown)], origin="mixed.jsonl")
    assert counts(report) == (1, 0, 2, 0)
    assert [r.line for r in report.rejects] == [1, 3]
    letters = list(ledger.dead_letters.read(decrypt=True))
    assert [(e["line"], e["input_status"]) for e in letters] == [(1, "readable"), (3, "readable")]
    assert letters[0]["input"] == "not json" and "malformed JSON" in letters[0]["reason"]
    assert "unknown controller" in letters[1]["reason"]
    with pytest.raises(InvalidEvent, match="controller: unknown controller"):
        ledger.record(unknown)
    assert [e.event_id for _, e in ledger.events()] == [good["event_id"]]


def test_a_key_shredded_between_two_records_gives_a_new_generation(ledger: Ledger) -> None:
    ledger.record(make_event("LoggedIn"))
    anna = ledger.subject_id("cowrite", email=ANNA)
    assert ledger.vault.shred("cowrite", anna, ["profile"]) == ["profile"]
    ledger.record(make_event("ServiceUsed", pii={"name": "Anna S"}))
    (_, before), (_, after) = list(ledger.events())
    assert before.pii is not None and after.pii is not None
    assert [blob_header(e.pii).generation for e in (before, after)] == [1, 2]  # type: ignore[arg-type]
    with pytest.raises(KeyUnavailable, match="shredded"):
        ledger.personal_data(before)
    assert ledger.personal_data(after)["pii"] == {"name": "Anna S"}  # type: ignore[index]
    assert ledger.vault.pending_keys() == {}  # the new key was confirmed after the append


def test_a_clock_behind_the_log_appends_nothing_and_leaves_no_key(ledger: Ledger) -> None:
    ledger.record(make_event())
    ledger.clock = FixedClock(NOW - 1)
    with pytest.raises(ClockError, match="behind the log"):
        ledger.record(make_event(subject={"email": "someone.else@example.se"}))
    other = ledger.subject_id("cowrite", email="someone.else@example.se")
    assert ledger.vault.live_keys([("cowrite", other)]) == []  # its new key was discarded
    assert ledger.vault.pending_keys() == {} and ledger.log.head().position == 1


def test_batches_keep_their_own_ledger_clock(ledger: Ledger) -> None:
    day = 86_400_000_000
    report = ledger.record_batches([(NOW, [make_event(), make_event()]), (NOW + day, [make_event()])])
    assert counts(report) == (3, 0, 0, 0)
    assert [r.recorded_at for r in ledger.log.read()] == [NOW, NOW, NOW + day]


def test_events_the_ledger_builds_are_idempotent(ledger: Ledger) -> None:
    anna = ledger.subject_id("cowrite", email=ANNA)
    event = Event("SubjectErased", str(uuid.uuid4()), "cowrite", anna, NOW, NOW, "ledger",
                  "system:retention-sweep", {"reason": "inactivity", "policy": "cowrite",
                  "policy_hash": "0" * 64, "keys_shredded": ["profile"], "evidence": []})
    assert ledger.record(event).status == "accepted"
    assert ledger.record(event).status == "duplicate"
    assert ledger.log.head().position == 1


def test_pseudonyms_are_per_controller(ledger: Ledger) -> None:
    assert ledger.subject_id("cowrite", email=ANNA) == ledger.subject_id("cowrite", email=ANNA)
    assert ledger.subject_id("cowrite", email=ANNA) != ledger.subject_id("coegi", email=ANNA)
    with pytest.raises(UsageError, match="unknown controller"):
        ledger.subject_id("acme", email=ANNA)


# what a crashed writer left is settled at the next open ---------------------------------------
def test_opening_completes_recorded_effects_and_drops_unrecorded_ones(
        ledger: Ledger, open_ledger: OpenLedger) -> None:
    ledger.record(make_event())
    anna = ledger.subject_id("cowrite", email=ANNA)
    recorded = ledger.log.read().__next__().event_id
    vault = ledger.vault
    vault.record_effects([PendingEffect(recorded, "cowrite", anna, "erase", ("profile",)),
                          PendingEffect(str(uuid.uuid4()), "cowrite", anna, "pseudonymise")])
    reopened = open_ledger(ledger.log, vault)  # type: ignore[arg-type]
    assert vault.pending_effects() == []
    assert [(t.category, t.event_id) for t in vault.tombstones()] == [("profile", recorded)]
    assert reopened.settle_effects() == EffectsDone()
    assert vault.live_keys([("cowrite", anna)]) == []  # erased, and never sealed


def test_opening_keeps_the_pending_keys_the_log_uses_and_destroys_orphans(
        ledger: Ledger, open_ledger: OpenLedger) -> None:
    ledger.record(make_event())
    anna = ledger.subject_id("cowrite", email=ANNA)
    bob = ledger.subject_id("cowrite", email="bob@example.se")
    in_log = next(ledger.log.read()).event_id
    vault = ledger.vault
    # A writer handed out keys and crashed: one key's event reached the log, one's did not.
    vault.data_keys({("cowrite", anna, "bookkeeping"), ("cowrite", bob, "profile")},
                    {("cowrite", anna, "bookkeeping"): [in_log],
                     ("cowrite", bob, "profile"): [str(uuid.uuid4())]})
    open_ledger(ledger.log, vault)  # type: ignore[arg-type]
    assert vault.pending_keys() == {}
    assert {(k.subject, k.category) for k in vault.live_keys([("cowrite", anna), ("cowrite", bob)])} \
        == {(anna, "profile"), (anna, "bookkeeping")}
    assert vault.data_keys({("cowrite", bob, "profile")})[("cowrite", bob, "profile")].generation == 2


def test_expired_dead_letters_are_purged_with_their_keys(ledger: Ledger) -> None:
    ledger.publish([b"not json\n"], origin="march.jsonl")
    ledger.clock = FixedClock(parse_timestamp("2026-04-02T00:00:00Z"))
    ledger.publish([b"[1]\n"], origin="april.jsonl")
    assert ledger.vault.secret_names("dead-letters/") == ["dead-letters/2026-03", "dead-letters/2026-04"]
    report = ledger.dead_letters.purge(parse_timestamp("2026-04-01T00:00:00Z"))
    assert (report.entries, report.keys) == (1, 1)
    assert [e["origin"] for e in ledger.dead_letters.read()] == ["april.jsonl"]
    assert ledger.vault.secret_names("dead-letters/") == ["dead-letters/2026-04"]
