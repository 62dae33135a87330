"""Issue 9 row 5: rejected input (dead letters) is covered by erasure and destroyed after a
retention period; reasons never quote the rejected value.

Real components only: a real data directory, the real vault file, the CLI through click's
CliRunner, the real sweep."""

from __future__ import annotations

import base64
import json
import os
import sqlite3
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

import cli
from ledger.adapters.dead_letters import period_secret
from ledger.app.service import Ledger
from ledger.app.sweep import sweep
from ledger.domain.clock import FixedClock
from ledger.domain.timeutil import parse_timestamp
from tests.conftest import make_event

EMAIL = "Ivy.Holm@example.se"


def run(*args: str, input: str | bytes | None = None):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(cli.main, list(args), input=input, catch_exceptions=False)


def at(ledger: Ledger, when: str) -> None:
    ledger.clock = FixedClock(parse_timestamp(when))


def line(obj: object) -> bytes:
    return json.dumps(obj, ensure_ascii=False).encode() + b"\n"


def bad_for_ivy(controller: str = "cowrite", **overrides: object) -> bytes:
    """A line that parses, names a known controller and Ivy's e-mail, but breaks a rule."""
    event = make_event("ConsentGiven", controller=controller, subject={"email": EMAIL},
                       purpose="Not A Purpose", pii={"name": "Ivy Holm"})
    event.update(overrides)
    return line(event)


def secret_names(data_dir: Path) -> list[str]:
    con = sqlite3.connect(data_dir / "keys.sqlite")
    try:
        return sorted(r[0] for r in con.execute("SELECT name FROM secrets"))
    finally:
        con.close()


def raw_file(ledger: Ledger) -> bytes:
    return ledger.dead_letters.path.read_bytes()


def test_row05_a_derivable_subject_seals_the_dead_letter_under_its_key_and_erasure_covers_it(
        ledger: Ledger) -> None:
    report = ledger.publish([bad_for_ivy()], origin="bad.jsonl")
    assert report.rejected == 1
    pid = ledger.subject_id("cowrite", email=EMAIL)
    (entry,) = list(ledger.dead_letters.read())
    # Which key sealed it: controller, pseudonym, category, generation (no natural identifier).
    assert entry["sealed_with"] == {"controller": "cowrite", "subject": pid,
                                    "category": "profile", "generation": 1}
    assert entry["reason"].startswith("purpose:")
    (readable,) = list(ledger.dead_letters.read(decrypt=True))
    assert readable["input_status"] == "readable" and EMAIL in readable["input"]
    raw = raw_file(ledger)
    assert EMAIL.encode() not in raw and EMAIL.lower().encode() not in raw
    assert b"Ivy Holm" not in raw
    assert stat.S_IMODE(ledger.dead_letters.path.stat().st_mode) == 0o600

    # Erasure: shred the subject's keys through the vault port.
    assert "profile" in ledger.vault.shred("cowrite", pid, ["profile", "bookkeeping"])
    (erased,) = list(ledger.dead_letters.read(decrypt=True))  # never raises
    assert erased["input"] is None and erased["input_status"] == "erased"
    assert erased["reason"] == entry["reason"]  # the reason stays, in clear


def test_row05_the_sweep_erasing_a_subject_makes_its_dead_letters_unreadable(
        ledger: Ledger, data_dir: Path) -> None:
    at(ledger, "2026-03-01")
    ledger.record(make_event("SubjectRegistered", controller="coegi", subject={"email": EMAIL},
                             relation="consultant", occurred_at="2026-03-01"))
    at(ledger, "2026-03-02")
    assert ledger.publish([bad_for_ivy("coegi", occurred_at="2026-03-02")]).rejected == 1
    at(ledger, "2026-03-03")
    ledger.record(make_event("RightsRequested", controller="coegi", subject={"email": EMAIL},
                             occurred_at="2026-03-03", request_id="rq-ivy", right="erasure"))
    at(ledger, "2026-03-04")
    report = sweep(ledger, controller="coegi")
    assert report.appended.get("SubjectErased") == 1
    (entry,) = list(ledger.dead_letters.read(decrypt=True))
    assert entry["input_status"] == "erased" and entry["input"] is None
    # The CLI reading path says the same and exits 0.
    listed = run("--data", str(data_dir), "dead-letters", "--decrypt", "--json")
    assert listed.exit_code == 0, listed.output
    (shown,) = json.loads(listed.output)
    assert shown["input_status"] == "erased" and shown["input"] is None
    text = run("--data", str(data_dir), "dead-letters", "--decrypt")
    assert text.exit_code == 0 and "erased" in text.output and EMAIL not in text.output


def test_row05_a_dead_letter_for_an_erased_subject_does_not_bring_a_key_back(
        ledger: Ledger) -> None:
    """After the subject's key was shredded, a new rejected line of theirs is sealed under the
    month's dead-letter key: making a new subject key for it would hold their data under a key
    that no erasure destroys (the subject is erased already)."""
    assert ledger.publish([bad_for_ivy()]).rejected == 1
    pid = ledger.subject_id("cowrite", email=EMAIL)
    with ledger.writer_lock:
        assert "profile" in ledger.vault.shred("cowrite", pid, ["profile", "bookkeeping"])
    assert ledger.publish([bad_for_ivy()]).rejected == 1
    first, second = list(ledger.dead_letters.read(decrypt=True))
    assert first["input_status"] == "erased"
    assert second["sealed_with"] == {"secret": period_secret(parse_timestamp(second["rejected_at"]))}
    assert second["input_status"] == "readable"
    assert ledger.vault.live_keys([("cowrite", pid)]) == []  # no key made for them again


def test_row05_reasons_never_quote_the_rejected_value(ledger: Ledger) -> None:
    leaky = [
        line(make_event(type="ivy2@example.se")),  # unknown event type: the value is an e-mail
        line(make_event(controller="ivy3@example.se")),
        line(make_event(type="IvyHolm850101")),
        b"{\"type\": \"LoggedIn\", \"ivy4@example.se\": 1}\n",  # unknown field named by an e-mail
    ]
    assert ledger.publish(leaky).rejected == len(leaky)
    raw = raw_file(ledger)
    for value in (b"ivy2@example.se", b"ivy3@example.se", b"IvyHolm850101", b"ivy4@example.se"):
        assert value not in raw
    reasons = [e["reason"] for e in ledger.dead_letters.read()]
    assert reasons[0].startswith("type:") and reasons[1].startswith("controller:")
    assert reasons[2].startswith("type:")


def test_row05_a_line_without_a_subject_is_readable_until_purged_then_its_key_is_gone(
        ledger: Ledger, data_dir: Path) -> None:
    at(ledger, "2026-03-05T12:00:00Z")
    assert ledger.publish([b"not json, from ivy.holm@example.se\n"]).rejected == 1
    at(ledger, "2026-04-02T08:00:00Z")
    assert ledger.publish([b"{\"subject\": {\"email\": \"ivy.holm@example.se\"}}\n"]).rejected == 1
    first, second = ledger.dead_letters.read()
    assert first["sealed_with"] == {"secret": "dead-letters/2026-03"}
    assert second["sealed_with"] == {"secret": "dead-letters/2026-04"}  # no known controller
    assert {"dead-letters/2026-03", "dead-letters/2026-04"} <= set(secret_names(data_dir))
    assert b"ivy.holm" not in raw_file(ledger)
    ledger.close()

    # Nothing wholly before T: nothing destroyed.
    early = run("--data", str(data_dir), "dead-letters", "purge", "--before", "2026-03-01", "--json")
    assert early.exit_code == 0, early.output
    assert json.loads(early.output)["entries_purged"] == 0
    listed = run("--data", str(data_dir), "dead-letters", "--decrypt", "--json")
    assert [e["input_status"] for e in json.loads(listed.output)] == ["readable", "readable"]

    dry = run("--data", str(data_dir), "dead-letters", "purge", "--before", "2026-04-01", "--dry-run")
    assert dry.exit_code == 0 and len(dry.output.strip().splitlines()) == 1
    assert len(json.loads(run("--data", str(data_dir), "dead-letters", "--json").output)) == 2

    purged = run("--data", str(data_dir), "dead-letters", "purge", "--before", "2026-04-01", "--json")
    assert purged.exit_code == 0, purged.output
    result = json.loads(purged.output)
    assert (result["entries_purged"], result["keys_destroyed"]) == (1, 1)
    assert "dead-letters/2026-03" not in secret_names(data_dir)
    assert "dead-letters/2026-04" in secret_names(data_dir)
    (left,) = json.loads(run("--data", str(data_dir), "dead-letters", "--decrypt", "--json").output)
    assert left["input_status"] == "readable" and "ivy.holm" in left["input"]
    path = data_dir / "dead-letters.jsonl"
    assert b"not json" not in path.read_bytes()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert not [p for p in data_dir.iterdir() if p.name.startswith(".dead-letters")]

    text = run("--data", str(data_dir), "dead-letters", "purge", "--before", "2026-05-01")
    assert text.exit_code == 0 and len(text.output.strip().splitlines()) == 1
    assert "1" in text.output
    assert not any(n.startswith("dead-letters") for n in secret_names(data_dir))
    assert run("--data", str(data_dir), "dead-letters", "--json").output.strip() == "[]"


@pytest.mark.parametrize("bad", ["yesterday", "2026-13-01", ""])
def test_row05_purge_with_a_bad_time_is_one_line_exit_2(data_dir: Path, bad: str) -> None:
    result = CliRunner().invoke(cli.main, ["--data", str(data_dir), "dead-letters", "purge",
                                           "--before", bad])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1


@pytest.mark.slow
def test_row05_the_sweep_purges_dead_letters_after_the_policy_retention(
        ledger: Ledger, data_dir: Path, tmp_path: Path) -> None:
    at(ledger, "2026-03-05T12:00:00Z")
    ledger.publish([b"{broken\n", bad_for_ivy()])
    assert len(list(ledger.dead_letters.read())) == 2
    at(ledger, "2026-03-30")  # 25 days later: within the default P30D
    report = sweep(ledger)
    assert report.dead_letters_purged == 0 and report.as_dict()["dead_letters_purged"] == 0
    assert len(list(ledger.dead_letters.read())) == 2
    at(ledger, "2026-04-05T12:00:01Z")  # just over 30 days
    report = sweep(ledger)
    assert report.dead_letters_purged == 2
    assert list(ledger.dead_letters.read()) == []
    # March's key goes once the whole month is past the retention.
    assert "dead-letters/2026-03" in secret_names(data_dir)
    at(ledger, "2026-05-01")
    assert sweep(ledger).dead_letters_purged == 0
    assert "dead-letters/2026-03" not in secret_names(data_dir)

    # A policy's own retention: dead_letter_retention = "P7D".
    policy = tmp_path / "short.toml"
    policy.write_text(
        Path("ledger/domain/retention/policies/cowrite.toml").read_text().replace(
            'name = "cowrite"', 'name = "short"\ndead_letter_retention = "P7D"'))
    at(ledger, "2026-05-10")
    ledger.publish([bad_for_ivy(), bad_for_ivy("coegi")])
    at(ledger, "2026-05-16")
    assert sweep(ledger, controller="cowrite", policy_path=str(policy)).dead_letters_purged == 0
    at(ledger, "2026-05-18")
    assert sweep(ledger, controller="cowrite", policy_path=str(policy)).dead_letters_purged == 1
    # coegi's dead letter is not cowrite's to purge: it waits for coegi's own P30D.
    (left,) = ledger.dead_letters.read()
    assert left["controller"] == "coegi"


def test_row05_a_bad_retention_in_a_policy_is_a_config_error() -> None:
    from ledger.domain.errors import ConfigError
    from ledger.domain.retention.policy import Duration, load_policy, parse_policy

    assert load_policy("cowrite").dead_letter_retention == Duration(days=30)
    with pytest.raises(ConfigError, match="dead_letter_retention"):
        parse_policy('name = "x"\ninactive_after = "P1Y"\ndead_letter_retention = "30 days"', "x")


def _old_format_entry(key: bytes, at: str, line_no: int, raw: bytes) -> str:
    """Exactly what the writer wrote before issue 9: one global key, no key id."""
    nonce = os.urandom(12)
    sealed = nonce + AESGCM(key).encrypt(nonce, raw, None)
    return json.dumps({"rejected_at": at, "origin": "old.jsonl", "line": line_no,
                       "reason": "malformed JSON: Expecting value at column 1",
                       "input_sealed": base64.b64encode(sealed).decode()}) + "\n"


def test_row05_an_old_format_dead_letter_file_still_reads_and_purges(
        ledger: Ledger, data_dir: Path) -> None:
    legacy = ledger.vault.secret("dead-letters", create=True)
    path = data_dir / "dead-letters.jsonl"
    with open(path, "w", encoding="utf-8") as f:
        f.write(_old_format_entry(legacy, "2026-01-10T10:00:00.000000Z", 1, b"old one"))
        f.write(_old_format_entry(legacy, "2026-02-10T10:00:00.000000Z", 2, b"old two"))
    at(ledger, "2026-03-05")
    ledger.publish([b"new one\n"])
    entries = list(ledger.dead_letters.read(decrypt=True))
    assert [e["input"] for e in entries] == ["old one", "old two", "new one"]
    assert [e["input_status"] for e in entries] == ["readable"] * 3
    assert entries[0]["sealed_with"] == {"secret": "dead-letters"}
    listed = run("--data", str(data_dir), "dead-letters")
    assert listed.exit_code == 0 and listed.output.count("old.jsonl") == 2
    # The legacy key stays while an entry needs it ...
    first = ledger.dead_letters.purge(parse_timestamp("2026-02-01"))
    assert (first.entries, first.keys) == (1, 0)
    assert "dead-letters" in secret_names(data_dir)
    # ... and goes with the last entry sealed under it.
    second = ledger.dead_letters.purge(parse_timestamp("2026-03-01"))
    assert (second.entries, second.keys) == (1, 1)
    assert "dead-letters" not in secret_names(data_dir)
    (left,) = list(ledger.dead_letters.read(decrypt=True))
    assert left["input"] == "new one"


def test_row05_a_purged_key_reads_as_unreadable_never_raises(ledger: Ledger, data_dir: Path) -> None:
    at(ledger, "2026-03-05")
    ledger.publish([b"gone soon\n"])
    assert ledger.vault.destroy_secret("dead-letters/2026-03")
    assert not ledger.vault.destroy_secret("dead-letters/2026-03")  # already gone
    (entry,) = list(ledger.dead_letters.read(decrypt=True))
    assert entry["input"] is None and entry["input_status"] == "purged"
    # A torn last line (a crash mid-write) neither breaks reading nor the next write.
    with open(ledger.dead_letters.path, "ab") as f:
        f.write(b'{"rejected_at": "2026-03-05T00:00')
    at(ledger, "2026-03-06")
    ledger.publish([b"after the crash\n"])
    entries = list(ledger.dead_letters.read(decrypt=True))
    assert entries[-1]["input"] == "after the crash"
    assert entries[1]["input_status"] == "corrupt"


def test_row05_destroy_secret_removes_the_wrapped_bytes_from_the_vault_file(
        ledger: Ledger, data_dir: Path) -> None:
    ledger.vault.secret("dead-letters/2030-01", create=True)
    con = sqlite3.connect(data_dir / "keys.sqlite")
    (wrapped,) = con.execute("SELECT wrapped FROM secrets WHERE name='dead-letters/2030-01'").fetchone()
    con.close()
    assert ledger.vault.destroy_secret("dead-letters/2030-01")
    for name in ("keys.sqlite", "keys.sqlite-wal"):
        if (data_dir / name).exists():
            assert wrapped not in (data_dir / name).read_bytes()
    assert "dead-letters/2030-01" not in secret_names(data_dir)


def test_row05_a_pseudonymised_subjects_dead_letter_reads_as_sealed(ledger: Ledger) -> None:
    ledger.publish([bad_for_ivy(subject={"account": "cw-ivy-1"})])
    pid = ledger.subject_id("cowrite", account="cw-ivy-1")
    (entry,) = list(ledger.dead_letters.read())
    assert entry["sealed_with"]["subject"] == pid
    ledger.vault.seal("cowrite", pid)
    (sealed,) = list(ledger.dead_letters.read(decrypt=True))
    assert sealed["input"] is None and sealed["input_status"] == "sealed"
    # A key id pointing elsewhere opens nothing (and never raises).
    path = ledger.dead_letters.path
    path.write_text(path.read_text().replace('"generation": 1', '"generation": 2'))
    (moved,) = list(ledger.dead_letters.read(decrypt=True))
    assert moved["input_status"] == "erased"
