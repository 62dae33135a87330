"""`ledger audit report`: the auditor's HTML page about one subject — self-contained, without
personal data, and rendered by headless Chromium where it is installed."""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest
from click.testing import CliRunner

import cli
from ledger.app.service import Ledger
from ledger.app.sweep import sweep
from ledger.domain.clock import FixedClock
from ledger.domain.events import Event
from ledger.domain.retention.policy import load_policy
from ledger.domain.timeutil import parse_timestamp
from tests.conftest import make_event

EMAIL, NAME, PHONE = "Greta.Lindqvist@example.se", "Greta Lindqvist", "+46 70 111 22 33"
CHROMIUM = Path("/usr/bin/chromium")


def publish(ledger: Ledger, when: str, event_type: str, **kw) -> None:  # type: ignore[no-untyped-def]
    ledger.clock = FixedClock(parse_timestamp(when))
    ledger.record(make_event(event_type, occurred_at=when, subject={"email": EMAIL},
                             pii={"name": NAME, "phone": PHONE}, **kw))


@pytest.fixture
def history(data_dir: Path) -> tuple[Path, str]:
    """Greta at cowrite: consents, activity, a notice and an erasure by the sweep, and an
    erasure appended by hand the day after the notice (unjustified)."""
    with Ledger.open(data_dir) as ledger:
        publish(ledger, "2025-06-01", "SubjectRegistered")
        publish(ledger, "2025-06-01T10:00:00Z", "ConsentGiven")
        publish(ledger, "2025-06-02", "NewsletterSubscribed")
        publish(ledger, "2025-09-01", "ConsentWithdrawn", purpose="profiling")
        publish(ledger, "2025-11-01", "InvoiceUsageRecorded")
        publish(ledger, "2026-01-10", "LoggedIn")
        ledger.clock = FixedClock(parse_timestamp("2026-07-20"))
        sweep(ledger, controller="cowrite")
        pid = ledger.subject_id("cowrite", email=EMAIL)
        t = parse_timestamp("2026-07-21")
        ledger.append_events([Event(
            "SubjectErased", str(uuid.uuid4()), "cowrite", pid, t, t, "ledger", "system:retention-sweep",
            {"reason": "inactivity", "policy": "cowrite", "policy_hash": load_policy("cowrite").content_hash,
             "keys_shredded": ["profile"], "evidence": []})])
    return data_dir, pid


def report(data: Path, out: Path, *args: str) -> str:
    result = CliRunner().invoke(cli.main, ["--data", str(data), "--now", "2026-08-01", "audit", "report",
                                           *args, "--html", str(out)])
    assert result.exit_code == 0, result.output
    return out.read_text("utf-8")


def test_the_page_has_the_pseudonym_the_rules_and_the_verdicts_but_no_personal_data(
        history: tuple[Path, str], tmp_path: Path) -> None:
    data, pid = history
    page = report(data, tmp_path / "r.html", "--email", EMAIL, "--controller", "cowrite")
    assert pid in page
    lowered = page.lower()
    for secret in (EMAIL, NAME, PHONE, "greta", "lindqvist", "111 22 33"):
        assert secret.lower() not in lowered, secret
    assert "<svg" in page and "Timeline" in page
    assert "policy cowrite (sha256" in page and "decision at 2026-08-01" in page  # the rule chain
    assert "nl-terms" in page and "a" * 64 in page and "Skicka" in page  # consent evidence
    assert "justified" in page and "UNJUSTIFIED" in page and "before its notice period ended" in page
    assert "Intact" in page
    # Self-contained: no scripts, no links or sources outside the page.
    assert "<script" not in lowered
    assert not re.search(r'(src|href)\s*=', lowered)
    assert re.findall(r"https?://[^\s\"'<>]+", page) == ["http://www.w3.org/2000/svg"]


def test_as_of_and_errors(history: tuple[Path, str], tmp_path: Path) -> None:
    data, pid = history
    early = report(data, tmp_path / "early.html", pid, "--as-of", "2026-02-01")
    assert "DeletionNoticeSent" not in early and "No sweep events for this subject" in early
    bad = CliRunner().invoke(cli.main, ["--data", str(data), "audit", "report", "f" * 64,
                                        "--controller", "cowrite", "--html", str(tmp_path / "x.html")])
    assert bad.exit_code == 2 and "no subject" in bad.output
    missing = CliRunner().invoke(cli.main, ["--data", str(data), "audit", "report", pid])
    assert missing.exit_code == 2


@pytest.mark.skipif(not CHROMIUM.exists(), reason="headless Chromium is not installed at /usr/bin/chromium "
                    "(Debian package `chromium`): the HTML report is not rendered")
def test_the_report_renders_in_headless_chromium(history: tuple[Path, str], tmp_path: Path) -> None:
    data, pid = history
    page = tmp_path / "report.html"
    report(data, page, pid)
    shot = tmp_path / "report.png"
    subprocess.run(
        [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={tmp_path / 'chromium-profile'}", f"--screenshot={shot}",
         "--window-size=1200,1600", page.resolve().as_uri()],
        check=True, capture_output=True, timeout=120)
    png = shot.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20_000  # a rendered page, not a blank one
    shutil.copy(shot, "/tmp/audit-report.png")  # for a human to look at


NOTICE_TEXT = "Vi skickar nyhetsbrevet varje vecka. Du kan avsluta det när du vill."
NOTICE_SHA = hashlib.sha256(NOTICE_TEXT.encode("utf-8")).hexdigest()


@pytest.fixture
def erased_after_requests(data_dir: Path) -> tuple[Path, str]:
    """Greta at cowrite: a consent to a registered notice, an invoice, a restriction asked and
    withdrawn late, then an erasure request: pseudonymised, then erased by the sweep (the
    invoice's bookkeeping kept under its legal hold)."""
    with Ledger.open(data_dir) as ledger:
        publish(ledger, "2025-01-10", "SubjectRegistered")
        publish(ledger, "2025-01-10T10:00:00Z", "ConsentGiven", notice_sha256=NOTICE_SHA)
        publish(ledger, "2025-03-01", "InvoiceUsageRecorded")
        publish(ledger, "2025-04-01", "RightsRequested", request_id="rq-restrict", right="restriction")
        publish(ledger, "2025-06-20", "RightsRequestClosed", request_id="rq-restrict", outcome="withdrawn")
        publish(ledger, "2026-01-05", "LoggedIn")
        publish(ledger, "2026-03-01", "RightsRequested", request_id="rq-erase", right="erasure")
        for when in ("2026-03-01T12:00:00Z", "2026-05-01T12:00:00Z"):
            ledger.clock = FixedClock(parse_timestamp(when))
            sweep(ledger, controller="cowrite")
        pid = ledger.subject_id("cowrite", email=EMAIL)
    return data_dir, pid


@pytest.mark.slow  # about 10 s; tests/unit/ledger/app/test_audit_report_render.py is the fast variant
def test_the_page_reads_as_plain_words_with_worked_dates_and_provenance(
        erased_after_requests: tuple[Path, str], tmp_path: Path) -> None:
    """Issue 13 §4: rules in plain words with the policy's clause and the arithmetic, the status
    strip, rights requests summarised, provenance, a current state that says the subject is
    erased, and no CSS that breaks words."""
    data, pid = erased_after_requests
    page = report(data, tmp_path / "r.html", pid, "--as-of", "2026-06-01")
    cowrite = load_policy("cowrite")
    # each rule in plain words, its Swedish clause, the worked dates
    assert "inactive for 6 months" in page and "Om ett konto inte har använts under 6 månader" in page
    assert "last activity <b>2026-01-05</b> + 6 months = erasure due <b>2026-07-05</b>" in page
    assert "told 14 days before" in page and "Användaren meddelas om detta två veckor" in page
    assert "last invoiced use <b>2025-03-01</b> → end of 2025 + 7 years = hold ends <b>2033-01-01</b>" in page
    assert "written for this ledger" in page  # the bookkeeping clause is not the seed's words
    # the status strip: active, restricted, active again (withdrawn), pseudonymised, erased
    strip = re.findall(r"<title>(active|restricted|pseudonymised|erased) from (\S+)</title>", page)
    assert strip == [("active", "2025-01-10"), ("restricted", "2025-04-01"), ("active", "2025-06-20"),
                     ("pseudonymised", "2026-03-01"), ("erased", "2026-05-01")]
    # rights requests: received, due, closed, outcome, on time or not
    rights = page[page.index('id="rights"'):page.index('id="decision"')]
    assert "restriction" in rights and "withdrawn" in rights and "late by" in rights
    assert "erasure" in rights and "on time" in rights and "2026-03-01" in rights
    # the current state reflects the erasure
    state = page[page.index("<h3>Current state</h3>"):page.index("<h3>Evidence")]
    assert "ended: subject erased 2026-05-01" in state and ">granted<" not in state
    # provenance
    prov = page[page.index('id="provenance"'):]
    for label in ("generated at", "(wall clock)", "ledger version", "Merkle root", "signed checkpoint",
                  "policy content hash", "policy file sha256"):
        assert label in prov, label
    assert cowrite.file_sha256 in prov and cowrite.content_hash in prov
    assert re.search(r'Merkle root</td><td>(<[^>]+>)*<span class="mono" title="[0-9a-f]{64}"', prov)
    # no mid-word breaks; the full ids are on hover
    assert "break-all" not in page and "anywhere" not in page and "word-break:normal" in page
    assert f'title="{NOTICE_SHA}"' in page
    # still no personal data, no scripts
    for secret in (EMAIL, NAME, PHONE, "greta"):
        assert secret.lower() not in page.lower()
    assert "<script" not in page.lower()
    # while pseudonymised: the pseudonymisation arithmetic
    earlier = report(data, tmp_path / "p.html", pid, "--as-of", "2026-04-01")
    assert "pseudonymised <b>2026-03-01</b> + 60 days = erasure due <b>2026-04-30</b>" in earlier
    assert "suspended: subject pseudonymised 2026-03-01" in earlier
    assert "erasure requested <b>2026-03-01</b>" in page and "erased <b>2026-05-01</b>" in page
    assert "no longer decide anything" in page


@pytest.mark.slow
@pytest.mark.skipif(not CHROMIUM.exists(), reason="headless Chromium is not installed at /usr/bin/chromium")
def test_the_plain_words_report_renders_in_headless_chromium(
        erased_after_requests: tuple[Path, str], tmp_path: Path) -> None:
    data, pid = erased_after_requests
    page = tmp_path / "report.html"
    report(data, page, pid, "--as-of", "2026-06-01")
    shot = tmp_path / "report.png"
    subprocess.run(
        [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={tmp_path / 'chromium-profile'}", f"--screenshot={shot}",
         "--window-size=1200,2400", page.resolve().as_uri()],
        check=True, capture_output=True, timeout=120)
    png = shot.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20_000
    shutil.copy(shot, "/tmp/audit-report-plain.png")  # for a human to look at
