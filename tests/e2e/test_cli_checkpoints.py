"""`ledger audit keygen`, `audit checkpoint` and the digest commands given a checkpoint, through
click's CliRunner: the whole stdout, the whole stderr and the exit code of each."""

from __future__ import annotations

import base64
import json
import os
import re
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

import cli
from ledger.domain.signed_note import SignerKey, sign_note
from tests.conftest import make_event

# The signer key of golang/mod sumdb/note/note_test.go (commit fe2ec04f), so the checkpoint's
# signature line is the one Go's note package writes for the same text.
PETER_SKEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
PETER_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"


def run(*args: str, input: str | None = None) -> Result:
    return CliRunner().invoke(cli.main, list(args), input=input)


def expect(result: Result, code: int, stdout: str, stderr: str = "") -> None:
    assert (result.exit_code, result.stdout, result.stderr) == (code, stdout, stderr)


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


@pytest.fixture
def key(tmp_path: Path) -> str:
    path = tmp_path / "peter.key"
    path.write_text(PETER_SKEY + "\n")
    os.chmod(path, 0o600)
    return str(path)


def root_of(data: str) -> bytes:
    return bytes.fromhex(json.loads(run("--data", data, "audit", "digest").stdout)["merkle_root"])


def note_of(origin: str, size: int, root: bytes) -> str:
    text = f"{origin}\n{size}\n{base64.b64encode(root).decode()}\n"
    return sign_note(text, [SignerKey.parse(PETER_SKEY)]).decode()


def test_keygen_prints_the_verifier_key_and_refuses_to_overwrite(tmp_path: Path) -> None:
    out = tmp_path / "keys"
    result = run("audit", "keygen", "--out", str(out), "--name", "example.se/log")
    assert result.exit_code == 0
    assert re.fullmatch(r"example\.se/log\+[0-9a-f]{8}\+A[A-Za-z0-9+/]{43}\n", result.stdout)
    assert result.stderr == (f"signer key written to {out}/checkpoint.key (mode 0600: keep it "
                             f"secret), verifier key to {out}/checkpoint.vkey\n")
    assert (out / "checkpoint.vkey").read_text() == result.stdout
    assert (out / "checkpoint.key").read_text().startswith("PRIVATE+KEY+example.se/log+")
    assert os.stat(out / "checkpoint.key").st_mode & 0o777 == 0o600
    expect(run("audit", "keygen", "--out", str(out)), 2, "",
           f"Error: --out: {out}/checkpoint.key exists (use --force to replace it)\n")
    again = run("audit", "keygen", "--out", str(out), "--force", "--json")
    assert again.exit_code == 0
    fields = json.loads(again.stdout)
    assert set(fields) == {"name", "key_id", "verifier_key", "signer_file", "verifier_file"}
    assert fields["name"].startswith("consent-ledger/")
    assert fields["verifier_key"] == (out / "checkpoint.vkey").read_text().strip()
    expect(run("audit", "keygen", "--out", str(out), "--name", "has space", "--force"), 2, "",
           "Error: --name: the key name must be non-empty, without spaces or '+'\n")


def test_checkpoint_prints_the_signed_note(data: str, key: str, tmp_path: Path) -> None:
    note = note_of("PeterNeumann", 12, root_of(data))
    expect(run("--data", data, "audit", "checkpoint", "--sign", key), 0, note)
    out = tmp_path / "cp.txt"
    expect(run("--data", data, "audit", "checkpoint", "--sign", key, "--out", str(out)), 0, "",
           f"checkpoint of 12 records (signed by PeterNeumann+c74f20a3) written to {out}\n")
    assert out.read_text() == note
    expect(run("--data", data, "audit", "checkpoint", "--sign", key, "--out", str(out)), 2, "",
           f"Error: --out: {out} exists (use --force to replace it)\n")
    as_json = json.loads(run("--data", data, "audit", "checkpoint", "--sign", key, "--json").stdout)
    assert as_json == {"origin": "PeterNeumann", "size": 12, "merkle_root": root_of(data).hex(),
                       "extensions": [], "signed_by": "PeterNeumann+c74f20a3",
                       "verifier_key": PETER_VKEY, "note": note}


def test_checkpoint_origin_and_unsigned(data: str, key: str) -> None:
    root = base64.b64encode(root_of(data)).decode()
    expect(run("--data", data, "audit", "checkpoint", "--origin", "example.se/log"), 0,
           f"example.se/log\n12\n{root}\n")
    expect(run("--data", data, "audit", "checkpoint"), 2, "",
           "Error: --origin: an unsigned checkpoint needs the log's name (with --sign it is the "
           "key's name)\n")
    expect(run("--data", data, "audit", "checkpoint", "--sign", key, "--origin", "example.se/log"),
           0, note_of("example.se/log", 12, root_of(data)))


def test_a_readable_key_and_a_kafka_log_are_refused(data: str, key: str) -> None:
    os.chmod(key, 0o644)
    expect(run("--data", data, "audit", "checkpoint", "--sign", key), 2, "",
           f"Error: --sign: {key} is readable by other users (mode 0644); chmod 600 it\n")
    expect(run("--log", "kafka://localhost:9/t", "audit", "checkpoint", "--origin", "x"), 2, "",
           "Error: audit checkpoint: checkpoints cover the embedded log; on Kafka each partition "
           "is its own chain with no single Merkle tree (see `ledger kafka heads`)\n")


@pytest.fixture
def checkpoint(data: str, key: str, tmp_path: Path) -> str:
    out = tmp_path / "cp.txt"
    assert run("--data", data, "audit", "checkpoint", "--sign", key, "--out", str(out)).exit_code == 0
    return str(out)


def test_verify_against_a_checkpoint(data: str, checkpoint: str) -> None:
    head = json.loads(run("--data", data, "audit", "verify", "--json").stdout)["head_hash"]
    root = root_of(data).hex()
    expect(run("--data", data, "audit", "verify", "--checkpoint", checkpoint, "--key", PETER_VKEY), 0,
           f"ok: 12 records, chain intact, every record decodes; head {head[:16]}…\n"
           f"  holds exactly the 12 records of the checkpoint of PeterNeumann signed by "
           f"PeterNeumann+c74f20a3 (Merkle root {root[:16]}…)\n")
    report = json.loads(run("--data", data, "audit", "verify", "--checkpoint", checkpoint,
                            "--key", PETER_VKEY, "--json").stdout)
    assert report["ok"] is True and report["digest"] is None
    assert report["checkpoint"] == {"origin": "PeterNeumann", "size": 12, "merkle_root": root,
                                    "extensions": [], "consistent": True}


def test_verify_with_another_or_no_key(data: str, checkpoint: str, tmp_path: Path) -> None:
    other = run("audit", "keygen", "--out", str(tmp_path / "k"), "--name", "PeterNeumann").stdout.strip()
    expect(run("--data", data, "audit", "verify", "--checkpoint", checkpoint, "--key", other), 1, "",
           f"Error: --checkpoint {checkpoint}: not signed by {'+'.join(other.split('+', 2)[:2])}; signed only "
           "by PeterNeumann+c74f20a3\n")
    expect(run("--data", data, "audit", "verify", "--checkpoint", checkpoint), 2, "",
           "Error: --key: a checkpoint is trusted only with its verifier key: give --key "
           "VERIFIER_KEY\n")
    expect(run("--data", data, "audit", "verify", "--key", PETER_VKEY), 2, "",
           "Error: --key: verifies a --checkpoint; none was given\n")
    expect(run("--data", data, "audit", "verify", "--checkpoint", checkpoint, "--key", "nonsense"), 2,
           "", "Error: --key: not a verifier key (name+keyid+base64key)\n")


def test_a_changed_or_malformed_checkpoint(data: str, checkpoint: str, tmp_path: Path) -> None:
    text = Path(checkpoint).read_text()
    changed = tmp_path / "changed.txt"
    changed.write_text(text.replace("\n12\n", "\n11\n"))
    expect(run("--data", data, "audit", "verify", "--checkpoint", str(changed), "--key", PETER_VKEY),
           1, "", f"Error: --checkpoint {changed}: the signature by PeterNeumann+c74f20a3 does not "
           "verify: the text was changed after it was signed, or the signature is forged\n")
    crlf = tmp_path / "crlf.txt"
    crlf.write_bytes(text.replace("\n", "\r\n").encode())
    expect(run("--data", data, "audit", "verify", "--checkpoint", str(crlf), "--key", PETER_VKEY),
           2, "", f"Error: --checkpoint {crlf}: carriage return on line 1 (CRLF line ends?): lines "
           "end with a newline only\n")
    unsigned = tmp_path / "unsigned.txt"
    unsigned.write_text(text.split("\n\n")[0] + "\n")
    expect(run("--data", data, "audit", "verify", "--checkpoint", str(unsigned), "--key", PETER_VKEY),
           1, "", f"Error: --checkpoint {unsigned}: not signed (no blank line and signature lines "
           "after the checkpoint)\n")


def test_a_tampered_log_fails_against_the_checkpoint(data: str, checkpoint: str) -> None:
    db = sqlite3.connect(Path(data) / "log.sqlite", isolation_level=None)
    db.execute("DELETE FROM stored_events WHERE rowid > 10")
    db.close()
    expect(run("--data", data, "audit", "verify", "--checkpoint", checkpoint, "--key", PETER_VKEY), 1,
           "FAILED at position 11: truncated: the log ends at position 10 but the checkpoint of "
           "PeterNeumann covers 12 records\n")


def event_id_at(data: str, position: int) -> str:
    import uuid

    db = sqlite3.connect(Path(data) / "log.sqlite")
    hexid = db.execute("SELECT originator_id FROM stored_events WHERE rowid=?", (position,)).fetchone()[0]
    db.close()
    return str(uuid.UUID(hexid))


def test_prove_and_check_proof_with_a_checkpoint(data: str, checkpoint: str, tmp_path: Path) -> None:
    event = event_id_at(data, 4)
    proof = tmp_path / "proof.json"
    expect(run("--data", data, "audit", "prove", event, "--checkpoint", checkpoint, "--out", str(proof)),
           0, "", f"inclusion proof of position 4 written to {proof}\n")
    assert run("--data", data, "audit", "prove", event, "--checkpoint", checkpoint, "--key",
               PETER_VKEY).stdout == proof.read_text()
    expect(run("audit", "check-proof", str(proof), "--checkpoint", checkpoint, "--key", PETER_VKEY), 0,
           f"ok: event {event} is record 4 of 12: included under the checkpoint's Merkle root\n")
    checked = json.loads(run("audit", "check-proof", str(proof), "--checkpoint", checkpoint,
                             "--key", PETER_VKEY, "--json").stdout)
    assert checked["ok"] is True and checked["pinned_to_digest"] is True
    expect(run("audit", "check-proof", str(proof), "--checkpoint", checkpoint), 2, "",
           "Error: --key: a checkpoint is trusted only with its verifier key: give --key "
           "VERIFIER_KEY\n")
    expect(run("audit", "check-proof", str(proof), "--key", PETER_VKEY), 2, "",
           "Error: --key: verifies a --checkpoint; none was given\n")
    expect(run("--data", data, "audit", "prove", event), 2, "",
           "Error: --digest: give --digest FILE or --checkpoint FILE\n")


def test_consistency_from_a_checkpoint(data: str, checkpoint: str, key: str, tmp_path: Path) -> None:
    assert run("--data", data, "--now", "2026-03-06", "publish", "-", input=jsonl(5)).exit_code == 0
    grown = tmp_path / "grown.json"
    expect(run("--data", data, "audit", "consistency", "--checkpoint", checkpoint, "--out", str(grown)),
           0, "", f"consistency proof 12 -> 17 written to {grown}\n")
    later = tmp_path / "later.txt"
    assert run("--data", data, "audit", "checkpoint", "--sign", key, "--out", str(later)).exit_code == 0
    expect(run("audit", "check-proof", str(grown), "--checkpoint", checkpoint, "--checkpoint",
               str(later), "--key", PETER_VKEY), 0,
           "ok: the first 12 records are unchanged in the log of 17\n")
    digest = tmp_path / "digest.json"
    assert run("--data", data, "audit", "digest", "--out", str(digest)).exit_code == 0
    expect(run("--data", data, "audit", "consistency", "--digest", str(digest), "--checkpoint",
               checkpoint), 2, "", "Error: --checkpoint: give a digest or a checkpoint, not both\n")
