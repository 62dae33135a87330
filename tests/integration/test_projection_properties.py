"""Determinism (SPEC §4): for a random history, projecting in random page sizes with restarts
gives exactly the tables of one full rebuild, and a replay as of T equals a rebuild of only
the events recorded by T."""

from __future__ import annotations

import tempfile
import uuid
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import projections
from ledger.app.service import Ledger
from ledger.domain.chain import PendingRecord
from ledger.domain.events import Event
from projections.engine.projector import Projector
from projections.store.duckdb_store import DuckDBStore

T0 = 1_767_225_600_000_000  # 2026-01-01
HOUR = 3_600_000_000

subjects = st.sampled_from(["a" * 64, "b" * 64, "c" * 64])
purposes = st.sampled_from(["newsletter", "profiling", "marketing"])
request_ids = st.sampled_from(["rq-1", "rq-2"])
times = st.integers(0, 48).map(lambda h: T0 + h * HOUR)  # few values: ties and reordering

BODIES: dict[str, Any] = {
    "SubjectRegistered": st.fixed_dictionaries({"relation": st.just("user"),
                                                "account_ref": st.none()}),
    "PersonalDataUpdated": st.just({"fields": ["address"], "origin": "self"}),
    "NewsletterSubscribed": st.fixed_dictionaries({
        "list": st.sampled_from(["weekly", "offers"]), "channel": st.sampled_from(["email", "sms"]),
        "double_opt_in": st.booleans()}),
    "Unsubscribed": st.fixed_dictionaries({
        "list": st.sampled_from(["weekly", "*"]), "channel": st.sampled_from(["email", "*"]),
        "via": st.just("link")}),
    "ConsentGiven": st.fixed_dictionaries({
        "purpose": purposes, "notice_id": st.just("n"), "notice_version": st.sampled_from("12"),
        "notice_sha256": st.none(), "language": st.just("sv"), "ui_action": st.just("Skicka"),
        "channel": st.just("web")}),
    "ConsentWithdrawn": st.fixed_dictionaries({"purpose": purposes, "via": st.just("settings")}),
    "ObjectionRaised": st.fixed_dictionaries({"purpose": purposes, "via": st.just("email")}),
    "LoggedIn": st.just({"app": "cowrite", "method": "bankid"}),
    "ServiceUsed": st.just({"app": "cowrite", "feature": "cv"}),
    "InvoiceUsageRecorded": st.just({"billed_party": "X AB", "units": 1, "unit": "doc",
                                     "amount_minor": 100, "currency": "SEK", "invoice_ref": "I"}),
    "DataShared": st.just({"recipient_kind": "coach", "recipient": "Y AB", "basis": "consent"}),
    "RightsRequested": st.fixed_dictionaries({
        "request_id": request_ids, "right": st.sampled_from(["restriction", "erasure", "access"]),
        "scope": st.none()}),
    "RightsRequestClosed": st.fixed_dictionaries({
        "request_id": request_ids, "outcome": st.sampled_from(["fulfilled", "refused", "withdrawn"])}),
    "DeletionNoticeSent": st.fixed_dictionaries({
        "due_at": times, "policy": st.just("p"), "policy_hash": st.just("h"),
        "rule": st.just("inactive"), "evidence": st.just([])}),
    "SubjectPseudonymised": st.fixed_dictionaries({
        "reason": st.just("erasure request"), "erase_due_at": times, "policy": st.just("p"),
        "policy_hash": st.just("h"), "evidence": st.just([])}),
    "SubjectErased": st.fixed_dictionaries({
        "reason": st.just("inactive"), "policy": st.just("p"), "policy_hash": st.just("h"),
        "keys_shredded": st.just(["profile"]), "evidence": st.just([])}),
    "RetentionReviewed": st.fixed_dictionaries({
        "policy": st.just("p"), "policy_hash": st.just("h"), "as_of": times,
        "counts": st.dictionaries(st.sampled_from(["keep", "erase"]), st.integers(0, 9))}),
    "NoticeDelivered": st.fixed_dictionaries({
        "message_id": st.sampled_from(["m-1", "m-2"]), "kind": st.just("deletion_notice")}),
    "NoticeFailed": st.fixed_dictionaries({
        "message_id": st.sampled_from(["m-1", "m-2"]), "kind": st.just("deletion_notice"),
        "reason": st.text(max_size=20)}),
}

CORRUPT = b"\xc3\x01" + bytes(8) + b"\x00"  # an unknown schema: a projection error


@st.composite
def histories(draw: st.DrawFn) -> list[tuple[str, Any]]:
    """(kind, item) in log order: ('event', Event) or ('corrupt', recorded_at)."""
    n = draw(st.integers(1, 40))
    recorded = T0
    items: list[tuple[str, Any]] = []
    for _ in range(n):
        recorded += draw(st.sampled_from([0, 0, HOUR, 5 * HOUR]))
        if draw(st.integers(0, 30)) == 0:
            items.append(("corrupt", recorded))
            continue
        etype = draw(st.sampled_from(sorted(BODIES)))
        items.append(("event", Event(
            etype, str(uuid.UUID(int=draw(st.integers(0, 2**120)), version=4)),
            draw(st.sampled_from(["coegi", "cowrite"])), draw(subjects), draw(times), recorded,
            "web", "subject", draw(BODIES[etype]),
            draw(st.sampled_from([None, b"\x01sealed"])))))
    return items


def append(ledger: Ledger, items: list[tuple[str, Any]]) -> None:
    pending = []
    for kind, item in items:
        if kind == "event":
            pending.append(PendingRecord(item.event_id, item.type, item.subject, item.recorded_at,
                                         ledger.codec.encode(item)))
        else:
            pending.append(PendingRecord(str(uuid.uuid4()), "Future", "s", item, CORRUPT))
    ledger.log.append(pending)


def recorded_at(item: tuple[str, Any]) -> int:
    return item[1].recorded_at if item[0] == "event" else item[1]


def rebuild_fingerprint(ledger: Ledger, path: Path) -> str:
    projections.project(ledger, path=path, rebuild=True, page_size=10_000)
    return projections.fingerprint(path, ledger.registry)


def new_ledger(root: Path, name: str) -> Ledger:
    Ledger.init(root / name)
    return Ledger.open(root / name)


# Each example projects a few times into fresh DuckDB files (about 2 s on a loaded 2-core
# machine): the fast tier tries a few histories, the slow tier (``-m slow``) the full count.
FAST_EXAMPLES, SLOW_EXAMPLES = 3, 20


@settings(max_examples=FAST_EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(history=histories(), data=st.data())
def test_pages_and_restarts_give_the_rebuild_and_replay_gives_the_prefix_fast(
        history: list[tuple[str, Any]], data: st.DataObject) -> None:
    pages_and_restarts(history, data)


@pytest.mark.slow
@settings(max_examples=SLOW_EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(history=histories(), data=st.data())
def test_pages_and_restarts_give_the_rebuild_and_replay_gives_the_prefix(
        history: list[tuple[str, Any]], data: st.DataObject) -> None:
    pages_and_restarts(history, data)


def pages_and_restarts(history: list[tuple[str, Any]], data: st.DataObject) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        with new_ledger(root, "full") as ledger:
            # the log grows in random chunks; after each, a restarted projector catches up in
            # random page sizes
            incremental = root / "incremental.duckdb"
            i = 0
            while i < len(history):
                step = data.draw(st.integers(1, 12), label="chunk")
                append(ledger, history[i:i + step])
                i += step
                store = DuckDBStore(incremental, ledger.registry)
                try:
                    Projector(ledger.log, store, ledger.registry,
                              page_size=data.draw(st.integers(1, 7), label="page")).run()
                finally:
                    store.close()
            full = rebuild_fingerprint(ledger, root / "full.duckdb")
            assert projections.fingerprint(incremental, ledger.registry) == full

            # replay as of T == rebuild of only what was recorded by T
            stamps = sorted({recorded_at(h) for h in history})
            as_of = data.draw(st.sampled_from([stamps[0] - 1, *stamps]), label="as_of")
            projections.replay(ledger, as_of, root / "replay.duckdb")
            replayed = projections.fingerprint(root / "replay.duckdb", ledger.registry)
        with new_ledger(root, "prefix") as prefix:
            known = [h for h in history if recorded_at(h) <= as_of]
            if known:
                append(prefix, known)
            assert rebuild_fingerprint(prefix, root / "prefix.duckdb") == replayed
