"""Signed checkpoints on a real embedded ledger: a checkpoint gives the digest's size and root,
the log verifies against it, a tampered log or another key fails, proofs pin to it."""

from __future__ import annotations

import hashlib
import os
import shutil
import sqlite3
from pathlib import Path

import pytest

from ledger.app.auditing import Auditor
from ledger.app.checkpoints import (
    SIGNER_FILE,
    VERIFIER_FILE,
    keygen,
    load_checkpoint,
    load_signer,
    load_verifier,
    make_checkpoint,
    refuse_partitioned,
    write_checkpoint,
)
from ledger.app.service import Ledger
from ledger.config import Settings
from ledger.domain.chain_check import FORGED, TRUNCATED, AuditFinding
from ledger.domain.checkpoint import Checkpoint, SignedCheckpoint
from ledger.domain.clock import FixedClock
from ledger.domain.errors import ConfigError, UsageError
from ledger.domain.proofs import check_consistency, check_inclusion
from ledger.domain.signed_note import NoteError, NoteNotVerified
from ledger.domain.timeutil import parse_timestamp
from tests.conftest import make_event

N = 60
DAY = 86_400 * 10**6
TYPES = ["SubjectRegistered", "ConsentGiven", "LoggedIn", "ServiceUsed", "NewsletterSubscribed"]


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("checkpoints") / "ledger-data"
    Ledger.init(path)
    start = parse_timestamp("2026-03-01T12:00:00Z")
    with Ledger.open(path) as ledger:
        for day in range(3):
            ledger.clock = FixedClock(start + day * DAY)
            ledger.record_many([make_event(TYPES[i % len(TYPES)],
                                           subject={"email": f"person{i % 7}@example.se"})
                                for i in range(day * 20, day * 20 + 20)])
    return path


@pytest.fixture
def data(template: Path, tmp_path: Path) -> Path:
    path = tmp_path / "ledger-data"
    shutil.copytree(template, path)
    return path


@pytest.fixture
def keys(tmp_path: Path) -> Path:
    out = tmp_path / "keys"
    keygen(out, "example.se/consents")
    return out


def settings(data: Path) -> Settings:
    return Settings(data_dir=data)


def signed(data: Path, keys: Path, tmp_path: Path, name: str = "cp.txt") -> Path:
    written = make_checkpoint(settings(data), sign=keys / SIGNER_FILE)
    return write_checkpoint(written, tmp_path / name)


def test_keygen_writes_a_private_signer_and_refuses_to_overwrite(keys: Path) -> None:
    assert oct(os.stat(keys / SIGNER_FILE).st_mode & 0o777) == "0o600"
    assert oct(os.stat(keys).st_mode & 0o777) == "0o700"
    signer = load_signer(keys / SIGNER_FILE)
    assert load_verifier(str(keys / VERIFIER_FILE)) == signer.verifier()
    assert load_verifier((keys / VERIFIER_FILE).read_text().strip()) == signer.verifier()
    with pytest.raises(UsageError, match="exists \\(pass force=True"):
        keygen(keys)
    assert load_signer(keys / SIGNER_FILE) == signer  # untouched
    assert keygen(keys, force=True).verifier != signer.verifier()


def test_the_default_key_name_is_unique() -> None:
    from ledger.app.checkpoints import default_key_name

    assert default_key_name().startswith("consent-ledger/") and default_key_name() != default_key_name()


def test_a_readable_signer_key_is_refused(keys: Path, data: Path) -> None:
    os.chmod(keys / SIGNER_FILE, 0o644)
    with pytest.raises(ConfigError, match="readable by other users \\(mode 0644\\); chmod 600"):
        make_checkpoint(settings(data), sign=keys / SIGNER_FILE)


def test_a_checkpoint_is_the_digest_signed(data: Path, keys: Path, tmp_path: Path) -> None:
    path = signed(data, keys, tmp_path)
    with Auditor.open(settings(data)) as auditor:
        digest = auditor.digest(0)
    read = load_checkpoint(path, [load_verifier(str(keys / VERIFIER_FILE))])
    assert (read.size, read.merkle_root) == (digest.size, digest.merkle_root) == (N, digest.merkle_root)
    assert read.checkpoint.origin == "example.se/consents"  # the key's name
    assert [s.label for s in read.verified] == [load_signer(keys / SIGNER_FILE).verifier().label]
    assert oct(os.stat(path).st_mode & 0o777) == "0o600"


def test_the_log_verifies_against_its_checkpoint(data: Path, keys: Path, tmp_path: Path) -> None:
    read = load_checkpoint(signed(data, keys, tmp_path), [load_verifier(str(keys / VERIFIER_FILE))])
    with Auditor.open(settings(data)) as auditor:
        report = auditor.verify(read.checkpoint)
    assert report.ok and report.digest_matches is True
    assert report.as_dict()["checkpoint"]["consistent"] is True
    assert report.as_dict()["digest"] is None


def test_another_key_or_a_changed_checkpoint_fails(data: Path, keys: Path, tmp_path: Path) -> None:
    path = signed(data, keys, tmp_path)
    other = keygen(tmp_path / "other", "example.se/consents").verifier  # same name, new key
    with pytest.raises(NoteNotVerified, match=r"not signed by example\.se/consents\+"):
        load_checkpoint(path, [other])
    changed = path.read_bytes().replace(f"\n{N}\n".encode(), f"\n{N - 1}\n".encode())
    (tmp_path / "changed.txt").write_bytes(changed)
    with pytest.raises(NoteNotVerified, match="does not verify"):
        load_checkpoint(tmp_path / "changed.txt", [load_verifier(str(keys / VERIFIER_FILE))])


def test_a_rewritten_history_fails_against_the_checkpoint(data: Path, keys: Path,
                                                          tmp_path: Path) -> None:
    read = load_checkpoint(signed(data, keys, tmp_path), [load_verifier(str(keys / VERIFIER_FILE))])
    db = sqlite3.connect(data / "log.sqlite", isolation_level=None)
    states = {pos: bytes(s) for pos, s in db.execute("SELECT rowid, state FROM stored_events")}
    states[20] = states[20][:-1] + bytes([states[20][-1] ^ 1])  # one byte of record 20
    for pos in range(21, N + 1):  # and every later prev_hash recomputed: the chain still links
        states[pos] = hashlib.sha256(states[pos - 1]).digest() + states[pos][32:]
    for pos in range(20, N + 1):
        db.execute("UPDATE stored_events SET state=? WHERE rowid=?", (states[pos], pos))
    db.close()
    with Auditor.open(settings(data)) as auditor:
        assert auditor.verify(decode=False).ok  # the chain alone cannot tell
        report = auditor.verify(read.checkpoint, decode=False)
    assert not report.ok and report.digest_matches is False
    assert report.finding is not None and report.finding.kind == FORGED
    assert "the checkpoint's Merkle root" in report.finding.reason


def test_a_truncated_log_fails_against_the_checkpoint(data: Path, keys: Path, tmp_path: Path) -> None:
    read = load_checkpoint(signed(data, keys, tmp_path), [load_verifier(str(keys / VERIFIER_FILE))])
    db = sqlite3.connect(data / "log.sqlite", isolation_level=None)
    db.execute("DELETE FROM stored_events WHERE rowid > ?", (N - 5,))
    db.close()
    with Auditor.open(settings(data)) as auditor:
        report = auditor.verify(read.checkpoint)
    assert report.finding is not None and report.finding.kind == TRUNCATED
    assert report.finding.reason == (f"truncated: the log ends at position {N - 5} but the checkpoint of "
                                     f"example.se/consents covers {N} records")


def test_no_checkpoint_of_a_broken_chain(data: Path, keys: Path, tmp_path: Path) -> None:
    db = sqlite3.connect(data / "log.sqlite", isolation_level=None)
    db.execute("DELETE FROM stored_events WHERE rowid = 7")
    db.close()
    with pytest.raises(AuditFinding, match="no digest of a broken chain"):
        make_checkpoint(settings(data), sign=keys / SIGNER_FILE)


def test_proofs_pin_to_a_checkpoint(data: Path, keys: Path, tmp_path: Path) -> None:
    vkey = load_verifier(str(keys / VERIFIER_FILE))
    read = load_checkpoint(signed(data, keys, tmp_path), [vkey])
    with Ledger.open(data) as ledger:
        ledger.clock = FixedClock(parse_timestamp("2026-03-10T12:00:00Z"))
        ledger.record_many([make_event("LoggedIn") for _ in range(9)])
        record = next(ledger.log.read(17))
    with Auditor.open(settings(data)) as auditor:
        event_id = auditor.codec.decode(record.payload).event_id
        inclusion = auditor.prove(event_id, read.checkpoint)
        consistency = auditor.consistency(read.checkpoint, 0)
    assert check_inclusion(inclusion, [read]).ok
    assert consistency.old_size == N and consistency.new_size == N + 9
    assert check_consistency(consistency, [read]).ok
    later = load_checkpoint(signed(data, keys, tmp_path, "later.txt"), [vkey])
    assert check_consistency(consistency, [read, later]).ok
    assert not check_inclusion(inclusion, [later]).ok  # a proof for N records, not N + 9


def test_an_unsigned_checkpoint_needs_an_origin(data: Path) -> None:
    with pytest.raises(UsageError, match=r"^origin: an unsigned checkpoint needs the log.s name \(with sign "):
        make_checkpoint(settings(data))
    written = make_checkpoint(settings(data), origin="example.se/unsigned")
    assert written.note.decode().splitlines()[:2] == ["example.se/unsigned", str(N)]
    assert written.signer is None


@pytest.mark.parametrize("content, reason", [
    (b"not a key\n", "white space"),
    (b"PRIVATE+KEY+a+00000000+AAAA\n", "unknown signature type 0x00"),
    (b"\xff\xfe\n", "not UTF-8"),
])
def test_malformed_key_files(tmp_path: Path, content: bytes, reason: str) -> None:
    path = tmp_path / "bad.key"
    path.write_bytes(content)
    os.chmod(path, 0o600)
    with pytest.raises(UsageError, match=reason):
        load_signer(path)
    with pytest.raises(NoteError):
        load_verifier("no+such+key")


def test_kafka_is_refused() -> None:
    with pytest.raises(UsageError, match="on Kafka each partition is its own chain"):
        refuse_partitioned(Settings(data_dir=Path("unused"), log_url="kafka://localhost:9092/t"),
                           "--checkpoint")


def test_a_demo_log_checkpoints_and_verifies(tmp_path: Path, keys: Path) -> None:
    from click.testing import CliRunner

    import cli

    data = tmp_path / "demo"
    result = CliRunner().invoke(cli.main, ["--data", str(data), "--now", "2026-11-01", "demo",
                                           "--subjects", "40", "--years", "2", "--sweeps", "end", "--json"])
    assert result.exit_code == 0, result.output
    path = signed(data, keys, tmp_path, "demo.txt")
    read = load_checkpoint(path, [load_verifier(str(keys / VERIFIER_FILE))])
    with Auditor.open(settings(data)) as auditor:
        assert read.size == auditor.source.size() > 40 * 5
        assert auditor.verify(read.checkpoint).digest_matches is True


def test_a_proof_for_another_tree_names_the_checkpoint(data: Path, keys: Path, tmp_path: Path) -> None:
    vkey = load_verifier(str(keys / VERIFIER_FILE))
    read = load_checkpoint(signed(data, keys, tmp_path), [vkey])
    with Auditor.open(settings(data)) as auditor:
        event_id = auditor.codec.decode(next(auditor.source.records(3)).payload).event_id
        proof = auditor.prove(event_id, read.checkpoint)
    other = SignedCheckpoint(Checkpoint(read.checkpoint.origin, N, bytes(32)), (), ())
    check = check_inclusion(proof, [other])
    assert not check.ok and check.detail == (f"the proof's root for {N} records is not the "
                                             "checkpoint's merkle_root")
