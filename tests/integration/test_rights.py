"""permits and the register extract end to end through the Python API: events recorded with
``ledger.record``, projected, asked. Pseudonymisation and erasure are simulated the way the
sweep does them: a sweep event in the log plus sealing / shredding the subject's keys."""

from __future__ import annotations

import json
import sys
import types
import uuid
from dataclasses import dataclass
from typing import Any

import pytest

from ledger.app.permits import UnknownSubject
from ledger.app.service import Ledger
from ledger.domain.errors import InvalidSubject, UsageError
from ledger.domain.events import Event
from ledger.domain.subjects import SubjectSelector
from ledger.domain.timeutil import parse_timestamp
from tests.conftest import ANNA, make_event

ANNA_LOWER = ANNA.lower()


def record(ledger: Ledger, event_type: str, day: str, **fields: Any) -> None:
    ledger.record(make_event(event_type, occurred_at=f"{day}T09:00:00Z", **fields))


def sweep(ledger: Ledger, subject: str, event_type: str, day: str, **body: Any) -> Event:
    event = Event(event_type, str(uuid.uuid4()), "cowrite", subject, parse_timestamp(day),
                  ledger.clock.now(), "ledger", "system:sweep", body)
    ledger.record(event)
    return event


def pseudonymise(ledger: Ledger, subject: str, day: str) -> Event:
    event = sweep(ledger, subject, "SubjectPseudonymised", day, reason="erasure requested",
                  erase_due_at=parse_timestamp("2026-05-01"), policy="cowrite",
                  policy_hash="0" * 64, evidence=[])
    ledger.vault.seal("cowrite", subject)
    return event


def erase(ledger: Ledger, subject: str, day: str) -> Event:
    event = sweep(ledger, subject, "SubjectErased", day, reason="inactivity", policy="cowrite",
                  policy_hash="0" * 64, keys_shredded=["profile", "bookkeeping"], evidence=[])
    ledger.vault.shred("cowrite", subject, ["profile", "bookkeeping"])
    return event


@pytest.fixture
def history(ledger: Ledger, anna: str) -> str:
    """Anna: registered, subscribed to the weekly newsletter by e-mail, consented to profiling
    on a "Skicka" button, shared with her coach, asked for access (answered) and portability
    (open)."""
    record(ledger, "SubjectRegistered", "2026-01-10", pii={"name": "Anna Svensson"})
    record(ledger, "NewsletterSubscribed", "2026-01-11", list="weekly", channel="email")
    record(ledger, "ConsentGiven", "2026-01-12", purpose="profiling", notice_id="prof-terms",
           notice_version="2", notice_sha256="b" * 64)
    record(ledger, "DataShared", "2026-01-13", pii=...)
    record(ledger, "RightsRequested", "2026-01-14", request_id="rq-access", right="access", pii=...)
    record(ledger, "RightsRequestClosed", "2026-01-20", request_id="rq-access",
           outcome="fulfilled", pii=...)
    record(ledger, "RightsRequested", "2026-02-01", request_id="rq-port", right="portability",
           pii=...)
    record(ledger, "PersonalDataUpdated", "2026-02-02", fields=["phone"],
           pii={"phone": "+46 70 999 99 99"})
    return anna


def ask(ledger: Ledger, purpose: str, channel: str | None = None, **kw: Any) -> tuple[bool, str]:
    answer = ledger.permits(purpose, SubjectSelector.email("cowrite", ANNA), channel=channel, **kw)
    return answer.permitted, answer.reason


def test_permits_follows_the_log(ledger: Ledger, history: str) -> None:
    assert ask(ledger, "newsletter", "email")[0]
    assert not ask(ledger, "newsletter", "sms")[0]
    assert ask(ledger, "marketing", "email")[0]
    assert ask(ledger, "profiling")[0]
    ok, reason = ask(ledger, "coach_sharing")
    assert not ok and reason == "no consent to coach_sharing recorded"
    assert ask(ledger, "service")[0] and ask(ledger, "invoicing")[0]

    record(ledger, "Unsubscribed", "2026-03-01", list="*", channel="*", via="link")
    ok, reason = ask(ledger, "newsletter", "email")
    assert not ok and "Unsubscribed on 2026-03-01" in reason
    assert not ask(ledger, "marketing", "sms")[0]

    record(ledger, "NewsletterSubscribed", "2026-03-02", list="offers", channel="sms")
    assert ask(ledger, "newsletter", "sms")[0] and ask(ledger, "marketing", "sms")[0]
    assert not ask(ledger, "marketing", "email")[0]

    record(ledger, "ConsentWithdrawn", "2026-03-03", purpose="profiling", via="settings")
    ok, reason = ask(ledger, "profiling")
    assert not ok and "ConsentWithdrawn on 2026-03-03" in reason
    record(ledger, "ConsentGiven", "2026-03-04", purpose="profiling")
    assert ask(ledger, "profiling")[0]

    record(ledger, "ObjectionRaised", "2026-03-04", purpose="marketing", via="email")
    ok, reason = ask(ledger, "marketing", "sms")
    assert not ok and reason.startswith("objection to marketing: ObjectionRaised on 2026-03-04")


def test_restriction_allows_service_and_invoicing_only(ledger: Ledger, history: str) -> None:
    record(ledger, "RightsRequested", "2026-03-01", request_id="rq-r", right="restriction",
           pii=...)
    ok, reason = ask(ledger, "newsletter", "email")
    assert not ok and "restricted" in reason and "2026-03-01" in reason
    assert ask(ledger, "service")[0] and ask(ledger, "invoicing")[0]
    record(ledger, "RightsRequestClosed", "2026-03-02", request_id="rq-r", outcome="refused",
           pii=...)
    assert ask(ledger, "newsletter", "email")[0]


def test_pseudonymised_and_erased_subjects_are_never_permitted(ledger: Ledger, history: str) -> None:
    event = pseudonymise(ledger, history, "2026-03-01")
    ok, reason = ask(ledger, "service")
    assert not ok and event.event_id in reason and "2026-03-01" in reason
    erase(ledger, history, "2026-05-01")
    answer = ledger.permits("invoicing", SubjectSelector.pseudonym(history))  # the one controller is found
    assert answer.controller == "cowrite"
    assert not answer.permitted and answer.permission.rule == "erased"


def test_as_of_answers_from_what_was_known_then(ledger: Ledger, history: str) -> None:
    ledger.clock.set(parse_timestamp("2026-04-01"))  # type: ignore[attr-defined]
    # Occurred before the subscription was known, recorded later: an as-of-March answer
    # must not see it.
    record(ledger, "Unsubscribed", "2026-03-01", list="*", channel="*", via="link")
    assert not ask(ledger, "newsletter", "email")[0]
    before = ledger.permits("newsletter", SubjectSelector.pseudonym(history, "cowrite"),
                            channel="email", as_of=parse_timestamp("2026-03-10"))
    assert before.permitted and before.as_dict()["as_of"].startswith("2026-03-10")


def test_usage_errors(ledger: Ledger, history: str) -> None:
    with pytest.raises(UsageError, match="unknown purpose 'matching' for policy 'cowrite'"):
        ask(ledger, "matching")  # coegi has matching; cowrite does not
    with pytest.raises(UsageError, match=r"^channel: unknown channel"):  # no CLI flag in Python
        ask(ledger, "marketing", "pigeon")
    with pytest.raises(UnknownSubject, match="unknown subject"):
        ledger.permits("service", SubjectSelector.email("cowrite", "nobody@example.se"))
    with pytest.raises(UnknownSubject, match="unknown subject"):
        ledger.permits("service", SubjectSelector.pseudonym("f" * 64))
    with pytest.raises(InvalidSubject, match="needs its controller"):
        ledger.permits("service", SubjectSelector(email_address=ANNA))
    with pytest.raises(UsageError, match="unknown controller"):
        ledger.permits("service", SubjectSelector.email("acme", ANNA))


# --- the register extract --------------------------------------------------------------------


def export(ledger: Ledger, **kw: Any) -> dict[str, Any]:
    return ledger.export_subject(SubjectSelector.email("cowrite", ANNA), **kw)


def test_export_holds_decrypted_data_and_evidence(ledger: Ledger, history: str) -> None:
    extract = export(ledger)
    json.dumps(extract)  # JSON-ready as returned
    assert extract["subject"] == history and extract["status"]["status"] == "active"
    personal = extract["personal_data"]
    assert personal["available"] and ANNA in personal["identifiers"]["email"]
    assert personal["current"]["name"] == "Anna Svensson"
    assert personal["current"]["phone"] == "+46 70 999 99 99"  # the rectified value
    assert personal["current"]["account_ref"] == "cw-000042"
    first = personal["by_event"][0]
    assert first["type"] == "SubjectRegistered" and first["occurred_at"].startswith("2026-01-10")
    (profiling,) = [c for c in extract["consents"] if c["purpose"] == "profiling"]
    assert (profiling["status"], profiling["notice_id"], profiling["notice_version"],
            profiling["notice_sha256"], profiling["ui_action"], profiling["channel"]) == (
        "granted", "prof-terms", "2", "b" * 64, "Skicka", "web")
    assert profiling["since"].startswith("2026-01-12")
    assert extract["consent_history"][0]["body"]["notice_id"] == "prof-terms"
    assert [(s["list"], s["channel"], s["status"]) for s in extract["subscriptions"]] == [
        ("weekly", "email", "subscribed")]
    assert extract["activity"]["last_activity_at"].startswith("2026-01-12")
    (shared,) = extract["disclosures"]
    assert (shared["recipient"], shared["basis"]) == ("Matchning Norr AB", "consent")
    requests = {r["request_id"]: r for r in extract["rights_requests"]}
    assert requests["rq-access"]["open"] is False and requests["rq-port"]["open"] is True
    assert len(extract["timeline"]) == 8
    # The retention schedule: last activity 2026-01-12 + P6M - P14D = notice due 2026-06-28.
    schedule = extract["retention"]
    assert (schedule["action"], schedule["due_at"][:10], schedule["rule"]) == (
        "keep", "2026-06-28", "active")
    assert schedule["policy"] == "cowrite" and len(schedule["policy_hash"]) == 64


def test_export_of_a_pseudonymised_subject_hides_personal_data_unless_asked(
    ledger: Ledger, history: str
) -> None:
    pseudonymise(ledger, history, "2026-03-01")
    hidden = export(ledger)
    assert hidden["personal_data"]["available"] is False
    assert "pseudonymised on 2026-03-01" in hidden["personal_data"]["reason"]
    text = json.dumps(hidden, ensure_ascii=False)
    assert "Anna" not in text and ANNA_LOWER not in text.lower() and "999 99" not in text
    assert hidden["consents"]  # the pseudonymous facts are still there

    shown = export(ledger, include_pseudonymised=True)
    assert shown["personal_data"]["sealed_keys_used"] is True
    assert "--include-pseudonymised" in shown["personal_data"]["note"]
    assert shown["personal_data"]["current"]["name"] == "Anna Svensson"


def test_export_of_an_erased_subject_says_so_and_shows_nothing_personal(
    ledger: Ledger, history: str
) -> None:
    pseudonymise(ledger, history, "2026-03-01")
    erase(ledger, history, "2026-05-01")
    for flag in (False, True):
        extract = export(ledger, include_pseudonymised=flag)
        assert extract["erased"] is True and extract["status"]["status"] == "erased"
        assert "erased on 2026-05-01" in extract["personal_data"]["reason"]
        text = json.dumps(extract, ensure_ascii=False)
        assert "Anna" not in text and "Matchning" not in text and "999 99" not in text
        assert "consents" not in extract and "timeline" not in extract


def test_export_survives_a_shredded_category(ledger: Ledger, history: str) -> None:
    """A key gone without an erasure event (e.g. a hold ended): that event is listed as
    unreadable, the rest is exported; never a crash."""
    record(ledger, "InvoiceUsageRecorded", "2026-02-03", pii={"name": "Anna Svensson"})
    ledger.vault.shred("cowrite", history, ["bookkeeping"])
    personal = export(ledger)["personal_data"]
    assert [u["type"] for u in personal["unreadable"]] == ["InvoiceUsageRecorded"]
    assert personal["current"]["name"] == "Anna Svensson"


def test_export_unknown_subject_is_a_usage_error(ledger: Ledger, history: str) -> None:
    with pytest.raises(UsageError, match="unknown subject"):
        ledger.export_subject(SubjectSelector.email("cowrite", "nobody@example.se"))
    with pytest.raises(UsageError, match="unknown controller"):
        ledger.export_subject(SubjectSelector.email("acme", ANNA))


@dataclass(frozen=True)
class FakeDecision:
    action: str
    due_at: int | None
    rule: str
    evidence: tuple[str, ...]


def test_export_includes_the_retention_schedule_when_the_hook_exists(
    ledger: Ledger, history: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[str, str, int]] = []

    def subject_decision(ledger: Ledger, controller: str, subject: str, as_of: int) -> FakeDecision:
        calls.append((controller, subject, as_of))
        return FakeDecision("keep", parse_timestamp("2026-06-26"), "active", ("e1",))

    module = types.ModuleType("ledger.app.decisions")
    module.subject_decision = subject_decision  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "ledger.app.decisions", module)
    extract = export(ledger)
    assert calls == [("cowrite", history, ledger.clock.now())]
    assert extract["retention"] == {"action": "keep", "due_at": "2026-06-26T00:00:00.000000Z",
                                    "rule": "active", "evidence": ["e1"]}


def test_subjects_resolve_against_projections_brought_up_to_date(
        ledger: Ledger, history: str, tmp_path: Any) -> None:
    from ledger.app.permits import SubjectRef, resolve_subject_in
    from projections.engine.projector import replay

    # Nothing projected yet: the live projections are caught up first.
    assert resolve_subject_in(ledger, subject=history) == SubjectRef("cowrite", history)
    assert resolve_subject_in(ledger, email=ANNA, controller="cowrite") == SubjectRef("cowrite", history)
    # A file as of before her first event does not know her.
    before = tmp_path / "before.duckdb"
    replay(ledger, parse_timestamp("2000-01-01"), before)
    with pytest.raises(UnknownSubject):
        resolve_subject_in(ledger, before, subject=history)
    assert resolve_subject_in(ledger, before, subject=history, controller="cowrite").controller == "cowrite"
