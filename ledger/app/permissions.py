"""Keeps the ``permissions`` projection table: for every subject, every purpose of its
controller's policy and (for channel purposes) every marketing channel, the answer of
``ledger permits``, computed by the same pure rules (``ledger.domain.permissions.decide``) over
the same facts (``ledger.app.permits.gather``): one implementation, not a copy.

The table's clock is the file's knowledge time: the rows are what ``permits`` answers with
every record the file reflects (for the live file, the log as projected; for a replay as of T,
the log as known at T). The rules do not depend on the wall clock, so that knowledge time is
the whole of the answer's clock; ``as_of`` says which it was."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ledger.app.decisions import controller_policies
from ledger.app.opened import OpenLedger
from ledger.app.permits import gather
from ledger.domain.permissions import CHANNEL_PURPOSES, decide
from ledger.domain.retention.policy import Policy
from ledger.domain.timeutil import to_naive_utc
from ledger.domain.vocabulary import ALL, MARKETING_CHANNELS
from projections.engine.projector import project, projections_path
from projections.store.opener import open_read_model
from projections.store.permissions_table import knowledge_time, known_subjects, save_permissions
from projections.store.read_model import ReadConnection


def permission_rows(con: ReadConnection, policies: dict[str, Policy]) -> list[tuple[Any, ...]]:
    """Every row of the table, in ``projections.store.permissions_table.COLUMNS`` order."""
    as_of = knowledge_time(con)
    rows: list[tuple[Any, ...]] = []
    for controller, subject in known_subjects(con, sorted(policies)):
        policy = policies[controller]
        facts = gather(con, controller, subject)
        for purpose in sorted(policy.purposes):
            basis = policy.basis(purpose)
            assert basis is not None  # a purpose of the policy has a basis
            channels = sorted(MARKETING_CHANNELS) if purpose in CHANNEL_PURPOSES else [None]
            for channel in channels:
                p = decide(facts, purpose, basis, channel)
                ev = p.evidence
                rows.append((controller, subject, purpose, ALL if channel is None else channel,
                             facts.status, basis, p.permitted, p.rule, p.reason,
                             None if ev is None else ev.event_id, None if ev is None else ev.type,
                             None if ev is None else to_naive_utc(ev.at), policy.name,
                             policy.content_hash, as_of))
    return rows


def refresh_permissions(ledger: OpenLedger, path: Path | None = None) -> int:
    """Recomputes the table of the live projections (brought up to date first), or of the
    file at ``path`` as it is (e.g. a replay); returns how many rows it holds."""
    if path is None:
        project(ledger)
        path = projections_path(ledger)
    policies = controller_policies(ledger)
    with open_read_model(ledger, path=path) as con:
        rows = permission_rows(con, policies)
    save_permissions(path, rows)
    return len(rows)
