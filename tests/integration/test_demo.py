"""The demo end to end: a multi-year history published under a moving clock, with no personal
data in plaintext anywhere under the data directory."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

import cli
from ledger.app.service import Ledger
from ledger.demo.history import demo_people
from ledger.domain.errors import KeyUnavailable
from tests.conftest import DEMO_NOW, DEMO_SEED, DEMO_SUBJECTS

SUBJECTS, SEED, NOW = DEMO_SUBJECTS, DEMO_SEED, DEMO_NOW


@pytest.fixture
def demo_dir(demo_data: Path) -> Path:
    """The demo of SUBJECTS subjects (tests/conftest.py), shared with other modules."""
    return demo_data


def test_no_personal_data_in_plaintext_anywhere(demo_dir: Path) -> None:
    everything = b"".join(p.read_bytes() for p in demo_dir.rglob("*") if p.is_file())
    people = demo_people(SUBJECTS, SEED)
    assert people
    for person in people:
        needles = {person.email, person.email.strip().lower(), person.name, person.phone,
                   person.phone.replace(" ", "")}
        for needle in needles:
            assert needle.encode() not in everything, f"plaintext {needle!r} found"


def test_the_history_is_recorded_in_time_order_and_decrypts(demo_dir: Path) -> None:
    with Ledger.open(demo_dir) as ledger:
        records = list(ledger.log.read())
        assert [r.recorded_at for r in records] == sorted(r.recorded_at for r in records)
        assert records[-1].recorded_at - records[0].recorded_at > 3 * 365 * 86_400 * 10**6
        for before, after in itertools.pairwise(records):
            assert after.prev_hash == before.hash
        emails = {p.email.strip().lower() for p in demo_people(SUBJECTS, SEED)}
        seen = set()
        for record in records[::7]:
            event = ledger.codec.decode(record.payload)
            assert event.occurred_at <= event.recorded_at
            try:
                personal = ledger.personal_data(event)
            except KeyUnavailable:  # the demo's sweep erased or pseudonymised this subject
                continue
            if personal and "email" in personal.get("subject", {}):
                seen.add(personal["subject"]["email"].strip().lower())
        assert seen and seen <= emails


def test_running_the_demo_again_appends_nothing(demo_dir: Path) -> None:
    result = CliRunner().invoke(cli.main, ["--data", str(demo_dir), "--now", NOW, "demo",
                                           "--subjects", str(SUBJECTS), "--sweeps", "end", "--seed", str(SEED), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["accepted"] == 0


def test_the_demo_ends_with_a_sweep_whose_erasures_are_real(demo_dir: Path) -> None:
    with Ledger.open(demo_dir) as ledger:
        erased = [e for _, e in ledger.events() if e.type == "SubjectErased"]
        assert erased, "the demo history should have people due for erasure"
        subjects = {(e.controller, e.subject) for e in erased if "profile" in e.body["keys_shredded"]}
        for _, event in ledger.events():
            if (event.controller, event.subject) in subjects and event.pii is not None \
                    and event.type != "InvoiceUsageRecorded" and event.recorded_at < erased[0].recorded_at:
                with pytest.raises(KeyUnavailable):
                    ledger.personal_data(event)


def test_the_demo_log_verifies(demo_dir: Path) -> None:
    result = CliRunner().invoke(cli.main, ["--data", str(demo_dir), "audit", "verify", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["ok"] and report["decode_checked"] and report["records"] > SUBJECTS * 5


@pytest.mark.slow
def test_a_second_demo_into_the_same_directory_says_already_published(tmp_path: Path) -> None:
    data = str(tmp_path / "d")
    # the final sweep only: the figures below are those of one sweep at the clock
    args = ["--data", data, "--now", "2026-11-01", "demo", "--subjects", "20", "--sweeps", "end"]
    first = CliRunner().invoke(cli.main, args)
    assert first.exit_code == 0, first.output
    assert "accepted 781, duplicates 0" in first.stdout and "already published" not in first.stdout
    again = CliRunner().invoke(cli.main, args)
    assert (again.exit_code, again.stderr) == (0, "")
    assert again.stdout == (
        f"Demo history 2021-11-01 .. 2026-11-01 in {data}: already published: 0 accepted, "
        "781 duplicates\n"
        "  coegi: 8 subjects, 7 active / 1 inactive (no activity for P3Y); consents 5 granted, "
        "0 withdrawn, 0 objections\n"
        "  cowrite: 11 subjects, 1 active / 10 inactive (no activity for P6M); consents 12 granted, "
        "1 withdrawn, 0 objections\n"
        "Retention sweep at 2026-11-01T00:00:00.000000Z: decisions keep 16, notify 0, "
        "pseudonymise 0, erase 0, hold 0, pseudonymised 2, erased 1\n"
        "  appended: nothing; keys destroyed: 0\n")
    as_json = CliRunner().invoke(cli.main, [*args, "--json"])
    summary = json.loads(as_json.stdout)
    assert (as_json.exit_code, summary["already_published"], summary["accepted"],
            summary["duplicates"]) == (0, True, 0, 781)
