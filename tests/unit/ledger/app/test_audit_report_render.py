"""The subject report's page from a report built by hand (no ledger, milliseconds): the plain
rules with their clause and worked dates, the notice seam, the status strip, rights requests,
the current state after an erasure, provenance and the no-mid-word layout (issue 13 §4). The
same page from a real ledger, rendered in Chromium, is in tests/e2e/test_audit_report.py."""

from __future__ import annotations

import hashlib
import re
from datetime import datetime
from typing import Any

from ledger.app.audit_decisions import DecisionAudit
from ledger.app.audit_report import SubjectReport, render
from ledger.app.auditing import ChainStatus
from ledger.domain.retention.policy import load_policy
from ledger.domain.retention.rules import SubjectFacts
from ledger.domain.timeutil import parse_timestamp

SUBJECT = "4cebcfdcc9221c52baaeb09558e127d4be15f2c3999c3f1741745dbee39fa053"
NOTICE = "Vi skickar nyhetsbrevet varje vecka. Du kan avsluta det när du vill."
NOTICE_SHA = hashlib.sha256(NOTICE.encode("utf-8")).hexdigest()


def event(position: int, when: str, event_type: str, **body: Any) -> dict[str, Any]:
    return {"position": position, "occurred_at": when, "recorded_at": when, "type": event_type,
            "event_id": f"00000000-0000-4000-8000-{position:012d}", "source": "web",
            "actor": "subject", "body": body}


TIMELINE = [
    event(1, "2025-01-10T00:00:00.000000Z", "SubjectRegistered", relation="user"),
    event(2, "2025-01-10T10:00:00.000000Z", "ConsentGiven", purpose="newsletter", notice_id="nl-terms",
          notice_version="3", notice_sha256=NOTICE_SHA, ui_action="Skicka", channel="web"),
    event(3, "2025-03-01T00:00:00.000000Z", "InvoiceUsageRecorded", invoice_ref="INV-1"),
    event(4, "2025-04-01T00:00:00.000000Z", "RightsRequested", request_id="rq-restrict", right="restriction"),
    event(5, "2025-06-20T00:00:00.000000Z", "RightsRequestClosed", request_id="rq-restrict", outcome="withdrawn"),
    event(6, "2026-01-05T00:00:00.000000Z", "LoggedIn"),
    event(7, "2026-03-01T00:00:00.000000Z", "RightsRequested", request_id="rq-erase", right="erasure"),
    event(8, "2026-03-01T12:00:00.000000Z", "SubjectPseudonymised", reason="erasure_request",
          erase_due_at="2026-04-30 12:00:00", policy_hash="d" * 64),
    event(9, "2026-05-01T12:00:00.000000Z", "SubjectErased", reason="erasure_request",
          keys_shredded=["profile"], policy_hash="d" * 64),
]


def report(status: str = "erased", **changes: Any) -> SubjectReport:
    policy = load_policy("cowrite")
    facts = SubjectFacts("cowrite", SUBJECT, parse_timestamp("2025-01-10"), registered=True,
                         last_activity_at=parse_timestamp("2026-01-05"), status=status,
                         last_held_at=parse_timestamp("2025-03-01"), shredded=frozenset({"profile"}))
    fields: dict[str, Any] = dict(
        controller="cowrite", subject=SUBJECT, as_of=parse_timestamp("2026-06-01"),
        explained={"timeline": TIMELINE, "rule_chain": ["policy cowrite", "decision at 2026-06-01"],
                   "decision": {"action": "hold", "rule": "legal_hold", "due_at": "2033-01-01T00:00:00.000000Z",
                                "policy": "cowrite", "policy_hash": policy.content_hash, "evidence": []}},
        consents=[{"purpose": "newsletter", "status": "granted", "since": datetime(2025, 1, 10),
                   "notice_id": "nl-terms", "notice_version": "3", "ui_action": "Skicka", "channel": "web"}],
        subscriptions=[], status=status, sweeps=DecisionAudit(None, 0, ()),
        chain=ChainStatus(True, 9, "e" * 64, "9 records chain and decode"), position=9,
        policy=policy, facts=facts,
        status_row={"since": datetime(2026, 5, 1, 12), "reason": "erasure_request"},
        rights=({"request_id": "rq-restrict", "requested_right": "restriction",
                 "received_at": datetime(2025, 4, 1), "due_at": datetime(2025, 5, 1),
                 "closed_at": datetime(2025, 6, 20), "outcome": "withdrawn"},
                {"request_id": "rq-erase", "requested_right": "erasure", "received_at": datetime(2026, 3, 1),
                 "due_at": datetime(2026, 4, 1), "closed_at": datetime(2026, 3, 1, 12), "outcome": "fulfilled"},
                {"request_id": "rq-access-open", "requested_right": "access", "received_at": datetime(2026, 4, 20),
                 "due_at": datetime(2026, 5, 20), "closed_at": None, "outcome": None}),
        generated_at=parse_timestamp("2026-12-02T13:00:00Z"), merkle_root="f" * 64)
    fields.update(changes)
    return SubjectReport(**fields)


def test_rules_in_plain_words_with_the_clause_and_the_worked_dates() -> None:
    page = render(report())
    assert "inactive for 6 months" in page and "Om ett konto inte har använts under 6 månader" in page
    assert "last activity <b>2026-01-05</b> + 6 months = erasure due <b>2026-07-05</b>" in page
    assert "erasure due <b>2026-07-05</b> &minus; 14 days = notice due <b>2026-06-21</b>" in page
    assert "pseudonymised <b>2026-03-01</b> + 60 days = erasure due <b>2026-04-30</b>" in page
    assert "last invoiced use <b>2025-03-01</b> → end of 2025 + 7 years = hold ends <b>2033-01-01</b>" in page
    assert "written for this ledger" in page and "no longer decide anything" in page
    noticed = render(report("active", facts=SubjectFacts(
        "cowrite", SUBJECT, parse_timestamp("2025-01-10"), registered=True,
        last_activity_at=parse_timestamp("2026-01-05"), notice_at=parse_timestamp("2026-06-21"))))
    assert "notice sent <b>2026-06-21</b> + 14 days = earliest erasure <b>2026-07-05</b>" in noticed


def test_the_status_strip_rights_and_the_current_state() -> None:
    page = render(report())
    strip = re.findall(r"<title>(\w+) from (\S+)</title>", page)
    assert strip == [("active", "2025-01-10"), ("restricted", "2025-04-01"), ("active", "2025-06-20"),
                     ("pseudonymised", "2026-03-01"), ("erased", "2026-05-01")]
    rights = page[page.index('id="rights"'):page.index('id="decision"')]
    assert "late by 50 days" in rights and "on time" in rights and "open, 12 days overdue" in rights
    state = page[page.index("<h3>Current state</h3>"):page.index("<h3>Evidence")]
    assert "ended: subject erased 2026-05-01" in state and ">granted<" not in state
    assert "suspended: subject pseudonymised" in render(report("pseudonymised"))
    assert ">granted<" in render(report("active"))


def test_the_notice_text_comes_from_the_lookup_with_its_hash_checked() -> None:
    asked: list[tuple[str, str, str | None]] = []

    def registry(controller: str, notice_id: str, version: str | None) -> str | None:
        asked.append((controller, notice_id, version))
        return NOTICE

    page = render(report(), registry)
    assert asked == [("cowrite", "nl-terms", "3")]
    assert NOTICE in page and "the text hashes to the recorded sha256" in page
    assert "does NOT hash" in render(report(), lambda c, n, v: NOTICE + " Vi säljer dina uppgifter.")
    hostile = render(report(), lambda c, n, v: "<script>alert(1)</script>" + "x" * 10_000)
    assert "<script" not in hostile and "&lt;script&gt;" in hostile and "x" * 4_100 not in hostile
    assert "notice text not in the registry" in render(report())


def test_provenance_and_a_layout_that_never_breaks_words() -> None:
    page = render(report())
    prov = page[page.index('id="provenance"'):]
    for label in ("generated at", "2026-12-02T13:00:00 UTC (wall clock)", "ledger version", "Merkle root",
                  "signed checkpoint", "none: no signed checkpoint", "policy content hash",
                  "policy file sha256", load_policy("cowrite").file_sha256, "f" * 64):
        assert label in prov, label
    assert "break-all" not in page and "anywhere" not in page and "word-break:normal" in page
    # long hashes are cut short in the cells, whole in a title
    assert f'title="{NOTICE_SHA}"' in page and f">{NOTICE_SHA}<" not in page
    assert "<script" not in page.lower() and not re.search(r"(src|href)\s*=", page.lower())


def test_the_json_summary_carries_the_provenance() -> None:
    s = report().summary()
    assert s["merkle_root"] == "f" * 64 and s["generated_at"].startswith("2026-12-02T13:00:00")
    assert s["policy"]["file_sha256"] == load_policy("cowrite").file_sha256 and s["rights_requests"] == 3
