"""The outbox with a real data directory: what is owed, reports recorded through the log, and
the retention clock counting from delivery (or from a final failure)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from ledger.app.audit_decisions import audit
from ledger.app.decisions import decisions_at
from ledger.app.outbox import MessageClosed, UnknownMessage, delivered, failed, pending
from ledger.app.service import Ledger
from ledger.app.sweep import sweep
from ledger.domain.errors import UsageError
from ledger.domain.events import Event
from ledger.domain.retention.policy import load_policy
from ledger.domain.timeutil import format_day, parse_timestamp
from tests.conftest import make_event

ANNA = "Anna.Svensson@example.se"
COWRITE = load_policy("cowrite")


def build_history(path: Path) -> str:
    """Anna registered 2025-06-01 and last logged in 2026-01-10 (cowrite: notice due
    2026-06-26, erasure 2026-07-10), swept on 2026-06-27 (notice sent); Bo, active, asked for
    an extract, answered 2026-03-05. Returns the notice's message id."""
    Ledger.init(path)
    bo = {"email": "bo@example.se"}
    with Ledger.open(path, now="2026-03-06") as ledger:
        ledger.record_many([
            make_event("SubjectRegistered", occurred_at="2025-06-01T10:00:00Z"),
            make_event("LoggedIn", occurred_at="2026-01-10T10:00:00Z"),
            make_event("SubjectRegistered", occurred_at="2025-06-01T10:00:00Z", subject=bo,
                       pii={"name": "Bo"}),
            make_event("LoggedIn", occurred_at="2026-03-01T09:00:00Z", subject=bo),
            make_event("RightsRequested", occurred_at="2026-03-01T10:00:00Z", pii=..., subject=bo,
                       request_id="rq-1", right="access"),
            make_event("RightsRequestClosed", occurred_at="2026-03-05T10:00:00Z", pii=...,
                       subject=bo, request_id="rq-1", outcome="fulfilled"),
        ])
    with at(path, "2026-06-27") as ledger:
        assert sweep(ledger).appended.get("DeletionNoticeSent") == 1
        (notice,) = pending(ledger, kind="deletion_notice")
        return notice.message_id


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    path = tmp_path_factory.mktemp("outbox") / "d"
    return path, build_history(path)


@pytest.fixture
def data(history: tuple[Path, str], tmp_path: Path) -> tuple[Path, str]:
    shutil.copytree(history[0], tmp_path / "d")
    return tmp_path / "d", history[1]


def at(data: Path, when: str) -> Ledger:
    return Ledger.open(data, now=when)


@pytest.mark.slow
def test_pending_lists_the_notice_and_the_answer_with_the_address(data: tuple[Path, str]) -> None:
    path, notice_id = data
    with at(path, "2026-06-28") as ledger:
        messages = {m.kind: m for m in pending(ledger)}
    assert set(messages) == {"deletion_notice", "extract_ready"}
    notice, answer = messages["deletion_notice"], messages["extract_ready"]
    assert notice.message_id == notice_id and notice.contact == ANNA
    assert notice.clause is not None and "två veckor före radering" in notice.clause
    assert format_day(notice.due_at) == "2026-06-27" and notice.attempts_allowed == 4
    assert answer.contact == "bo@example.se" and answer.request_id == "rq-1"
    assert ANNA not in repr(notice)  # logging a message never writes the address


@pytest.mark.slow
def test_erasure_counts_from_delivery(data: tuple[Path, str]) -> None:
    path, notice_id = data
    with at(path, "2026-07-02") as ledger:
        outcome = delivered(ledger, notice_id, parse_timestamp("2026-07-01"))
        assert outcome.status == "accepted" and outcome.final
        again = delivered(ledger, notice_id, parse_timestamp("2026-07-01"))
        assert again.status == "duplicate" and again.event_id == outcome.event_id
        assert [m.kind for m in pending(ledger)] == ["extract_ready"]
    with at(path, "2026-07-15") as ledger:
        (d,) = [d for d in decisions_at(ledger).decisions if d.action != "keep"]
    # sent 2026-06-27, delivered 2026-07-01: erasure no earlier than 2026-07-15
    assert (d.action, d.rule, format_day(d.due_at)) == ("erase", "inactivity", "2026-07-15")
    with at(path, "2026-07-14") as ledger:
        decision = {x.subject: x for x in decisions_at(ledger).decisions}[d.subject]
        assert (decision.action, format_day(decision.due_at)) == ("keep", "2026-07-15")
        # the sweep agrees: nothing before the delivery's notice period ends, then the erasure
        assert "SubjectErased" not in sweep(ledger).appended
    with at(path, "2026-07-15") as ledger:
        assert sweep(ledger).appended.get("SubjectErased") == 1
        # and the audit re-decides each sweep event with the delivery it knew: all justified
        verdicts = audit(ledger).verdicts
        assert {v.event.type for v in verdicts} == {"DeletionNoticeSent", "SubjectErased"}
        assert all(v.justified for v in verdicts), [v.reason for v in verdicts]


@pytest.mark.slow
def test_the_audit_judges_an_erasure_before_the_delivered_notice_period_ended(
        data: tuple[Path, str]) -> None:
    path, notice_id = data
    with at(path, "2026-07-12") as ledger:
        delivered(ledger, notice_id, parse_timestamp("2026-07-01"))
        subject = next(m.subject for m in pending(ledger, kind="extract_ready"))
        (notice,) = [r for r in ledger.events() if r[1].type == "DeletionNoticeSent"]
        anna = notice[1].subject
        assert anna != subject
        # an erasure recorded by hand on 2026-07-12: due from sending (07-11), not from delivery
        ledger.append_events([Event(
            "SubjectErased", "00000000-0000-4000-8000-0000000000e1", "cowrite", anna,
            parse_timestamp("2026-07-12"), parse_timestamp("2026-07-12"), "ledger",
            "system:retention-sweep",
            {"reason": "inactivity", "policy": "cowrite", "policy_hash": COWRITE.content_hash,
             "keys_shredded": ["profile", "bookkeeping"], "evidence": ["x"]})])
        (verdict,) = [v for v in audit(ledger).verdicts if v.event.type == "SubjectErased"]
    assert not verdict.justified and "notice period" in verdict.reason, verdict.reason


@pytest.mark.slow
def test_a_final_failure_counts_from_the_last_attempt(data: tuple[Path, str]) -> None:
    path, notice_id = data
    with at(path, "2026-07-20") as ledger:
        for day in ("2026-06-27", "2026-06-28", "2026-06-29"):
            assert not failed(ledger, notice_id, "mailbox full", parse_timestamp(day)).final
        # three of four attempts failed: the last retry is assumed on 2026-06-30 at the latest
        subject = pending(ledger, kind="deletion_notice")[0].subject
        decision = {x.subject: x for x in decisions_at(ledger).decisions}[subject]
        assert format_day(decision.due_at) == "2026-07-14"
        assert failed(ledger, notice_id, "mailbox full", parse_timestamp("2026-07-02")).final
        assert pending(ledger, kind="deletion_notice") == []
        decision = {x.subject: x for x in decisions_at(ledger).decisions}[subject]
        assert (decision.action, format_day(decision.due_at)) == ("erase", "2026-07-16")
        with pytest.raises(MessageClosed):
            delivered(ledger, notice_id)


def test_hostile_reports_are_refused_and_nothing_is_recorded(data: tuple[Path, str]) -> None:
    path, notice_id = data
    with at(path, "2026-07-01") as ledger:
        head = ledger.log.head().position
        with pytest.raises(UnknownMessage) as unknown:
            delivered(ledger, "00000000-0000-4000-8000-000000000000")
        assert unknown.value.exit_code == 2
        for bad in ("", "x" * 10_000, "not-a-uuid-but-36-characters-long!!!", "../../etc/passwd"):
            with pytest.raises(UsageError, match="not a message id"):
                delivered(ledger, bad)
        with pytest.raises(UsageError, match="before the message was owed"):
            delivered(ledger, notice_id, parse_timestamp("2026-06-01"))
        with pytest.raises(UsageError, match="after the ledger clock"):
            delivered(ledger, notice_id, parse_timestamp("2026-08-01"))
        for reason in ("", "x" * 501, "line\nbreak", "\x1b[31m"):
            with pytest.raises(UsageError) as e:
                failed(ledger, notice_id, reason)
            assert e.value.parameter == "reason"
        with pytest.raises(UsageError, match="kind"):
            pending(ledger, kind="spam")
        assert ledger.log.head().position == head
