"""`ledger audit` end to end through click's CliRunner: exit codes, --json, one-line errors,
and proofs checked with no data directory at all."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

import cli
from tests.conftest import make_event


def run(*args: str, input: str | None = None, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(cli.main, list(args), input=input, env=env)


def jsonl(n: int, event_type: str = "LoggedIn") -> str:
    return "".join(json.dumps(make_event(event_type)) + "\n" for _ in range(n))


@pytest.fixture
def data(tmp_path: Path) -> str:
    path = str(tmp_path / "d")
    assert run("--data", path, "init").exit_code == 0
    published = run("--data", path, "--now", "2026-03-05", "publish", "-",
                    input=jsonl(6) + jsonl(6, "ConsentGiven"))
    assert published.exit_code == 0, published.output
    return path


def publish_more(data: str, n: int) -> None:
    assert run("--data", data, "--now", "2026-03-06", "publish", "-", input=jsonl(n)).exit_code == 0


def flip_byte(data: str, position: int) -> None:
    db = sqlite3.connect(Path(data) / "log.sqlite", isolation_level=None)
    state = bytearray(db.execute("SELECT state FROM stored_events WHERE rowid=?", (position,)).fetchone()[0])
    state[-1] ^= 1
    db.execute("UPDATE stored_events SET state=? WHERE rowid=?", (bytes(state), position))
    db.close()


def event_id_at(data: str, position: int) -> str:
    import uuid

    db = sqlite3.connect(Path(data) / "log.sqlite")
    hexid = db.execute("SELECT originator_id FROM stored_events WHERE rowid=?", (position,)).fetchone()[0]
    db.close()
    return str(uuid.UUID(hexid))


def test_verify_an_intact_log(data: str) -> None:
    result = run("--data", data, "audit", "verify")
    assert result.exit_code == 0, result.output
    assert result.output.startswith("ok: 12 records, chain intact, every record decodes")
    report = json.loads(run("--data", data, "audit", "verify", "--json").output)
    assert {k: report[k] for k in ("ok", "records", "first_bad_position", "reason")} == \
        {"ok": True, "records": 12, "first_bad_position": None, "reason": None}
    assert report["decode_checked"] is True
    fast = json.loads(run("--data", data, "audit", "verify", "--no-decode", "--json").output)
    assert fast["ok"] and fast["decode_checked"] is False


def test_an_empty_log_verifies(tmp_path: Path) -> None:
    path = str(tmp_path / "empty")
    run("--data", path, "init")
    result = run("--data", path, "audit", "verify", "--json")
    assert result.exit_code == 0 and json.loads(result.output)["records"] == 0


def test_tampering_exits_1_naming_the_first_bad_position(data: str) -> None:
    flip_byte(data, 5)
    text = run("--data", data, "audit", "verify")
    assert text.exit_code == 1
    assert text.output.startswith("FAILED at position 5: altered: ")
    report = json.loads(run("--data", data, "audit", "verify", "--json").output)
    assert (report["ok"], report["first_bad_position"], report["kind"]) == (False, 5, "altered")
    assert report["reason"].startswith("altered: ")


def test_verify_needs_no_master_key(data: str) -> None:
    with_keys = json.loads(run("--data", data, "audit", "verify", "--json").output)
    (Path(data) / "master.key").unlink()
    (Path(data) / "keys.sqlite").unlink()
    text = run("--data", data, "audit", "verify")
    assert text.exit_code == 0, text.output
    assert text.output.startswith("ok: 12 records, chain intact, every record decodes; head ")
    report = json.loads(run("--data", data, "audit", "verify", "--json").output)
    assert report == with_keys and report["ok"] and report["decode_checked"]
    assert (report["records"], report["first_bad_position"]) == (12, None)
    # no key was needed, so none was made
    assert not (Path(data) / "master.key").exists() and not (Path(data) / "keys.sqlite").exists()


def test_digest_then_verify_after_appends_and_after_truncation(data: str, tmp_path: Path) -> None:
    digest = tmp_path / "d1.json"
    made = run("--data", data, "--now", "2026-03-05T18:00:00Z", "audit", "digest", "--out", str(digest))
    assert made.exit_code == 0, made.output
    kept = json.loads(digest.read_text())
    assert (kept["size"], kept["created_at"]) == (12, "2026-03-05T18:00:00.000000Z")
    assert len(bytes.fromhex(kept["merkle_root"])) == 32
    publish_more(data, 4)
    later = run("--data", data, "audit", "verify", "--digest", str(digest), "--json")
    assert later.exit_code == 0, later.output
    assert json.loads(later.output)["digest"]["consistent"] is True
    db = sqlite3.connect(Path(data) / "log.sqlite", isolation_level=None)
    db.execute("DELETE FROM stored_events WHERE rowid > 9")
    db.close()
    cut = run("--data", data, "audit", "verify", "--digest", str(digest), "--json")
    assert cut.exit_code == 1
    report = json.loads(cut.output)
    assert (report["first_bad_position"], report["kind"]) == (10, "truncated")
    assert report["digest"]["consistent"] is False
    assert run("--data", data, "audit", "verify").exit_code == 0  # a chain alone cannot tell


def test_digest_prints_json_and_refuses_a_broken_chain(data: str) -> None:
    printed = run("--data", data, "audit", "digest")
    assert printed.exit_code == 0 and json.loads(printed.output)["size"] == 12
    flip_byte(data, 3)
    refused = run("--data", data, "audit", "digest")
    assert refused.exit_code == 1 and "no digest of a broken chain" in refused.output


def test_prove_and_check_proof_without_the_log(data: str, tmp_path: Path) -> None:
    digest, proof = tmp_path / "d.json", tmp_path / "p.json"
    run("--data", data, "audit", "digest", "--out", str(digest))
    event_id = event_id_at(data, 7)
    made = run("--data", data, "audit", "prove", event_id, "--digest", str(digest), "--out", str(proof))
    assert made.exit_code == 0, made.output
    assert json.loads(proof.read_text())["position"] == 7
    nowhere = str(tmp_path / "no-such-dir")
    ok = run("--data", nowhere, "audit", "check-proof", str(proof), "--digest", str(digest))
    assert ok.exit_code == 0, ok.output
    assert ok.output.startswith(f"ok: event {event_id} is record 7 of 12")
    unpinned = run("--data", nowhere, "audit", "check-proof", str(proof), "--json")
    assert json.loads(unpinned.output)["pinned_to_digest"] is False
    # The same proof claimed for another event fails, and so does a proof against another digest.
    forged = json.loads(proof.read_text())
    forged["event_id"] = event_id_at(data, 8)
    (tmp_path / "forged.json").write_text(json.dumps(forged))
    bad = run("audit", "check-proof", str(tmp_path / "forged.json"), "--digest", str(digest))
    assert bad.exit_code == 1 and bad.output.startswith("FAILED: ")
    publish_more(data, 2)
    newer = tmp_path / "d2.json"
    run("--data", data, "audit", "digest", "--out", str(newer))
    other = run("audit", "check-proof", str(proof), "--digest", str(newer))
    assert other.exit_code == 1 and "covers 14 records" in other.output


def test_consistency_proof_between_two_digests(data: str, tmp_path: Path) -> None:
    d1, d2, proof = tmp_path / "d1.json", tmp_path / "d2.json", tmp_path / "c.json"
    run("--data", data, "audit", "digest", "--out", str(d1))
    publish_more(data, 5)
    run("--data", data, "audit", "digest", "--out", str(d2))
    made = run("--data", data, "audit", "consistency", "--digest", str(d1), "--out", str(proof))
    assert made.exit_code == 0, made.output
    checked = run("audit", "check-proof", str(proof), "--digest", str(d1), "--digest", str(d2), "--json")
    assert checked.exit_code == 0, checked.output
    assert json.loads(checked.output)["ok"] is True
    flip_byte(data, 2)
    broken = run("--data", data, "audit", "consistency", "--digest", str(d1))
    assert broken.exit_code == 1


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (("audit", "verify"), 2, "no event log at"),
        (("audit", "verify", "--digest", "{missing}"), 2, "does not exist"),
        (("audit", "verify", "--digest", "{not_json}"), 2, "not a JSON digest"),
        (("audit", "verify", "--digest", "{proof_like}"), 2, "an inclusion proof, not a digest"),
        (("audit", "prove", "not-a-uuid", "--digest", "{digest}"), 2, "not an event id"),
        (("audit", "prove", "{late_event}", "--digest", "{digest}"), 2, "make a newer digest"),
        (("audit", "prove", "6f1c2a3e-1111-4aaa-8bbb-00000000dead", "--digest", "{digest}"), 1, "no event"),
        (("audit", "check-proof", "{digest}"), 2, "a digest, not an inclusion proof"),
    ],
)
def test_errors_are_one_line(data: str, tmp_path: Path, args: tuple[str, ...], code: int,
                             message: str) -> None:
    files = {
        "missing": str(tmp_path / "missing.json"),
        "not_json": str(tmp_path / "not.json"),
        "proof_like": str(tmp_path / "proof-like.json"),
        "digest": str(tmp_path / "digest.json"),
    }
    Path(files["not_json"]).write_text("{broken")
    Path(files["proof_like"]).write_text(json.dumps({"format": "consent-ledger/inclusion-proof/1"}))
    run("--data", data, "audit", "digest", "--out", files["digest"])
    publish_more(data, 1)
    files["late_event"] = event_id_at(data, 13)
    target = str(tmp_path / "absent") if args == ("audit", "verify") else data
    result = run("--data", target, *(a.format(**files) for a in args))
    assert result.exit_code == code, result.output
    assert message in result.output
    assert "Traceback" not in result.output
    assert len([line for line in result.output.splitlines() if line.startswith("Error")]) == 1
