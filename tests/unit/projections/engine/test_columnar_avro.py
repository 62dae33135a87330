"""The columnar decoder gives exactly what fastavro gives, or declines (then the page decoder
goes record by record); corrupt records never get through as data."""

from __future__ import annotations

import uuid

import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.contracts.codec import AvroCodec
from ledger.contracts.schemas import default_registry
from ledger.domain.chain import RecordPage
from ledger.domain.events import Event
from projections.engine.decode import PageDecoder

REGISTRY = default_registry()
CODEC = AvroCodec(REGISTRY)
texts = st.text(min_size=0, max_size=30)  # any Unicode, including multi-byte and empty
longs = st.integers(-(2**63), 2**63 - 1)
stamps = st.integers(0, 2**62)

BODIES = {
    "LoggedIn": st.fixed_dictionaries({"app": texts, "method": texts}),
    "ConsentGiven": st.fixed_dictionaries({
        "purpose": texts, "notice_id": texts, "notice_version": texts,
        "notice_sha256": st.none() | texts, "language": st.none() | texts, "ui_action": texts,
        "channel": texts}),
    "InvoiceUsageRecorded": st.fixed_dictionaries({
        "billed_party": texts, "units": longs, "unit": texts, "amount_minor": longs,
        "currency": texts, "invoice_ref": texts}),
    "NewsletterSubscribed": st.fixed_dictionaries({
        "list": texts, "channel": texts, "double_opt_in": st.booleans()}),
    "SubjectPseudonymised": st.fixed_dictionaries({
        "reason": texts, "erase_due_at": stamps, "policy": texts, "policy_hash": texts,
        "evidence": st.lists(texts, max_size=3)}),
}


@st.composite
def events(draw: st.DrawFn) -> Event:
    etype = draw(st.sampled_from(sorted(BODIES)))
    return Event(etype, str(uuid.UUID(int=draw(st.integers(0, 2**122)), version=4)), draw(texts),
                 draw(texts), draw(stamps), draw(stamps), draw(texts), draw(texts),
                 draw(BODIES[etype]), draw(st.none() | st.binary(max_size=40)))


def flatten(decoded) -> dict[int, dict]:  # type: ignore[no-untyped-def]
    """position -> every column value, however the group was decoded."""
    out: dict[int, dict] = {}
    for g in decoded.groups:
        cols = {"event_id": g.event_id, "controller": g.controller, "subject": g.subject,
                "occurred_at": g.occurred_at, "recorded_at": g.recorded_at, "source": g.source,
                "actor": g.actor, "has_pii": g.has_pii, **g.body}
        cols = {k: v.to_pylist() if isinstance(v, pa.Array) else list(v) for k, v in cols.items()}
        positions = g.position.to_pylist() if isinstance(g.position, pa.Array) else g.position
        for i, p in enumerate(positions):
            out[p] = {"type": g.type, **{k: v[i] for k, v in cols.items()}}
    return out


def page_of(payloads: list[bytes]) -> RecordPage:
    return RecordPage(list(range(1, len(payloads) + 1)), [0] * len(payloads), payloads)


@settings(max_examples=60, deadline=None)
@given(st.lists(events(), min_size=1, max_size=25))
def test_columnar_equals_record_by_record(batch: list[Event]) -> None:
    page = page_of([CODEC.encode(e) for e in batch])
    columnar = PageDecoder(REGISTRY).decode(page)
    records = PageDecoder(REGISTRY, columnar=False).decode(page)
    assert flatten(columnar) == flatten(records)
    assert not columnar.errors and not records.errors


@settings(max_examples=60, deadline=None)
@given(st.lists(events(), min_size=2, max_size=10), st.data())
def test_corrupt_records_become_errors_and_the_rest_decodes(batch: list[Event],
                                                           data: st.DataObject) -> None:
    payloads = [CODEC.encode(e) for e in batch]
    bad = data.draw(st.integers(0, len(payloads) - 1))
    cut = data.draw(st.integers(0, len(payloads[bad]) - 1))
    payloads[bad] = payloads[bad][:cut] + data.draw(st.binary(max_size=3))
    page = page_of(payloads)
    columnar = PageDecoder(REGISTRY).decode(page)
    records = PageDecoder(REGISTRY, columnar=False).decode(page)
    assert [(e.position, e.reason) for e in columnar.errors] == [
        (e.position, e.reason) for e in records.errors]
    assert flatten(columnar) == flatten(records)
    good = {i + 1 for i in range(len(payloads)) if i != bad}
    assert good <= set(flatten(columnar))
