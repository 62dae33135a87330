"""Issue 9, row 7: a person erased by the sweep who signs up again with the same e-mail starts a
new relationship (SPEC §5): active again, permits and the register extract on the new
relationship only, the old one unreadable, the retention clock restarted. Through the real CLI
(click's CliRunner) on a real data directory; the rule itself is unit-tested in test_fold."""

from __future__ import annotations

import json
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Any

import duckdb
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import cli
import projections
from ledger.app.service import Ledger
from ledger.domain.errors import KeyUnavailable
from ledger.domain.events import Event
from projections.engine.projector import Projector
from projections.store.duckdb_store import DuckDBStore
from tests.conftest import make_event
from tests.integration.test_projection_properties import (
    BODIES,
    T0,
    append,
    new_ledger,
    rebuild_fingerprint,
    times,
)

HOUR = 3_600_000_000

EMAIL = "Greta.Lindqvist@example.se"
OLD_PII = {"name": "Greta Lindqvist", "phone": "+46 70 111 22 33"}
NEW_PII = {"name": "Greta Berg", "phone": "+46 70 999 88 77"}


def run(*args: str, input: str | None = None) -> Any:
    return CliRunner().invoke(cli.main, list(args), input=input)


def publish(data: str, now: str, *events: dict[str, Any]) -> None:
    lines = "".join(json.dumps(e) + "\n" for e in events)
    result = run("--data", data, "--now", now, "publish", "-", "--json", input=lines)
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["accepted"] == len(events)


def event(event_type: str, occurred_at: str, pii: dict[str, str], **kw: Any) -> dict[str, Any]:
    return make_event(event_type, controller="cowrite", occurred_at=occurred_at,
                      subject={"email": EMAIL}, pii=pii, **kw)


def permits(data: str, now: str, purpose: str, *extra: str) -> dict[str, Any]:
    result = run("--data", data, "--now", now, "permits", purpose, "--email", EMAIL,
                 "--controller", "cowrite", *extra, "--json")
    assert result.exit_code in (0, 1), result.output
    answer = json.loads(result.output)
    assert result.exit_code == (0 if answer["permitted"] else 1)
    return answer


def export(data: str, now: str) -> dict[str, Any]:
    result = run("--data", data, "--now", now, "subject", "export", "--email", EMAIL,
                 "--controller", "cowrite")
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def decision(data: str, now: str) -> dict[str, Any]:
    result = run("--data", data, "--now", now, "decisions", "--controller", "cowrite", "--json")
    assert result.exit_code == 0, result.output
    (row,) = json.loads(result.output)
    return row


def sweep(data: str, now: str) -> dict[str, int]:
    result = run("--data", data, "--now", now, "sweep", "--controller", "cowrite", "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.output)["appended"]


def audit_decisions(data: str) -> Any:
    return run("--data", data, "--now", "2030-01-01", "audit", "decisions", "--json")


@pytest.fixture(scope="module")
def erased_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Greta registers with Cowrite, consents to and subscribes to the newsletter, logs in;
    six months of inactivity later the sweep notifies her and erases her."""
    data = str(tmp_path_factory.mktemp("erased") / "d")
    assert run("--data", data, "init").exit_code == 0
    publish(data, "2025-02-01T12:00:00Z",
            event("SubjectRegistered", "2025-01-10T09:00:00Z", OLD_PII),
            event("ConsentGiven", "2025-01-10T09:01:00Z", OLD_PII),
            event("NewsletterSubscribed", "2025-01-10T09:02:00Z", OLD_PII),
            event("LoggedIn", "2025-02-01T10:00:00Z", OLD_PII))
    assert permits(data, "2025-02-02", "newsletter", "--channel", "email")["permitted"]
    assert sweep(data, "2025-07-20") == {"DeletionNoticeSent": 1}
    assert sweep(data, "2025-08-03") == {"SubjectErased": 1}
    assert export(data, "2025-08-04")["status"]["status"] == "erased"
    return Path(data)


@pytest.fixture
def erased(erased_template: Path, tmp_path: Path) -> str:
    """A copy of the erased template for each test (tests publish, sweep and shred in it)."""
    data = tmp_path / "d"
    shutil.copytree(erased_template, data)
    return str(data)


def register_again(data: str) -> None:
    publish(data, "2026-03-01T12:00:00Z",
            event("SubjectRegistered", "2026-03-01T09:00:00Z", NEW_PII),
            event("LoggedIn", "2026-03-01T09:05:00Z", NEW_PII))


def test_row07_registering_again_after_erasure_starts_a_new_relationship(erased: str) -> None:
    data = erased
    register_again(data)
    now = "2026-03-02"
    status = export(data, now)["status"]
    assert status["status"] == "active" and status["relationship"] == 2
    assert permits(data, now, "service")["permitted"]
    assert permits(data, now, "invoicing")["permitted"]
    # The consent and the subscription of the erased relationship do not count again.
    newsletter = permits(data, now, "newsletter", "--channel", "email")
    assert not newsletter["permitted"] and "no newsletter" in newsletter["reason"]


def test_row07_a_new_consent_grants_the_newsletter_again(erased: str) -> None:
    data = erased
    register_again(data)
    publish(data, "2026-03-02T12:00:00Z", event("ConsentGiven", "2026-03-02T10:00:00Z", NEW_PII))
    answer = permits(data, "2026-03-03", "newsletter", "--channel", "email")
    assert answer["permitted"] and answer["evidence"]["at"].startswith("2026-03-02")


def test_row07_export_shows_only_the_new_relationship(erased: str) -> None:
    data = erased
    register_again(data)
    extract = export(data, "2026-03-02")
    personal = extract["personal_data"]
    assert personal["available"] is True
    assert personal["current"] == {**NEW_PII, "account_ref": "cw-000042"}
    assert [e["type"] for e in personal["by_event"]] == ["SubjectRegistered", "LoggedIn"]
    text = json.dumps(extract, ensure_ascii=False)
    assert "Greta Lindqvist" not in text and "111 22 33" not in text
    # The old relationship's events are listed as erased, never decrypted.
    assert [e["type"] for e in personal["unreadable"]] == [
        "SubjectRegistered", "ConsentGiven", "NewsletterSubscribed", "LoggedIn"]
    assert all("erased" in e["reason"] for e in personal["unreadable"])
    # Consents, subscriptions and activity are those of the new relationship.
    assert extract["consents"] == [] and extract["subscriptions"] == []
    assert extract["activity"]["first_seen_at"].startswith("2026-03-01")
    assert extract["activity"]["last_activity_at"].startswith("2026-03-01T09:05")
    assert [e["type"] for e in extract["timeline"]] == ["SubjectRegistered", "LoggedIn"]


def test_row07_the_old_relationship_stays_unreadable(erased: str) -> None:
    data = erased
    register_again(data)
    with Ledger.open(Path(data)) as ledger:
        events = [e for _, e in ledger.events() if e.pii is not None]
        old = [e for e in events if e.occurred_at < events[-2].occurred_at]
        new = events[-2:]
        assert len(old) == 4
        for e in old:
            with pytest.raises(KeyUnavailable):
                ledger.personal_data(e)
        assert [ledger.personal_data(e)["pii"] for e in new] == [NEW_PII, NEW_PII]  # type: ignore[index]


def test_row07_decisions_restart_the_retention_clock(erased: str) -> None:
    data = erased
    register_again(data)
    assert export(data, "2026-03-02")["status"]["status"] == "active"
    d = decision(data, "2026-03-02")
    # Six months from the new relationship's last activity, less the 14-day notice.
    assert (d["action"], d["rule"], d["due_at"][:10]) == ("keep", "active", "2026-08-18")
    assert sweep(data, "2026-03-02") == {}
    assert sweep(data, "2026-08-18") == {}  # due at 09:05
    assert sweep(data, "2026-08-19") == {"DeletionNoticeSent": 1}
    assert sweep(data, "2026-09-01") == {}
    assert sweep(data, "2026-09-02") == {"SubjectErased": 1}
    assert export(data, "2026-09-03")["status"]["status"] == "erased"
    with Ledger.open(Path(data)) as ledger:  # the new generation's keys are destroyed too
        for _, e in ledger.events():
            if e.pii is not None:
                with pytest.raises(KeyUnavailable):
                    ledger.personal_data(e)
    result = audit_decisions(data)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)["summary"]
    assert summary["events"] == 4 and summary["unjustified"] == 0


def test_row07_a_rebuild_gives_the_same_answers(erased: str) -> None:
    data = erased
    register_again(data)
    now = "2026-03-02"
    before = (permits(data, now, "service"), permits(data, now, "newsletter", "--channel", "email"),
              export(data, now), decision(data, now))
    assert before[0]["permitted"] and not before[1]["permitted"]
    rebuilt = run("--data", data, "--now", now, "project", "--rebuild")
    assert rebuilt.exit_code == 0, rebuilt.output
    after = (permits(data, now, "service"), permits(data, now, "newsletter", "--channel", "email"),
             export(data, now), decision(data, now))
    assert after == before
    assert audit_decisions(data).exit_code == 0


def test_row07_a_late_consent_of_the_old_relationship_does_not_grant(erased: str) -> None:
    data = erased
    register_again(data)
    # Recorded after the new registration, but it occurred before the erasure.
    publish(data, "2026-03-02T12:00:00Z",
            event("ConsentGiven", "2025-02-05T10:00:00Z", NEW_PII),
            event("NewsletterSubscribed", "2025-02-05T10:00:00Z", NEW_PII, list="offers"))
    now = "2026-03-03"
    assert not permits(data, now, "newsletter", "--channel", "email")["permitted"]
    extract = export(data, now)
    assert extract["consents"] == [] and extract["subscriptions"] == []
    assert extract["activity"]["first_seen_at"].startswith("2026-03-01")
    rebuilt = run("--data", data, "--now", now, "project", "--rebuild")
    assert rebuilt.exit_code == 0
    assert not permits(data, now, "newsletter", "--channel", "email")["permitted"]


def test_row07_a_login_on_an_erased_account_does_not_revive_it(erased: str) -> None:
    """Nor may its personal data stay: the login's pii sits under a new key generation, which
    the next sweep erases again (rule erased_residue); then nothing is left to do."""
    data = erased
    publish(data, "2026-03-01T12:00:00Z", event("LoggedIn", "2026-03-01T09:05:00Z", NEW_PII))
    now = "2026-03-02"
    assert export(data, now)["status"]["status"] == "erased"
    assert not permits(data, now, "service")["permitted"]
    d = decision(data, now)
    assert (d["action"], d["rule"], d["due_at"][:10]) == ("erase", "erased_residue", "2026-03-01")
    assert d["shred"] == ["profile"]
    assert sweep(data, now) == {"SubjectErased": 1}
    d = decision(data, "2026-03-03")
    assert (d["action"], d["rule"]) == ("erased", "erased")
    assert sweep(data, "2026-03-03") == {}
    with Ledger.open(Path(data)) as ledger:
        for _, e in ledger.events():
            if e.pii is not None:
                with pytest.raises(KeyUnavailable):
                    ledger.personal_data(e)
    assert audit_decisions(data).exit_code == 0
    erasures = run("--data", data, "audit", "erasures", "--json")
    assert erasures.exit_code == 0, erasures.output


def test_row07_a_newsletter_signup_alone_starts_a_relationship(erased: str) -> None:
    """An opt-in after the erasure is a new relationship too; without a registration Cowrite
    may keep nothing (no customer relationship), so the sweep erases it again at once."""
    data = erased
    publish(data, "2026-03-01T12:00:00Z",
            event("NewsletterSubscribed", "2026-03-01T09:00:00Z", NEW_PII))
    now = "2026-03-02"
    assert export(data, now)["status"]["status"] == "active"
    assert permits(data, now, "newsletter", "--channel", "email")["permitted"]
    # No contract without a registration: the old SubjectRegistered does not count.
    assert not permits(data, now, "service")["permitted"]
    d = decision(data, now)
    assert (d["action"], d["rule"], d["due_at"][:10]) == ("erase", "no_relationship", "2026-03-01")
    assert sweep(data, now) == {"SubjectErased": 1}
    assert audit_decisions(data).exit_code == 0


def test_row07_a_legal_hold_of_the_old_relationship_keeps_running(tmp_path: Path) -> None:
    """Coegi: the old relationship's invoice stays under the bookkeeping hold (its key
    survives the erasure); the new relationship never decrypts it, and its own erasure leaves
    the held key alone until the hold ends."""
    data = str(tmp_path / "d")
    assert run("--data", data, "init").exit_code == 0

    def coegi(event_type: str, occurred_at: str, pii: dict[str, str], **kw: Any) -> dict[str, Any]:
        return {**event(event_type, occurred_at, pii, **kw), "controller": "coegi"}

    def coegi_run(now: str, *args: str) -> Any:
        return run("--data", data, "--now", now, *args)

    publish(data, "2020-05-01", coegi("SubjectRegistered", "2020-03-01T09:00:00Z", OLD_PII,
                                      relation="consultant"),
            coegi("InvoiceUsageRecorded", "2020-04-30T09:00:00Z", OLD_PII))
    erased = json.loads(coegi_run("2023-05-01", "sweep", "--controller", "coegi", "--json").output)
    assert erased["appended"]["SubjectErased"] == 1
    publish(data, "2024-01-10T12:00:00Z", coegi("SubjectRegistered", "2024-01-10T09:00:00Z",
                                                NEW_PII, relation="consultant"))
    extract = json.loads(coegi_run("2024-01-11", "subject", "export", "--email", EMAIL,
                                   "--controller", "coegi").output)
    assert extract["status"]["status"] == "active"
    assert extract["personal_data"]["current"]["name"] == NEW_PII["name"]
    assert [e["type"] for e in extract["personal_data"]["unreadable"]] == [
        "SubjectRegistered", "InvoiceUsageRecorded"]  # the invoice's key is live, but not used
    assert "Greta Lindqvist" not in json.dumps(extract, ensure_ascii=False)

    def due(now: str) -> tuple[str, str, str]:
        (d,) = json.loads(coegi_run(now, "decisions", "--controller", "coegi", "--json").output)
        return d["action"], d["rule"], d["due_at"][:10]

    assert due("2024-01-11") == ("keep", "active", "2027-01-10")
    swept = json.loads(coegi_run("2027-01-11", "sweep", "--controller", "coegi", "--json").output)
    assert swept["appended"]["SubjectErased"] == 1 and swept["keys_shredded"] == 1  # profile only
    assert due("2027-01-12") == ("hold", "legal_hold", "2028-01-01")
    ended = json.loads(coegi_run("2028-01-01", "sweep", "--controller", "coegi", "--json").output)
    assert ended["appended"]["SubjectErased"] == 1 and ended["keys_shredded"] == 1
    with Ledger.open(Path(data)) as ledger:
        for _, e in ledger.events():
            if e.pii is not None:
                with pytest.raises(KeyUnavailable):
                    ledger.personal_data(e)
    audited = coegi_run("2028-01-02", "audit", "decisions", "--json")
    assert audited.exit_code == 0, audited.output
    assert json.loads(audited.output)["summary"]["events"] == 3


# --- determinism of the rule under any paging (SPEC §4) -------------------------------------

RELATIONSHIP_TYPES = ("SubjectRegistered", "ConsentGiven", "ConsentWithdrawn",
                      "NewsletterSubscribed", "Unsubscribed", "LoggedIn", "SubjectErased",
                      "InvoiceUsageRecorded")


@st.composite
def relationship_histories(draw: st.DrawFn) -> list[tuple[str, Any]]:
    """One or two subjects signing up, consenting, being erased and coming back, in any event
    time order (late events of an erased relationship included)."""
    recorded, items = T0, []
    for _ in range(draw(st.integers(2, 24))):
        recorded += draw(st.sampled_from([0, HOUR]))
        etype = draw(st.sampled_from(RELATIONSHIP_TYPES))
        items.append(("event", Event(
            etype, str(uuid.UUID(int=draw(st.integers(0, 2**120)), version=4)), "cowrite",
            draw(st.sampled_from(["a" * 64, "b" * 64])), draw(times), recorded, "web", "subject",
            draw(BODIES[etype]), None)))
    return items


@settings(max_examples=3, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(history=relationship_histories(), data=st.data())
def test_row07_relationships_are_the_same_however_the_log_is_paged_fast(
        history: list[tuple[str, Any]], data: st.DataObject) -> None:
    """A few histories for the fast tier; the slow tier tries 15."""
    relationships_however_paged(history, data)


@pytest.mark.slow
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(history=relationship_histories(), data=st.data())
def test_row07_relationships_are_the_same_however_the_log_is_paged(
        history: list[tuple[str, Any]], data: st.DataObject) -> None:
    relationships_however_paged(history, data)


def relationships_however_paged(history: list[tuple[str, Any]], data: st.DataObject) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        with new_ledger(root, "l") as ledger:
            incremental = root / "incremental.duckdb"
            i = 0
            while i < len(history):
                step = data.draw(st.integers(1, 6), label="chunk")
                append(ledger, history[i:i + step])
                i += step
                store = DuckDBStore(incremental, ledger.registry)
                try:
                    Projector(ledger.log, store, ledger.registry,
                              page_size=data.draw(st.integers(1, 4), label="page")).run()
                finally:
                    store.close()
            assert projections.fingerprint(incremental, ledger.registry) == rebuild_fingerprint(
                ledger, root / "full.duckdb")
            con = duckdb.connect(str(incremental), read_only=True)
            try:
                # Nothing of an erased earlier relationship is left in the state tables.
                for table, at in (("consent_state", "since"), ("subscriptions", "since")):
                    assert con.execute(
                        f"SELECT count(*) FROM {table} t JOIN pseudonymisation_status p "
                        "USING (controller, subject) WHERE p.relationship > 1 AND "
                        f"(t.{at}, t.position) <= (p.previous_erased_at, p.previous_erased_position)"
                    ).fetchone() == (0,)
                assert con.execute(
                    "SELECT count(*) FROM activity_clock a JOIN pseudonymisation_status p "
                    "USING (controller, subject) WHERE p.relationship > 1 AND "
                    "a.first_seen_at < p.previous_erased_at").fetchone() == (0,)
            finally:
                con.close()
