"""Consent records in ISO/IEC TS 27560 form (issue 13 §3): `ledger subject consent-record`,
validated against the vendored DPV-profile schema, signed as a compact JWS with the audit key
and verified offline by `ledger audit check-receipt`; tampered receipts and wrong keys fail
with the reason."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import jsonschema
import pytest
from click.testing import CliRunner, Result

import cli
from tests.conftest import make_event

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = json.loads((ROOT / "schemas" / "dpv-27560" / "consent-record.schema.json").read_text())
EMAIL = "anna.svensson@example.se"


def run(*args: str, input: str | None = None) -> Result:
    return CliRunner().invoke(cli.main, list(args), input=input)


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    """A ledger with a published notice, a consent, a withdrawal and a second purpose; and
    an audit key pair."""
    data = str(tmp_path_factory.mktemp("records") / "d")
    keys = tmp_path_factory.mktemp("keys")
    assert run("--data", data, "init").exit_code == 0
    notice = keys / "nl.txt"
    notice.write_text("Vi skickar nyhetsbrev till dig.\n", encoding="utf-8")
    assert run("--data", data, "--now", "2026-01-01", "notice", "publish", "--controller",
               "cowrite", "--id", "nl-terms", "--version", "3", "--language", "sv",
               str(notice)).exit_code == 0
    who = {"subject": {"email": EMAIL}}
    events = [
        make_event("ConsentGiven", **who, notice_sha256=..., occurred_at="2026-02-01T10:00:00Z"),
        make_event("ConsentWithdrawn", **who, purpose="newsletter", occurred_at="2026-02-10T10:00:00Z"),
        make_event("ConsentGiven", **who, notice_sha256=..., purpose="analytics",
                   occurred_at="2026-02-11T10:00:00Z"),
    ]
    lines = "".join(json.dumps(e) + "\n" for e in events)
    assert run("--data", data, "--now", "2026-03-01", "publish", "-", input=lines).exit_code == 0
    assert run("audit", "keygen", "--out", str(keys)).exit_code == 0
    return data, keys


def record(data: str, *extra: str) -> Result:
    return run("--data", data, "subject", "consent-record", "--email", EMAIL, "--controller",
               "cowrite", *extra)


def test_the_record_validates_against_the_vendored_schema(history: tuple[str, Path]) -> None:
    data, _ = history
    result = record(data)
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    jsonschema.validate(doc, SCHEMA)
    assert EMAIL.lower() not in result.output.lower()  # the pseudonym only
    assert "Anna" not in result.output and "+46" not in result.output  # no pii
    purposes = {r["dpv:hasPurpose"]: r for r in doc["records"]}
    assert purposes["newsletter"]["dpv:hasConsentStatus"] == "dpv:ConsentWithdrawn"
    assert [h["event_type"] for h in purposes["newsletter"]["history"]] == [
        "ConsentGiven", "ConsentWithdrawn"]
    assert purposes["analytics"]["dpv:hasConsentStatus"] == "dpv:ConsentGiven"
    notice = purposes["newsletter"]["dpv:hasNotice"]
    shown = json.loads(run("--data", data, "notice", "show", "nl-terms", "--json").output)
    assert notice["sha256"] == shown[0]["sha256"]  # filled by the ledger from the registry
    only = json.loads(record(data, "--purpose", "analytics").output)
    assert [r["dpv:hasPurpose"] for r in only["records"]] == ["analytics"]


def test_the_schema_rejects_what_the_record_must_not_hold(history: tuple[str, Path]) -> None:
    doc = json.loads(record(history[0]).output)
    doc["dpv:hasDataSubject"]["dct:identifier"] = EMAIL
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(doc, SCHEMA)


def test_a_signed_receipt_verifies_offline_and_tampering_fails(history: tuple[str, Path],
                                                               tmp_path: Path) -> None:
    data, keys = history
    signed = record(data, "--sign", str(keys / "checkpoint.key"))
    assert signed.exit_code == 0, signed.output
    receipt = tmp_path / "receipt.jws"
    receipt.write_text(signed.output)
    vkey = str(keys / "checkpoint.vkey")
    ok = run("audit", "check-receipt", str(receipt), "--key", vkey, "--json")
    assert ok.exit_code == 0, ok.output
    checked = json.loads(ok.output)
    jsonschema.validate(checked["consent_record"], SCHEMA)
    assert checked["purposes"] == 2

    header, payload, signature = signed.output.strip().split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["records"][0]["dpv:hasConsentStatus"] = "dpv:ConsentGiven"
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    receipt.write_text(f"{header}.{forged}.{signature}")
    tampered = run("audit", "check-receipt", str(receipt), "--key", vkey)
    assert tampered.exit_code == 1 and "signature does not verify" in tampered.output

    other = tmp_path / "other"
    assert run("audit", "keygen", "--out", str(other), "--name", "someone-else").exit_code == 0
    receipt.write_text(signed.output)
    wrong = run("audit", "check-receipt", str(receipt), "--key", str(other / "checkpoint.vkey"))
    assert wrong.exit_code == 1 and "signed by key" in wrong.output


@pytest.mark.parametrize(("content", "reason"), [
    (b"not a receipt", "not a compact JWS"),
    (b"\xff\xfe.a.b", "not ASCII"),
    (b"YWJj.e30.c2ln", "header is not JSON"),
    (b"a.b.c", "not base64url"),
    (b"eyJhbGciOiJub25lIn0.e30.", "not signed with EdDSA"),
    (b"x" * (4 * 1024 * 1024 + 1), "over 4 MiB"),
])
def test_malformed_receipts_are_refused_in_one_line(history: tuple[str, Path], tmp_path: Path,
                                                    content: bytes, reason: str) -> None:
    receipt = tmp_path / "bad.jws"
    receipt.write_bytes(content)
    result = run("audit", "check-receipt", str(receipt), "--key",
                 str(history[1] / "checkpoint.vkey"))
    assert result.exit_code in (1, 2) and reason in result.output
    assert len(result.output.strip().splitlines()) == 1
