"""Publishing through the service layer into a real embedded log."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ledger.adapters.dead_letters import safe_reason
from ledger.app.service import Ledger
from ledger.domain.clock import FixedClock
from ledger.domain.errors import ClockError, InvalidEvent, KeyUnavailable
from ledger.domain.timeutil import parse_timestamp
from tests.conftest import BODIES, make_event
from tests.unit.ledger.domain.test_intake import BAD_LINES, HOSTILE_BUT_VALID


def lines(events: list[dict]) -> list[bytes]:
    return [json.dumps(e, ensure_ascii=False).encode() + b"\n" for e in events]


@pytest.mark.parametrize("event_type", sorted(BODIES))
def test_every_type_round_trips_json_to_log_and_back(ledger: Ledger, event_type: str) -> None:
    sent = make_event(event_type)
    outcome = ledger.record(sent)
    assert outcome.status == "accepted"
    (record, event), = list(ledger.events())
    assert record.position == outcome.position and record.event_id == sent["event_id"]
    assert event.type == event_type
    assert event.subject == ledger.subject_id("cowrite", email="anna.svensson@example.se")
    assert event.recorded_at == ledger.clock.now()
    assert event.occurred_at == parse_timestamp(sent["occurred_at"])
    for name, value in BODIES[event_type].items():
        if name == "account_ref":
            assert event.body[name] == ledger.subject_id("cowrite", account="cw-000042")
        elif name != "notice_sha256" or value is not None:
            assert event.body[name] == value
    personal = ledger.personal_data(event)
    assert personal is not None
    assert personal["subject"] == {"email": "Anna.Svensson@example.se"}
    assert personal["pii"] == sent["pii"]
    if event_type == "SubjectRegistered":
        assert personal["account_ref"] == "cw-000042"
    assert b"Anna" not in record.payload and b"example.se" not in record.payload


def test_publishing_the_same_file_twice_appends_nothing(ledger: Ledger) -> None:
    batch = lines([make_event(t) for t in sorted(BODIES)] * 2)  # duplicates inside, too
    first = ledger.publish(batch)
    assert first.as_dict() == {"accepted": len(BODIES), "duplicates": len(BODIES), "rejected": 0, "conflicts": 0}
    head = ledger.log.head()
    ledger.clock = FixedClock(ledger.clock.now() + 1)
    second = ledger.publish(batch)
    assert second.as_dict() == {"accepted": 0, "duplicates": 2 * len(BODIES), "rejected": 0, "conflicts": 0}
    assert ledger.log.head() == head


def test_bad_lines_never_stop_the_good_ones(ledger: Ledger) -> None:
    good = [make_event(t) for t in sorted(BODIES)]
    mixed: list[bytes] = []
    expected_bad_lines = []
    for i, (_, raw, _) in enumerate(BAD_LINES):
        mixed.append(raw + b"\n")
        expected_bad_lines.append(len(mixed))
        if i < len(good):
            mixed.extend(lines([good[i]]))
    report = ledger.publish(mixed, origin="mixed.jsonl")
    assert report.accepted == len(good)
    assert report.rejected == len(BAD_LINES)
    letters = list(ledger.dead_letters.read())
    assert [e["line"] for e in letters] == expected_bad_lines
    for entry, (_, raw, reason) in zip(letters, BAD_LINES, strict=False):
        # The stored reason never quotes a value of the input (issue 9 row 5).
        assert safe_reason(reason, raw) in entry["reason"] and entry["origin"] == "mixed.jsonl"
    # The rejected input is kept, encrypted: readable only through the vault.
    decrypted = list(ledger.dead_letters.read(decrypt=True))
    assert decrypted[0]["input"] == "not json"
    assert b"Anna.Svensson" not in ledger.dead_letters.path.read_bytes()


@pytest.mark.parametrize("text", HOSTILE_BUT_VALID)
def test_exotic_strings_round_trip_exactly_through_the_log(ledger: Ledger, text: str) -> None:
    ledger.record(make_event("ServiceUsed", feature=text, pii={"note": text}))
    (_, event), = list(ledger.events())
    assert event.body["feature"] == text
    assert ledger.personal_data(event)["pii"] == {"note": text}  # type: ignore[index]


def test_record_raises_invalid_event_naming_the_field(ledger: Ledger) -> None:
    with pytest.raises(InvalidEvent, match="controller: unknown controller"):
        ledger.record(make_event(controller="acme"))
    assert list(ledger.events()) == []


def test_an_unknown_controller_becomes_known_after_it_is_added(ledger: Ledger, data_dir: Path) -> None:
    assert ledger.add_controller("acme", "cowrite")
    assert not ledger.add_controller("acme")
    ledger.record(make_event(controller="acme"))
    with Ledger.open(data_dir) as reopened:
        assert "acme" in reopened.config.controllers
        # each controller has its own secret: the same person has another pseudonym
        assert reopened.subject_id("acme", email="a@example.se") != reopened.subject_id(
            "cowrite", email="a@example.se")


def test_the_clock_never_moves_backwards(ledger: Ledger) -> None:
    ledger.record(make_event())
    ledger.clock = FixedClock(ledger.clock.now() - 1)
    with pytest.raises(ClockError, match="behind the log"):
        ledger.record(make_event())


def test_a_subject_given_by_pseudonym_is_kept(ledger: Ledger) -> None:
    pid = ledger.subject_id("cowrite", email="x@example.se")
    ledger.record(make_event(subject={"id": pid}, pii=...))
    (_, event), = list(ledger.events())
    assert event.subject == pid and event.pii is None


def test_shredded_subjects_personal_data_cannot_be_read(ledger: Ledger) -> None:
    ledger.record(make_event())
    (_, event), = list(ledger.events())
    ledger.vault.shred(event.controller, event.subject, ["profile"])
    with pytest.raises(KeyUnavailable):
        ledger.personal_data(event)


def test_bookkeeping_events_use_the_bookkeeping_key(ledger: Ledger) -> None:
    ledger.record(make_event("InvoiceUsageRecorded"))
    ledger.record(make_event("LoggedIn"))
    invoice, login = [e for _, e in ledger.events()]
    ledger.vault.shred(login.controller, login.subject, ["profile"])
    assert ledger.personal_data(invoice)["pii"]["name"] == "Anna Svensson"  # type: ignore[index]
    with pytest.raises(KeyUnavailable):
        ledger.personal_data(login)


def test_parallel_publishing_keeps_input_order_and_rejects(ledger: Ledger, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import ledger.app.service as service

    monkeypatch.setattr(service, "CHUNK", 50)
    monkeypatch.setattr(service, "PACKAGE", 100)  # 6 packages: past PARALLEL_AFTER
    used = []
    original = service.Ledger._prepare_in_workers

    def spy(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        used.append(True)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(service.Ledger, "_prepare_in_workers", spy)
    events = [make_event("LoggedIn", subject={"email": f"p{i % 37}@example.se"}) for i in range(600)]
    raw = lines(events)
    raw[123] = b"{not json\n"
    report = ledger.publish(raw, workers=2)
    assert report.as_dict() == {"accepted": 599, "duplicates": 0, "rejected": 1, "conflicts": 0}
    assert used, "the worker processes were not used"
    assert report.rejects[0].line == 124
    stored = [r.event_id for r in ledger.log.read()]
    assert stored == [e["event_id"] for i, e in enumerate(events) if i != 123]
    # workers created the keys in the shared vault; every blob opens in this process
    for _, event in list(ledger.events())[::50]:
        assert ledger.personal_data(event)["subject"]["email"].startswith("p")  # type: ignore[index]
    again = ledger.publish(raw, workers=2)
    assert again.as_dict() == {"accepted": 0, "duplicates": 599, "rejected": 1, "conflicts": 0}
