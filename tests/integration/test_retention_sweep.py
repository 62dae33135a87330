"""Retention end to end: real events through the log, the sweep at real dates, keys shredded
(SPEC §5, §6); the seed timelines checked to the day."""

from __future__ import annotations

import itertools
from pathlib import Path

import duckdb
import pytest

from ledger.app.decisions import decisions_at, subject_facts
from ledger.app.service import Ledger
from ledger.app.sweep import sweep
from ledger.domain.chain import PendingRecord
from ledger.domain.clock import FixedClock
from ledger.domain.errors import KeyUnavailable
from ledger.domain.retention.policy import load_policy
from ledger.domain.retention.rules import decide
from ledger.domain.timeutil import format_micros, parse_timestamp
from tests.conftest import make_event

EMAIL = "Greta.Lindqvist@example.se"


def at(ledger: Ledger, when: str) -> None:
    ledger.clock = FixedClock(parse_timestamp(when))


def publish(ledger: Ledger, when: str, event_type: str, controller: str = "cowrite", **kw) -> None:  # type: ignore[no-untyped-def]
    at(ledger, when)
    ledger.record(make_event(event_type, controller=controller, occurred_at=when,
                             subject={"email": EMAIL}, pii={"name": "Greta Lindqvist", "phone": "+46 70 111 22 33"}, **kw))


def decision(ledger: Ledger, controller: str = "cowrite"):  # type: ignore[no-untyped-def]
    pid = ledger.subject_id(controller, email=EMAIL)
    table = decisions_at(ledger, controller=controller)
    return next(d for d in table.decisions if d.subject == pid)


def day(micros: int | None) -> str | None:
    return None if micros is None else format_micros(micros)[:10]


def types(ledger: Ledger) -> list[str]:
    return [e.type for _, e in ledger.events()]


def test_cowrite_inactivity_notice_then_erasure_to_the_day(ledger: Ledger) -> None:
    publish(ledger, "2025-06-01", "SubjectRegistered")
    publish(ledger, "2026-01-10", "LoggedIn")
    at(ledger, "2026-06-25")
    d = decision(ledger)
    assert (d.action, day(d.due_at)) == ("keep", "2026-06-26")
    # The sweep first runs late, on 2026-07-20: it sends the notice, erases nothing.
    at(ledger, "2026-07-20")
    report = sweep(ledger, controller="cowrite")
    assert report.appended == {"DeletionNoticeSent": 1}
    notice = next(e for _, e in ledger.events() if e.type == "DeletionNoticeSent")
    assert day(notice.body["due_at"]) == "2026-08-03"
    at(ledger, "2026-08-02")
    assert sweep(ledger, controller="cowrite").appended == {}
    assert (decision(ledger).action, day(decision(ledger).due_at)) == ("keep", "2026-08-03")
    at(ledger, "2026-08-03")
    assert sweep(ledger, controller="cowrite").appended == {"SubjectErased": 1}
    erased = next(e for _, e in ledger.events() if e.type == "SubjectErased")
    assert erased.body["keys_shredded"] == ["profile", "bookkeeping"]
    assert erased.body["policy_hash"] == load_policy("cowrite").content_hash
    for _, event in ledger.events():
        if event.pii is not None:
            with pytest.raises(KeyUnavailable):
                ledger.personal_data(event)


def test_a_login_after_the_notice_voids_it(ledger: Ledger) -> None:
    publish(ledger, "2025-06-01", "SubjectRegistered")
    publish(ledger, "2026-01-10", "LoggedIn")
    at(ledger, "2026-07-20")
    sweep(ledger, controller="cowrite")
    publish(ledger, "2026-07-25", "LoggedIn")
    at(ledger, "2026-08-03")
    assert sweep(ledger, controller="cowrite").appended == {}
    d = decision(ledger)
    assert (d.action, day(d.due_at), d.rule) == ("keep", "2027-01-11", "active")  # 2027-01-25 - 14 days


def test_cowrite_erasure_request_pseudonymises_then_erases(ledger: Ledger) -> None:
    publish(ledger, "2025-06-01", "SubjectRegistered")
    publish(ledger, "2026-02-20", "InvoiceUsageRecorded")
    publish(ledger, "2026-03-01", "RightsRequested", request_id="rq-9", right="erasure")
    at(ledger, "2026-03-01T12:00:00Z")
    assert sweep(ledger, controller="cowrite").appended == {"RightsRequestClosed": 1, "SubjectPseudonymised": 1}
    pseudonymised = next(e for _, e in ledger.events() if e.type == "SubjectPseudonymised")
    assert day(pseudonymised.body["erase_due_at"]) == "2026-04-30"
    login = next(e for _, e in ledger.events() if e.type == "LoggedIn" or e.type == "SubjectRegistered")
    with pytest.raises(KeyUnavailable, match="sealed"):
        ledger.personal_data(login)
    assert ledger.personal_data(login, include_sealed=True)["subject"]["email"] == EMAIL  # type: ignore[index]
    at(ledger, "2026-04-29T12:00:00Z")
    assert sweep(ledger, controller="cowrite").appended == {}
    at(ledger, "2026-04-30T12:00:00Z")
    assert sweep(ledger, controller="cowrite").appended == {"SubjectErased": 1}
    # The invoice of 2026 is kept for bookkeeping until the end of 2033, reachable only on the
    # explicit billing path (its key stays sealed).
    d = decision(ledger)
    assert (d.action, format_micros(d.due_at or 0)[:10], d.rule) == ("hold", "2034-01-01", "legal_hold")
    invoice = next(e for _, e in ledger.events() if e.type == "InvoiceUsageRecorded")
    with pytest.raises(KeyUnavailable, match="sealed"):
        ledger.personal_data(invoice)
    assert ledger.personal_data(invoice, include_sealed=True)["pii"]["name"] == "Greta Lindqvist"  # type: ignore[index]


def test_coegi_bookkeeping_hold_until_2030_then_the_key_is_shredded(ledger: Ledger) -> None:
    publish(ledger, "2023-03-01", "SubjectRegistered", controller="coegi", relation="consultant")
    publish(ledger, "2023-04-30", "InvoiceUsageRecorded", controller="coegi")
    at(ledger, "2026-04-30T12:00:00Z")
    report = sweep(ledger, controller="coegi")
    assert report.appended["SubjectErased"] == 1
    invoice = next(e for _, e in ledger.events() if e.type == "InvoiceUsageRecorded")
    registered = next(e for _, e in ledger.events() if e.type == "SubjectRegistered")
    with pytest.raises(KeyUnavailable):
        ledger.personal_data(registered)
    assert ledger.personal_data(invoice) is not None  # held
    at(ledger, "2030-12-31T23:00:00Z")
    assert sweep(ledger, controller="coegi").appended.get("SubjectErased") is None
    d = decision(ledger, "coegi")
    assert (d.action, d.rule) == ("hold", "legal_hold")
    at(ledger, "2031-01-01T00:00:00Z")
    assert sweep(ledger, controller="coegi").appended["SubjectErased"] == 1
    with pytest.raises(KeyUnavailable):
        ledger.personal_data(invoice)
    assert (decision(ledger, "coegi").action, decision(ledger, "coegi").rule) == ("erased", "erased")


def test_sweeping_twice_at_the_same_clock_appends_nothing(ledger: Ledger) -> None:
    publish(ledger, "2025-06-01", "SubjectRegistered")
    publish(ledger, "2025-07-01", "LoggedIn")
    publish(ledger, "2025-07-02", "RightsRequested", controller="coegi", request_id="r1", right="erasure")
    at(ledger, "2026-03-01")
    first = sweep(ledger)
    assert sum(first.appended.values()) > 0
    head = ledger.log.head()
    second = sweep(ledger)
    assert second.appended == {} and second.keys_shredded == 0
    assert ledger.log.head() == head


def test_dry_run_changes_nothing(ledger: Ledger) -> None:
    publish(ledger, "2025-06-01", "SubjectRegistered")
    at(ledger, "2026-03-01")
    head = ledger.log.head()
    report = sweep(ledger, dry_run=True)
    assert report.decisions["erase"] + report.decisions["notify"] == 1 and report.appended == {}
    assert ledger.log.head() == head


@pytest.fixture(scope="module")
def demo_ledger(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from click.testing import CliRunner

    import cli

    path = tmp_path_factory.mktemp("retention") / "data"
    result = CliRunner().invoke(cli.main, ["--data", str(path), "--now", "2026-11-01", "demo",
                                           "--subjects", "150", "--seed", "11", "--sweeps", "end", "--json"])
    assert result.exit_code == 0, result.output
    return path


@pytest.mark.parametrize("when", [pytest.param("2023-06-30", marks=pytest.mark.slow),
                                  pytest.param("2025-01-15", marks=pytest.mark.slow),
                                  "2026-11-01T12:00:00Z"])
def test_sql_decisions_equal_the_pure_rules_for_every_demo_subject(demo_ledger: Path, when: str) -> None:
    with Ledger.open(demo_ledger, now="2026-11-01T12:00:00Z") as ledger:
        table = decisions_at(ledger, parse_timestamp(when))
    assert table.decisions
    replay_path = demo_ledger.parent / f"check-{when[:10]}.duckdb"  # replays never go into DATA
    with Ledger.open(demo_ledger) as ledger:
        from projections.engine.projector import replay

        replay(ledger, parse_timestamp(when), replay_path, force=True)
    con = duckdb.connect(str(replay_path), read_only=True)
    expected = {}
    for controller in ("coegi", "cowrite"):
        policy = load_policy(controller)
        for facts in subject_facts(con, policy, controller):
            expected[(controller, facts.subject)] = decide(facts, policy, parse_timestamp(when))
    con.close()
    replay_path.unlink()
    assert {(d.controller, d.subject): d for d in table.decisions} == expected


def test_events_recorded_after_t_never_change_a_decision_at_t(demo_ledger: Path, tmp_path: Path) -> None:
    """Decisions as of T from today's full log equal those of a ledger whose log holds only
    what was recorded by T."""
    cut = parse_timestamp("2025-03-01")
    prefix_dir = tmp_path / "prefix"
    Ledger.init(prefix_dir)
    with Ledger.open(demo_ledger) as full, Ledger.open(prefix_dir) as prefix:
        # Same controllers, same pseudonyms in the copied events: copy the log prefix as is.
        records = list(full.log.read(recorded_by=cut))
        for batch in itertools.batched(records, 5000) if hasattr(itertools, "batched") else [records]:
            prefix.log.append([PendingRecord(r.event_id, r.event_type, "", r.recorded_at, r.payload)
                               for r in batch])
        prefix.config = full.config
        today = {(d.subject, d.action, d.due_at, d.rule) for d in decisions_at(full, cut).decisions}
        prefix.clock = FixedClock(cut)
        then = {(d.subject, d.action, d.due_at, d.rule) for d in decisions_at(prefix).decisions}
    assert today == then and today


def test_after_an_erasure_sweep_no_plaintext_remains_and_the_chain_holds(demo_ledger: Path) -> None:
    from ledger.demo.history import demo_people

    with Ledger.open(demo_ledger) as ledger:
        erased = {(e.controller, e.subject) for _, e in ledger.events() if e.type == "SubjectErased"}
        assert erased
        people = {(p.controller, ledger.subject_id(p.controller, email=p.email)): p
                  for p in demo_people(150, 11)}
        records = list(ledger.log.read())
        for before, after in itertools.pairwise(records):
            assert after.prev_hash == before.hash
    everything = b"".join(p.read_bytes() for p in demo_ledger.rglob("*") if p.is_file())
    checked = 0
    for key in erased:
        person = people.get(key)
        if person is None:
            continue
        for needle in (person.email, person.email.lower(), person.name, person.phone):
            assert needle.encode() not in everything
        checked += 1
    assert checked
