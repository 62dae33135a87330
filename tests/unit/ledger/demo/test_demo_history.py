"""The demo history generator: deterministic, schema-true, realistic enough for the retention
policies to have work, and free of personal data outside ``subject`` and ``pii``."""

from __future__ import annotations

import hashlib
import itertools
import json
import re
import tracemalloc
from collections import Counter, defaultdict
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest

from ledger.contracts.schemas import SchemaRegistry
from ledger.demo.history import (
    NOTICE_SHA256,
    DemoBatch,
    DemoPerson,
    demo_people,
    generate_history,
    iter_events,
)
from ledger.domain.intake import Intake
from ledger.domain.timeutil import parse_timestamp, to_micros
from ledger.domain.vocabulary import (
    ACTIVITY_TYPES,
    EVENT_TYPES,
    FIELD_VOCABULARIES,
    NOTICE_TYPES,
    PURPOSES,
    SWEEP_TYPES,
)

SUBJECTS, SEED = 400, 7
START, END = date(2021, 1, 1), date(2026, 11, 1)
SCHEMA_DIR = Path(__file__).resolve().parents[4] / "schemas"
ENVELOPE = {"type", "event_id", "controller", "occurred_at", "source", "actor", "subject", "pii"}
TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z")
PURPOSE_FIELDS = {("ConsentGiven", "purpose"), ("ConsentWithdrawn", "purpose"),
                  ("ObjectionRaised", "purpose")}


@pytest.fixture(scope="module")
def batches() -> list[DemoBatch]:
    return list(generate_history(SUBJECTS, SEED, start=START, end=END))


@pytest.fixture(scope="module")
def events(batches: list[DemoBatch]) -> list[dict[str, Any]]:
    return [e for b in batches for e in b.events]


@pytest.fixture(scope="module")
def people() -> list[DemoPerson]:
    return demo_people(SUBJECTS, SEED)


def _schemas() -> dict[str, tuple[set[str], set[str], dict[str, Any]]]:
    """type -> (all body fields, required body fields, field types), from the v1 .avsc files."""
    out = {}
    for path in SCHEMA_DIR.glob("consent_ledger.*.v1.avsc"):
        schema = json.loads(path.read_text())
        fields = [f for f in schema["fields"] if f["name"] != "envelope"]
        required = {
            f["name"] for f in fields
            if not (isinstance(f["type"], list) and "null" in f["type"]) and "default" not in f
        }
        types = {f["name"]: f["type"] for f in fields}
        out[schema["name"]] = (set(types), required, types)
    return out


def _when(ts: str) -> datetime:
    return datetime.fromisoformat(ts)


def _who(event: dict[str, Any]) -> tuple[str, str, str]:
    (kind, value), = event["subject"].items()
    return event["controller"], kind, value.strip().lower() if kind == "email" else value


def test_same_seed_same_history_other_seed_another() -> None:
    def run(seed: int) -> list[tuple[datetime, list[dict[str, Any]]]]:
        return [(b.recorded_at, b.events) for b in generate_history(60, seed)]

    first = run(3)
    assert first == run(3)
    other = run(4)
    assert other != first
    ids = {e["event_id"] for _, es in first for e in es}
    assert not ids & {e["event_id"] for _, es in other for e in es}
    assert demo_people(60, 3) == demo_people(60, 3) != demo_people(60, 4)


def test_iter_events_flattens_the_batches(events: list[dict[str, Any]]) -> None:
    assert list(iter_events(SUBJECTS, SEED, start=START, end=END)) == events


def test_batches_are_in_strictly_increasing_ledger_clock_order(batches: list[DemoBatch]) -> None:
    assert batches
    clocks = [b.recorded_at for b in batches]
    assert all(c.tzinfo is not None and c.utcoffset() == timedelta(0) for c in clocks)
    assert all(a < b for a, b in itertools.pairwise(clocks))
    assert all(b.events for b in batches)  # empty days yield no batch
    assert clocks[0] >= datetime(2021, 1, 1, tzinfo=UTC)
    assert clocks[-1] < datetime(2026, 11, 1, tzinfo=UTC)
    # The history spans the years, not just a burst.
    assert clocks[-1] - clocks[0] > timedelta(days=5 * 365)


def test_events_occur_before_they_are_recorded(batches: list[DemoBatch]) -> None:
    for b in batches:
        times = [e["occurred_at"] for e in b.events]
        assert times == sorted(times)  # a batch is in occurred_at order
        for ts in times:
            assert TIMESTAMP.fullmatch(ts), ts
            assert _when(ts) <= b.recorded_at


def test_late_arrivals_exist(batches: list[DemoBatch]) -> None:
    late = Counter(
        e["type"] for b in batches for e in b.events
        if _when(e["occurred_at"]).date() < b.recorded_at.date()
    )
    assert late["InvoiceUsageRecorded"] > 0  # billing exports arrive days later
    assert late["SubjectRegistered"] > 0  # weekly CRM imports
    # So log order and event-time order differ for some subjects.
    last_seen: dict[tuple[str, str, str], str] = {}
    out_of_order = 0
    for b in batches:
        for e in b.events:
            who = _who(e)
            if who in last_seen and e["occurred_at"] < last_seen[who]:
                out_of_order += 1
            last_seen[who] = max(last_seen.get(who, ""), e["occurred_at"])
    assert out_of_order > 0


def test_every_event_matches_its_schema(events: list[dict[str, Any]]) -> None:
    schemas = _schemas()
    ids = set()
    for e in events:
        assert e["type"] in schemas, e["type"]
        fields, required, types = schemas[e["type"]]
        keys = set(e)
        allowed = ENVELOPE | fields
        assert keys <= allowed, (e["type"], keys - allowed)
        assert required <= keys, (e["type"], required - keys)
        assert ENVELOPE - {"pii"} <= keys
        assert "recorded_at" not in e
        for name in fields & keys:
            value, kind = e[name], types[name]
            if kind == "long":
                assert isinstance(value, int) and not isinstance(value, bool), (e["type"], name)
            elif isinstance(kind, dict) and kind.get("type") == "array":
                assert isinstance(value, list) and all(isinstance(v, str) for v in value)
            else:
                assert isinstance(value, str) and value, (e["type"], name)
        uid = UUID(e["event_id"])
        assert uid.version == 4 and str(uid) == e["event_id"]
        ids.add(e["event_id"])
        assert e["controller"] in ("coegi", "cowrite")
        assert re.fullmatch(r"subject|staff:[\w.-]+|system:[\w.-]+", e["actor"])
        assert isinstance(e["subject"], dict) and len(e["subject"]) == 1
        assert set(e["subject"]) <= {"email", "account"}
        if "pii" in e:
            pii = e["pii"]
            assert pii and all(isinstance(k, str) and isinstance(v, str) for k, v in pii.items())
        json.dumps(e)  # plain JSON
    assert len(ids) == len(events)


def test_every_event_passes_the_ledger_intake_unchanged(batches: list[DemoBatch]) -> None:
    """Accepted, and nothing lost or altered on the way: the draft holds every field as sent
    (occurred_at as microseconds, the raw account_ref moved out of the body)."""
    intake = Intake(SchemaRegistry.load(), ["coegi", "cowrite"])
    for b in batches:
        now = to_micros(b.recorded_at)
        for e in b.events:
            draft = intake.validate(e, now)
            assert (draft.type, draft.event_id, draft.controller, draft.source, draft.actor) == \
                (e["type"], e["event_id"], e["controller"], e["source"], e["actor"])
            assert draft.occurred_at == parse_timestamp(e["occurred_at"])
            [(kind, value)] = e["subject"].items()
            assert (draft.identifier, draft.subject_id) == ((kind, value), None)
            assert draft.pii == e.get("pii")
            sent = {k: v for k, v in e.items() if k not in ENVELOPE}
            assert sent.keys() <= draft.body.keys(), (e["type"], sent.keys() - draft.body.keys())
            if e["type"] == "SubjectRegistered" and "account_ref" in sent:
                assert draft.account_ref == sent.pop("account_ref")
                assert draft.body["account_ref"] is None
            assert {k: draft.body[k] for k in sent} == sent, e["type"]


def test_vocabulary_values_are_valid(events: list[dict[str, Any]]) -> None:
    assert not SWEEP_TYPES & {e["type"] for e in events}
    for e in events:
        assert e["type"] in EVENT_TYPES
        for (event_type, field), allowed in FIELD_VOCABULARIES.items():
            if e["type"] == event_type and field in e:
                assert e[field] in allowed, (event_type, field, e[field])
        for event_type, field in PURPOSE_FIELDS:
            if e["type"] == event_type:
                assert e[field] in PURPOSES, (event_type, e[field])


def test_both_controllers_and_most_event_types_occur(events: list[dict[str, Any]]) -> None:
    by_controller: dict[str, Counter[str]] = defaultdict(Counter)
    for e in events:
        by_controller[e["controller"]][e["type"]] += 1
    assert set(by_controller) == {"coegi", "cowrite"}
    for counts in by_controller.values():
        assert len(counts) >= 12, counts
    # NoticePublished is not a producer event: the demo publishes its notices separately.
    assert len({e["type"] for e in events}) == len(EVENT_TYPES) - len(SWEEP_TYPES) - len(NOTICE_TYPES)
    per_subject = len(events) / SUBJECTS
    assert 15 <= per_subject <= 45, per_subject


def test_consents_carry_proof_of_the_notice_shown(events: list[dict[str, Any]]) -> None:
    consents = [e for e in events if e["type"] == "ConsentGiven"]
    assert consents
    versions: dict[str, set[str]] = defaultdict(set)
    for e in consents:
        key = (e["notice_id"], e["notice_version"], e["language"])
        assert e["notice_sha256"] == NOTICE_SHA256[key]
        assert re.fullmatch(r"[0-9a-f]{64}", e["notice_sha256"])
        assert e["channel"] in ("web", "app")
        versions[e["notice_id"]].add(e["notice_version"])
    assert max(len(v) for v in versions.values()) >= 2  # notices are revised over the years
    buttons = Counter(e["ui_action"] for e in consents)
    assert buttons["Skicka"] > len(consents) / 2
    assert Counter(e["language"] for e in consents)["en"] > 0
    # The notice texts hash to what the events claim.
    from ledger.demo import history as demo_history

    for key, text in demo_history._NOTICE_TEXTS.items():
        assert hashlib.sha256(text.encode()).hexdigest() == NOTICE_SHA256[key]


def _last_activity(events: list[dict[str, Any]]) -> dict[tuple[str, str, str], datetime]:
    last: dict[tuple[str, str, str], datetime] = {}
    for e in events:
        if e["type"] in ACTIVITY_TYPES:
            who = _who(e)
            at = _when(e["occurred_at"])
            if who not in last or at > last[who]:
                last[who] = at
    return last


def test_people_go_inactive_long_enough_for_the_policies(events: list[dict[str, Any]]) -> None:
    end = datetime(2026, 11, 1, tzinfo=UTC)
    last = _last_activity(events)
    cowrite = [at for (c, _, _), at in last.items() if c == "cowrite"]
    coegi = [at for (c, _, _), at in last.items() if c == "coegi"]
    # Cowrite: accounts unused for 6 months are deleted; Coegi: 3 years of inactivity.
    assert sum(at < end - timedelta(days=183) for at in cowrite) > len(cowrite) / 4
    assert sum(at < end - timedelta(days=3 * 365) for at in coegi) > len(coegi) / 10
    # ...and some are still active at the end.
    assert sum(at > end - timedelta(days=60) for at in cowrite + coegi) > 0


def test_some_users_come_back_after_a_long_pause(events: list[dict[str, Any]]) -> None:
    gaps = defaultdict(list)
    for e in events:
        if e["type"] in ACTIVITY_TYPES and e["controller"] == "cowrite":
            gaps[_who(e)].append(_when(e["occurred_at"]))
    longest = [max((b - a for a, b in itertools.pairwise(sorted(ts))), default=timedelta(0))
               for ts in gaps.values()]
    assert any(g > timedelta(days=183) for g in longest)  # back after deletion
    assert any(timedelta(days=30) < g < timedelta(days=183) for g in longest)  # a pause


def test_rights_requests_are_raised_and_answered(events: list[dict[str, Any]]) -> None:
    requested = {e["request_id"]: e for e in events if e["type"] == "RightsRequested"}
    closed = [e for e in events if e["type"] == "RightsRequestClosed"]
    rights = Counter((e["controller"], e["right"]) for e in requested.values())
    assert rights[("cowrite", "erasure")] > 0
    assert sum(n for (_, right), n in rights.items() if right == "erasure") >= 3
    assert sum(n for (_, right), n in rights.items() if right in ("access", "portability")) > 0
    assert closed
    for e in closed:
        request = requested[e["request_id"]]
        assert request["controller"] == e["controller"] and _who(request) == _who(e)
        assert request["right"] != "erasure"  # the sweep answers those
        assert request["occurred_at"] < e["occurred_at"]
    erased_at = {_who(e): e["occurred_at"] for e in requested.values() if e["right"] == "erasure"}
    # After an erasure request the person stops; only the last invoice is still settled.
    for e in events:
        if _who(e) in erased_at and e["occurred_at"] > erased_at[_who(e)]:
            assert e["type"] in ("InvoiceUsageRecorded", "RightsRequestClosed"), e["type"]


def test_coaches_and_invoices_name_organisations(events: list[dict[str, Any]]) -> None:
    shared = [e for e in events if e["type"] == "DataShared"]
    coach = [e for e in shared if e["recipient_kind"] == "coach"]
    assert coach and all(e["controller"] == "cowrite" and e["basis"] == "consent" for e in coach)
    assert all(e["pii"]["coach_email"].endswith(".example.org") for e in coach)
    assert {e["recipient_kind"] for e in shared if e["controller"] == "coegi"} >= {
        "group_company", "customer"}
    invoices = [e for e in events if e["type"] == "InvoiceUsageRecorded"]
    assert {e["controller"] for e in invoices} == {"coegi", "cowrite"}
    for e in invoices:
        assert e["units"] > 0 and e["amount_minor"] > 0 and e["currency"] == "SEK"
        assert e["source"] == "billing" and e["actor"] == "system:billing"
    cowrite_billed = {e["billed_party"] for e in invoices if e["controller"] == "cowrite"}
    assert cowrite_billed <= {e["recipient"] for e in coach}
    registers = Counter(e["origin"] for e in events if e["type"] == "PersonalDataUpdated")
    assert registers["register:SPAR"] > 0 and registers["register:Bolagsverket"] > 0
    unsubscribed = [e for e in events if e["type"] == "Unsubscribed"]
    assert any(e["list"] == "*" and e["channel"] == "*" for e in unsubscribed)
    assert {e["via"] for e in unsubscribed} >= {"link", "settings"}


def test_no_personal_data_outside_subject_and_pii(
    events: list[dict[str, Any]], people: list[DemoPerson]
) -> None:
    needles = set()
    for p in people:
        needles |= {p.email.strip().lower(), p.name.lower(), p.phone, p.phone.replace(" ", "")}
    values: set[str] = set()
    for e in events:
        assert UUID(e["event_id"]) and TIMESTAMP.fullmatch(e["occurred_at"])  # no room for names
        for key, value in e.items():
            if key in ("subject", "pii", "account_ref", "event_id", "occurred_at"):
                continue
            for v in value if isinstance(value, list) else [value]:
                if isinstance(v, str):
                    values.add(v.lower())
    blob = "\n".join(sorted(values))
    assert "@" not in blob and "+46" not in blob
    for needle in needles:
        assert needle not in blob, needle


def test_subjects_are_the_demo_people(
    events: list[dict[str, Any]], people: list[DemoPerson]
) -> None:
    emails = {p.email.strip().lower() for p in people}
    accounts = {p.account for p in people if p.account}
    seen_emails, seen_accounts = set(), set()
    raw_variants = set()
    for e in events:
        (kind, value), = e["subject"].items()
        if kind == "email":
            assert value.strip().lower() in emails
            seen_emails.add(value.strip().lower())
            raw_variants.add(value != value.strip().lower())
        else:
            assert value in accounts and e["controller"] == "cowrite"
            seen_accounts.add(value)
        if e["type"] == "SubjectRegistered" and e["controller"] == "cowrite":
            assert e["account_ref"] in accounts
    assert seen_accounts and len(seen_emails) > SUBJECTS / 2
    assert raw_variants == {True, False}  # mixed case and whitespace reach the ledger


def test_demo_people_are_unique_and_swedish(people: list[DemoPerson]) -> None:
    assert len(people) == SUBJECTS
    assert len({p.email.strip().lower() for p in people}) == SUBJECTS
    assert len({p.phone for p in people}) == SUBJECTS
    assert len({p.name for p in people}) > SUBJECTS * 0.8
    assert {p.controller for p in people} == {"coegi", "cowrite"}
    assert all((p.account is not None) == (p.controller == "cowrite") for p in people)
    assert any(ch in p.name for p in people for ch in "åäöÅÄÖ")
    for p in people:
        assert re.fullmatch(r"\+46 7\d \d{3} \d\d \d\d", p.phone)
        assert p.email.lower().rsplit("@", 1)[1] in ("example.se", "example.com", "example.org")
    assert any(p.email != p.email.lower() for p in people)


def test_a_custom_span(people: list[DemoPerson]) -> None:
    start, end = date(2024, 3, 1), date(2024, 6, 1)
    got = list(generate_history(50, 1, start=start, end=end))
    assert got
    lo = datetime(2024, 3, 1, tzinfo=UTC)
    hi = datetime(2024, 6, 1, tzinfo=UTC)
    for b in got:
        assert lo <= b.recorded_at < hi
        assert all(lo <= _when(e["occurred_at"]) for e in b.events)


@pytest.mark.slow
def test_the_history_streams_in_bounded_memory() -> None:
    """The module's promise: "only a few days of events are ever held in memory". Streaming
    500 subjects' six years (about 16,000 events, some 12 MB as a list) peaks far below what
    holding them would take; collecting the events first would fail this."""
    tracemalloc.start()
    try:
        n = sum(1 for _ in iter_events(500, 11))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert n > 500 * 15
    assert peak < 3 * 2**20, f"{peak / 2**20:.1f} MiB peak for {n} events"
