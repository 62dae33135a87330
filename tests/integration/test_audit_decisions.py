"""`ledger audit decisions` end to end: real sweeps are justified; erasures appended by hand
(too early, without a notice, despite a legal hold, under an unknown policy) are not."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
from click.testing import CliRunner

import cli
from ledger.app.audit_decisions import audit
from ledger.app.service import Ledger
from ledger.app.sweep import sweep
from ledger.domain.clock import FixedClock
from ledger.domain.events import Event
from ledger.domain.retention.policy import load_policy
from ledger.domain.timeutil import parse_timestamp
from projections.engine.projector import Projector
from projections.store.duckdb_store import DuckDBStore
from tests.conftest import make_event

EMAIL = "Greta.Lindqvist@example.se"
COWRITE_HASH = load_policy("cowrite").content_hash


def at(ledger: Ledger, when: str) -> None:
    ledger.clock = FixedClock(parse_timestamp(when))


def publish(ledger: Ledger, when: str, event_type: str, **kw) -> None:  # type: ignore[no-untyped-def]
    at(ledger, when)
    ledger.record(make_event(event_type, occurred_at=when, subject={"email": EMAIL},
                             pii={"name": "Greta Lindqvist"}, **kw))


def erase_by_hand(ledger: Ledger, when: str, keys: tuple[str, ...] = ("profile", "bookkeeping"),
                  policy_hash: str = COWRITE_HASH, reason: str = "inactivity") -> None:
    """What a careless operator (or a buggy sweep) might append."""
    t = parse_timestamp(when)
    pid = ledger.subject_id("cowrite", email=EMAIL)
    ledger.append_events([Event("SubjectErased", str(uuid.uuid4()), "cowrite", pid, t, t, "ledger",
                                 "system:retention-sweep",
                                 {"reason": reason, "policy": "cowrite", "policy_hash": policy_hash,
                                  "keys_shredded": list(keys), "evidence": []})])


def inactive_greta(ledger: Ledger) -> None:
    publish(ledger, "2025-06-01", "SubjectRegistered")
    publish(ledger, "2026-01-10", "LoggedIn")


def test_a_notice_then_an_erasure_by_the_sweep_are_justified(ledger: Ledger) -> None:
    inactive_greta(ledger)
    for when in ("2026-07-20", "2026-08-02", "2026-08-03"):
        at(ledger, when)
        sweep(ledger, controller="cowrite")
    result = audit(ledger)
    assert [(v.event.type, v.justified) for v in result.verdicts] == [
        ("DeletionNoticeSent", True), ("SubjectErased", True)]
    assert result.ok and result.runs == 2
    # --as-of: only what was recorded by then
    early = audit(ledger, parse_timestamp("2026-07-31"))
    assert [v.event.type for v in early.verdicts] == ["DeletionNoticeSent"]


def test_an_erasure_the_day_after_the_notice_is_unjustified(ledger: Ledger) -> None:
    inactive_greta(ledger)
    at(ledger, "2026-07-20")
    sweep(ledger, controller="cowrite")
    erase_by_hand(ledger, "2026-07-21")
    verdicts = audit(ledger).verdicts
    assert verdicts[0].justified
    assert not verdicts[1].justified
    assert "before its notice period ended (erasure due 2026-08-03)" in verdicts[1].reason


def test_an_erasure_without_any_notice_is_unjustified(ledger: Ledger) -> None:
    inactive_greta(ledger)
    erase_by_hand(ledger, "2026-07-20")
    (v,) = audit(ledger).verdicts
    assert not v.justified and "notice missing" in v.reason


def test_an_erasure_despite_a_legal_hold_is_unjustified(ledger: Ledger) -> None:
    publish(ledger, "2025-06-01", "SubjectRegistered")
    publish(ledger, "2026-02-20", "InvoiceUsageRecorded")
    publish(ledger, "2026-03-01", "RightsRequested", request_id="rq-9", right="erasure")
    at(ledger, "2026-03-01T12:00:00Z")
    sweep(ledger, controller="cowrite")  # pseudonymised; erasure due 2026-04-30
    erase_by_hand(ledger, "2026-04-30T12:00:00Z", reason="erasure_request")
    verdicts = audit(ledger).verdicts
    assert [v.justified for v in verdicts] == [True, False]
    assert "despite a legal hold: keys of bookkeeping shredded while the hold runs until 2034-01-01" \
        in verdicts[1].reason


def test_an_unknown_policy_hash_is_unjustified(ledger: Ledger) -> None:
    inactive_greta(ledger)
    erase_by_hand(ledger, "2026-09-01", policy_hash="f" * 64)
    (v,) = audit(ledger).verdicts
    assert not v.justified and "unknown" in v.reason


def test_a_policy_file_brought_by_the_auditor_is_known(ledger: Ledger, tmp_path: Path) -> None:
    text = load_policy("cowrite").source  # the shipped name; write a variant with a new hash
    assert text == "cowrite"
    from importlib import resources

    toml = resources.files("ledger.domain.retention.policies").joinpath("cowrite.toml").read_text("utf-8")
    variant = tmp_path / "cowrite-old.toml"
    variant.write_text(toml.replace('inactive_after = "P6M"', 'inactive_after = "P1M"'), "utf-8")
    old = load_policy(str(variant))
    assert old.content_hash != COWRITE_HASH
    inactive_greta(ledger)
    erase_by_hand(ledger, "2026-09-01", policy_hash=old.content_hash)
    assert "unknown" in audit(ledger).verdicts[0].reason
    assert "unknown" not in audit(ledger, policy_paths=[str(variant)]).verdicts[0].reason


def test_the_projector_stops_at_a_position(ledger: Ledger, tmp_path: Path) -> None:
    inactive_greta(ledger)
    publish(ledger, "2026-02-01", "LoggedIn")
    store = DuckDBStore(tmp_path / "p.duckdb", ledger.registry)
    try:
        projector = Projector(ledger.log, store, ledger.registry, page_size=1)
        assert projector.run(up_to_position=2).position == 2
        assert store.con.execute("SELECT count(*) FROM events").fetchone() == (2,)
        assert projector.run().position == 3
    finally:
        store.close()


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli.main, list(args))
    return result.exit_code, result.output


@pytest.fixture
def demo(demo_data: Path) -> str:
    """The demo at 2026-11-01 (tests/conftest.py; read-only, shared with other modules)."""
    return str(demo_data)


@pytest.mark.slow
def test_the_demo_sweep_is_all_justified(demo: str) -> None:
    code, out = run("--data", demo, "audit", "decisions", "--json")
    assert code == 0, out
    result = json.loads(out)
    assert result["summary"]["unjustified"] == 0 and result["summary"]["events"] > 10
    assert {v["type"] for v in result["verdicts"]} >= {"DeletionNoticeSent", "SubjectErased"}
    code, out = run("--data", demo, "audit", "decisions")
    assert code == 0 and "0 unjustified" in out


@pytest.mark.slow
def test_a_wrong_erasure_in_the_demo_log_exits_1(demo: str, tmp_path: Path) -> None:
    import shutil

    copy = tmp_path / "d"
    shutil.copytree(demo, copy)
    with Ledger.open(copy) as ledger:
        at(ledger, "2026-11-02")
        inactive_greta_late = make_event("SubjectRegistered", occurred_at="2026-11-02",
                                         subject={"email": EMAIL})
        ledger.record(inactive_greta_late)
        erase_by_hand(ledger, "2026-11-02")  # registered today: nothing is due
    code, out = run("--data", str(copy), "audit", "decisions")
    assert code == 1
    assert "BAD" in out and "erased while" in out and "1 unjustified" in out
    code, out = run("--data", str(copy), "audit", "decisions", "--as-of", "2026-11-01", "--json")
    assert code == 0 and json.loads(out)["summary"]["unjustified"] == 0
    code, out = run("--data", str(copy), "audit", "decisions", "--as-of", "yesterday")
    assert code == 2


def test_a_tampered_event_among_a_batch_of_sweep_events_is_still_caught(ledger: Ledger) -> None:
    """The facts of a whole run are read in one query per controller (issue 13 §5): each event
    must still be judged on its own subject's facts, and an event whose policy is unknown must
    not borrow another event's."""
    people = {"greta": "Greta.Lindqvist@example.se", "hans": "hans.berg@example.se",
              "ida": "ida.nilsson@example.se"}
    at(ledger, "2025-06-01")
    for name, email in people.items():
        ledger.record(make_event("SubjectRegistered", occurred_at="2025-06-01",
                                 subject={"email": email}, pii={"name": name}))
    at(ledger, "2026-07-01")
    for name, email in people.items():
        last = "2026-07-01" if name == "ida" else "2026-01-10"
        ledger.record(make_event("LoggedIn", occurred_at=last, subject={"email": email}))
    at(ledger, "2026-07-20")
    sweep(ledger, controller="cowrite")  # notices for greta and hans, one run
    at(ledger, "2026-07-21")
    t = parse_timestamp("2026-07-21")

    def forged(event_type: str, name: str, body: dict[str, object]) -> Event:
        pid = ledger.subject_id("cowrite", email=people[name])
        return Event(event_type, str(uuid.uuid4()), "cowrite", pid, t, t, "ledger",
                     "system:retention-sweep", {"policy": "cowrite", "evidence": [], **body})

    ledger.append_events([  # one batch: one run of three forged sweep events
        forged("SubjectErased", "greta", {"reason": "inactivity", "policy_hash": COWRITE_HASH,
                                          "keys_shredded": ["profile", "bookkeeping"]}),
        forged("DeletionNoticeSent", "ida", {"rule": "inactivity_notice",
                                             "policy_hash": COWRITE_HASH,
                                             "due_at": parse_timestamp("2026-08-21")}),
        forged("SubjectErased", "hans", {"reason": "inactivity", "policy_hash": "ab" * 32,
                                         "keys_shredded": ["profile", "bookkeeping"]}),
    ])
    seen: list[tuple[int, int]] = []
    result = audit(ledger, progress=lambda done, total: seen.append((done, total)))
    assert result.runs == 2 and not result.ok
    by_type = [(v.event.type, v.justified) for v in result.verdicts]
    assert by_type == [("DeletionNoticeSent", True), ("DeletionNoticeSent", True),
                       ("SubjectErased", False), ("DeletionNoticeSent", False), ("SubjectErased", False)]
    greta, ida, hans = result.verdicts[2:]
    assert "before its notice period ended" in greta.reason
    assert "while the subject was active" in ida.reason
    assert "unknown" in hans.reason and hans.decision is None
    # progress climbs to its total and ends there
    assert seen and seen[-1][0] == seen[-1][1] and [d for d, _ in seen] == sorted(d for d, _ in seen)
