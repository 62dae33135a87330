"""``ledger audit erasures`` (SPEC §7a): does the vault match what the log says was erased?

Record first, then act: the sweep appends ``SubjectErased`` before it shreds keys, and any open
of the ledger completes an interrupted erasure. The invariant this module checks:

- every ``SubjectErased`` has its named keys destroyed: no live key of a category it names
  (``keys_shredded``) still opens personal data the subject's events recorded *before* the
  erasure. A key of a later generation (the person registered again after the erasure: a new
  relationship, a new key) is not a finding. The sweep tags each tombstone with the erasure it
  carried out, so a live key newer than that tombstone is known good at once; otherwise the
  subject's earlier events are read to see which generation their blobs were encrypted under.
- every destroyed key (a tombstone in the vault) has a ``SubjectErased`` in the log naming
  its category for that subject (the very event, where the tombstone names it).
- likewise every ``SubjectPseudonymised``: no key that encrypted the subject's earlier
  personal data is still unsealed.

Reads the log once (event types only, decoding just the sweep events), the vault's tombstones
and the live keys of the subjects concerned; a subject's earlier events are decoded only where
a live key is not already explained by a tombstone."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from ledger.app.opened import OpenLedger
from ledger.domain.blobs import blob_header
from ledger.domain.errors import LedgerError
from ledger.ports import KeyRecord

CHECKED = ("SubjectErased", "SubjectPseudonymised")


@dataclass(frozen=True, slots=True)
class Finding:
    controller: str
    subject: str
    category: str
    problem: str
    event_id: str | None = None  # the sweep event concerned, if any
    position: int | None = None

    def line(self) -> str:
        return f"{self.controller} {self.subject} {self.category}: {self.problem}"

    def as_dict(self) -> dict[str, Any]:
        return {"controller": self.controller, "subject": self.subject,
                "category": self.category, "problem": self.problem,
                "event_id": self.event_id, "position": self.position}


@dataclass
class ErasureAudit:
    erasures: int = 0
    pseudonymisations: int = 0
    keys_destroyed: int = 0
    findings: list[Finding] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.findings

    def summary(self) -> dict[str, Any]:
        return {"erasures": self.erasures, "pseudonymisations": self.pseudonymisations,
                "keys_destroyed": self.keys_destroyed, "findings": len(self.findings),
                "ok": self.ok}

    def as_dict(self) -> dict[str, Any]:
        return {"findings": [f.as_dict() for f in self.findings], "summary": self.summary()}


@dataclass(frozen=True, slots=True)
class _Recorded:
    position: int
    event_id: str
    type: str
    controller: str
    subject: str
    categories: frozenset[str]  # keys_shredded (erasures); empty for pseudonymisations


def audit_erasures(ledger: OpenLedger) -> ErasureAudit:
    recorded = _sweep_records(ledger)
    by_id = {r.event_id: r for r in recorded}
    result = ErasureAudit(
        erasures=sum(r.type == "SubjectErased" for r in recorded),
        pseudonymisations=sum(r.type == "SubjectPseudonymised" for r in recorded))
    tombstones = ledger.vault.tombstones()
    result.keys_destroyed = len(tombstones)
    tagged = {(t.event_id, t.category): t for t in tombstones if t.event_id}
    live = {(k.controller, k.subject, k.category): k
            for k in ledger.vault.live_keys({(r.controller, r.subject) for r in recorded})}

    # 1. every recorded erasure / pseudonymisation was carried out -----------------------------
    suspects: list[tuple[_Recorded, KeyRecord]] = []
    for r in recorded:
        for (c, s, category), key in sorted(live.items()):
            if (c, s) != (r.controller, r.subject):
                continue
            if r.type == "SubjectErased":
                if category not in r.categories:
                    continue
                done = tagged.get((r.event_id, category))
                if done is not None and done.generation < key.generation:
                    continue  # destroyed; the live key is a later relationship's
            elif key.sealed:
                continue
            suspects.append((r, key))
    if suspects:
        earlier = _generations_before(ledger, suspects)
        for r, key in suspects:
            if key.generation not in earlier[(r.event_id, key.category)]:
                continue  # the live key encrypted nothing recorded before the event: a new one
            what = ("still live: the erasure was recorded but this key was not destroyed"
                    if r.type == "SubjectErased" else
                    "not sealed: the pseudonymisation was recorded but this key still opens "
                    "the subject's data")
            result.findings.append(Finding(key.controller, key.subject, key.category,
                                           f"{what} (generation {key.generation}, "
                                           f"{r.type} at position {r.position})",
                                           r.event_id, r.position))

    # 2. every destroyed key has its SubjectErased -----------------------------------------
    erasures = [r for r in recorded if r.type == "SubjectErased"]
    naming: dict[tuple[str, str, str], list[_Recorded]] = defaultdict(list)
    for r in erasures:
        for category in r.categories:
            naming[(r.controller, r.subject, category)].append(r)
    for t in tombstones:
        if t.event_id:
            carried = by_id.get(t.event_id)
            if (carried is None or carried.type != "SubjectErased"
                    or (carried.controller, carried.subject) != (t.controller, t.subject)
                    or t.category not in carried.categories):
                result.findings.append(Finding(
                    t.controller, t.subject, t.category,
                    f"destroyed (generation {t.generation}) but no SubjectErased naming it: "
                    f"the event {t.event_id} it names is not such an erasure in the log",
                    t.event_id))
        elif not naming.get((t.controller, t.subject, t.category)):
            result.findings.append(Finding(
                t.controller, t.subject, t.category,
                f"destroyed (generation {t.generation}) but no SubjectErased in the log names it"))
    result.findings.sort(key=lambda f: (f.controller, f.subject, f.category, f.problem))
    return result


def _sweep_records(ledger: OpenLedger) -> list[_Recorded]:
    """The erasures and pseudonymisations in the log; only they are decoded."""
    found = []
    for record in ledger.log.read():
        if record.event_type not in CHECKED:
            continue
        e = ledger.codec.decode(record.payload)
        categories = frozenset(e.body.get("keys_shredded") or ()) if e.type == "SubjectErased" \
            else frozenset()
        found.append(_Recorded(record.position, e.event_id, e.type, e.controller, e.subject,
                               categories))
    return found


def _generations_before(ledger: OpenLedger, suspects: list[tuple[_Recorded, KeyRecord]],
                        ) -> dict[tuple[str, str], set[int]]:
    """(event id, category) -> the key generations the subject's personal data recorded
    before that event was encrypted under. One scan, decoding only records that mention one of
    the subjects (a subject's events share a hash chain, so positions order them)."""
    wanted = {(r.controller, r.subject) for r, _ in suspects}
    needles = {s.encode() for _, s in wanted}
    until = max(r.position for r, _ in suspects)
    one_chain = set(ledger.log.heads()) <= {0}  # embedded: positions order the whole log
    seen: dict[tuple[str, str, str], list[tuple[int, int]]] = defaultdict(list)
    for record in ledger.log.read():
        if one_chain and record.position >= until:
            break
        if not any(n in record.payload for n in needles):
            continue
        e = ledger.codec.decode(record.payload)
        if (e.controller, e.subject) not in wanted or e.pii is None:
            continue
        try:
            header = blob_header(e.pii)
        except LedgerError:
            continue
        seen[(e.controller, e.subject, header.category)].append((record.position, header.generation))
    out: dict[tuple[str, str], set[int]] = defaultdict(set)
    for r, key in suspects:
        out[(r.event_id, key.category)] = {
            g for p, g in seen[(r.controller, r.subject, key.category)] if p < r.position}
    return out
