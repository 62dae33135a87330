"""The notice registry end to end (issue 13 §1): `ledger notice publish|list|show`, consents
checked against it when recorded, and `ledger audit consents`, on real SQLite and DuckDB
files through the command line. Hostile notice files are refused before anything is written."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

import cli
from tests.conftest import DEMO_NOW, make_event

TEXT = "Genom att klicka på ”Skicka” samtycker du till att få vårt nyhetsbrev.\n"
SHA = hashlib.sha256(TEXT.encode()).hexdigest()


def run(*args: str, input: str | None = None) -> Result:
    return CliRunner().invoke(cli.main, list(args), input=input)


@pytest.fixture
def data(data_dir: Path) -> str:
    return str(data_dir)


def publish_notice(data: str, path: Path, *extra: str, version: str = "1",
                   now: str = "2026-01-01") -> Result:
    return run("--data", data, "--now", now, "notice", "publish", "--controller", "cowrite",
               "--id", "nl-terms", "--version", version, "--language", "sv", *extra, str(path))


def consent(**kw: object) -> dict[str, object]:
    fields: dict[str, object] = {"notice_id": "nl-terms", "notice_version": "1",
                                 "notice_sha256": ..., **kw}
    return make_event("ConsentGiven", **fields)


def publish_events(data: str, *events: dict[str, object], now: str = "2026-03-05") -> Result:
    lines = "".join(json.dumps(e, ensure_ascii=False) + "\n" for e in events)
    return run("--data", data, "--now", now, "publish", "-", input=lines)


def test_publish_list_show_and_the_same_text_again(data: str, tmp_path: Path) -> None:
    path = tmp_path / "nl.txt"
    path.write_bytes(TEXT.encode())
    first = publish_notice(data, path, "--title", "Nyhetsbrev", "--json")
    assert first.exit_code == 0, first.output
    published = json.loads(first.output)
    assert published["status"] == "published" and published["sha256"] == SHA
    assert published["published_at"] == "2026-01-01T00:00:00.000000Z"
    again = publish_notice(data, path, now="2026-02-01")
    assert again.exit_code == 0 and again.output.startswith("already published")
    listed = json.loads(run("--data", data, "notice", "list", "--json").output)
    assert [(n["notice_id"], n["version"], n["language"], n["sha256"], n["title"])
            for n in listed] == [("nl-terms", "1", "sv", SHA, "Nyhetsbrev")]
    shown = run("--data", data, "notice", "show", "nl-terms", "--version", "1", "--json")
    assert json.loads(shown.output)[0]["text"] == TEXT  # byte for byte
    missing = run("--data", data, "notice", "show", "nl-terms", "--version", "9")
    assert missing.exit_code == 2 and "is not published" in missing.output


@pytest.mark.slow  # ~3 s; the same text again (no-op) stays in the fast tier
def test_another_text_under_a_published_version_is_refused(data: str, tmp_path: Path) -> None:
    path = tmp_path / "nl.txt"
    path.write_bytes(TEXT.encode())
    assert publish_notice(data, path).exit_code == 0
    path.write_bytes(TEXT.encode() + b"Och erbjudanden.\n")
    changed = publish_notice(data, path, now="2026-02-01")
    assert changed.exit_code == 1
    assert "already published with another text" in changed.output
    assert "new version" in changed.output
    assert publish_notice(data, path, version="2", now="2026-02-01").exit_code == 0
    assert len(json.loads(run("--data", data, "notice", "list", "--json").output)) == 2


@pytest.mark.parametrize(("content", "reason"), [
    (b"x" * (256 * 1024 + 1), "over the 256 KiB limit"),
    (b"Hej \xe5 \xff", "not UTF-8"),
    (b"Hej\x00", "control character"),
    (b"", "empty"),
])
def test_hostile_notice_files_write_nothing(data: str, tmp_path: Path, content: bytes,
                                            reason: str) -> None:
    path = tmp_path / "bad.txt"
    path.write_bytes(content)
    result = publish_notice(data, path)
    assert result.exit_code == 2 and reason in result.output
    assert len(result.output.strip().splitlines()) == 1  # one line, no traceback
    assert json.loads(run("--data", data, "notice", "list", "--json").output) == []


def test_bad_ids_and_unknown_controllers_are_usage_errors(data: str, tmp_path: Path) -> None:
    path = tmp_path / "nl.txt"
    path.write_bytes(TEXT.encode())
    bad_id = run("--data", data, "notice", "publish", "--controller", "cowrite", "--id",
                 "a b", "--version", "1", "--language", "sv", str(path))
    assert bad_id.exit_code == 2 and "--id:" in bad_id.output
    bad_language = run("--data", data, "notice", "publish", "--controller", "cowrite", "--id",
                       "nl", "--version", "1", "--language", "svenska", str(path))
    assert bad_language.exit_code == 2 and "--language:" in bad_language.output
    unknown = run("--data", data, "notice", "publish", "--controller", "nobody", "--id", "nl",
                  "--version", "1", "--language", "sv", str(path))
    assert unknown.exit_code == 2 and "--controller" in unknown.output


def test_producers_cannot_publish_a_notice_event(data: str) -> None:
    forged = make_event("LoggedIn")
    forged.update(type="NoticePublished", subject={"id": "0" * 64})
    result = publish_events(data, forged)
    assert result.exit_code == 1 and "written by `ledger notice publish`" in result.output


def test_consents_against_the_registry_and_the_audit(data: str, tmp_path: Path) -> None:
    path = tmp_path / "nl.txt"
    path.write_bytes(TEXT.encode())
    assert publish_notice(data, path).exit_code == 0
    filled = consent(subject={"email": "anna@example.se"})
    matching = consent(subject={"email": "bo@example.se"}, notice_sha256=SHA)
    mismatch = consent(subject={"email": "cia@example.se"}, notice_sha256="0" * 64)
    unpublished = consent(subject={"email": "dan@example.se"}, notice_id="cookies",
                          language=None)
    before = consent(subject={"email": "eva@example.se"}, occurred_at="2025-12-01T10:00:00Z")
    result = publish_events(data, filled, matching, mismatch, unpublished, before)
    assert result.exit_code == 1
    assert "accepted 4" in result.output and "rejected 1" in result.output
    assert "notice_sha256: conflict" in result.output
    assert run("--data", data, "project").exit_code == 0
    states = json.loads(run("--data", data, "query", "--json",
                            "SELECT event_id, notice_sha256 FROM consent_state").output)
    hashes = {r["event_id"]: r["notice_sha256"] for r in states}
    assert hashes[filled["event_id"]] == SHA  # filled in by the ledger
    assert hashes[matching["event_id"]] == SHA
    assert hashes[unpublished["event_id"]] is None
    assert mismatch["event_id"] not in hashes

    audit = run("--data", data, "audit", "consents", "--json")
    assert audit.exit_code == 1
    report = json.loads(audit.output)
    reasons = {f["event_id"]: f["reasons"] for f in report["unverifiable"]}
    assert reasons == {
        unpublished["event_id"]: ["no language recorded", "notice version not published"],
        before["event_id"]: ["notice published 2026-01-01T00:00:00.000000Z, after the consent "
                             "was given"],
    }
    assert report["summary"] == {"as_of": None, "consents": 4, "verified": 2,
                                 "unverifiable": 2, "ok": False}
    text = run("--data", data, "audit", "consents")
    assert text.exit_code == 1 and text.output.splitlines()[-1] == (
        "4 consents: 2 verified, 2 unverifiable")


@pytest.mark.slow  # ~4 s: four publishing runs and a replay as of T
def test_a_notice_published_late_and_the_audit_as_of(data: str, tmp_path: Path) -> None:
    late = consent(subject={"email": "anna@example.se"}, occurred_at="2026-03-01T09:30:00Z")
    assert publish_events(data, late, now="2026-03-05").exit_code == 0
    path = tmp_path / "nl.txt"
    path.write_bytes(TEXT.encode())
    assert publish_notice(data, path, now="2026-03-10").exit_code == 0
    then = json.loads(run("--data", data, "audit", "consents", "--as-of", "2026-03-06",
                          "--json").output)
    assert then["unverifiable"][0]["reasons"] == ["notice version not published"]
    now = json.loads(run("--data", data, "audit", "consents", "--json").output)
    assert now["unverifiable"][0]["reasons"] == [
        "no notice_sha256 recorded (the notice was not published when the consent was "
        "recorded)",
        "notice published 2026-03-10T00:00:00.000000Z, after the consent was given"]
    # a consent after the publication is filled and verified
    after = consent(subject={"email": "bo@example.se"}, occurred_at="2026-03-11T09:30:00Z")
    assert publish_events(data, after, now="2026-03-12").exit_code == 0
    final = json.loads(run("--data", data, "audit", "consents", "--json").output)
    assert final["summary"]["verified"] == 1 and final["summary"]["unverifiable"] == 1


def test_the_demo_publishes_its_notices_before_every_consent(demo_data: Path) -> None:
    data = str(demo_data)
    audit = run("--data", data, "--now", DEMO_NOW, "audit", "consents", "--json")
    assert audit.exit_code == 0, audit.output
    summary = json.loads(audit.output)["summary"]
    assert summary["consents"] > 0 and summary["verified"] == summary["consents"]
    notices = json.loads(run("--data", data, "notice", "list", "--json").output)
    assert {n["controller"] for n in notices} == {"coegi", "cowrite"}
    assert {"sv", "en"} <= {n["language"] for n in notices}
    versions = {(n["notice_id"], n["version"]) for n in notices}
    assert ("coegi-newsletter", "3") in versions and ("cw-newsletter-terms", "2") in versions
    shown = json.loads(run("--data", data, "notice", "show", "coegi-newsletter", "--version",
                           "1", "--language", "sv", "--json").output)
    assert "samtycker" in shown[0]["text"]
    assert hashlib.sha256(shown[0]["text"].encode()).hexdigest() == shown[0]["sha256"]
