"""`ledger audit report`: the auditor's HTML page about one subject — self-contained, without
personal data, and rendered by headless Chromium where it is installed."""

from __future__ import annotations

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
