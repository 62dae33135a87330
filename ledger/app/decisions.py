"""Retention decisions for the whole population or one subject (SPEC §5), as known now or at
a knowledge time: the policies from the config, the projections from the one as-of opener, the
SQL from the read side (``projections.store.retention_queries``)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from ledger.app.opened import OpenLedger
from ledger.domain.errors import ConfigError, PolicyUnavailable, UnknownController, UsageError
from ledger.domain.retention.policy import Policy, load_policy
from ledger.domain.retention.rules import Decision, count_actions, decide
from projections.store.opener import open_read_model
from projections.store.read_model import ReadConnection
from projections.store.retention_queries import (
    DECISIONS_TABLE,
    decision_counts,
    materialise,
    population_decisions,
    subject_facts,
    subjects_facts,
)

# The SQL lives on the read side; these names stay importable from here (tests, bench).
__all__ = ["DECISIONS_TABLE", "DecisionTable", "controller_policies", "decision_counts",
           "decisions_at", "materialise", "population_decisions", "projections_as_of",
           "subject_decision", "subject_facts", "subjects_facts"]


@dataclass(frozen=True, slots=True)
class DecisionTable:
    as_of: int
    decisions: list[Decision]

    def counts(self) -> dict[str, int]:
        return count_actions(self.decisions)


def controller_policies(
    ledger: OpenLedger, controller: str | None = None, policy_path: str | None = None
) -> dict[str, Policy]:
    """controller -> its policy (from the config), for one controller or all of them. A
    configured policy that cannot be loaded is a PolicyUnavailable naming its controller: the
    others still work, one at a time (``controller``)."""
    controllers = ledger.config.controllers
    if controller is not None and controller not in controllers:
        raise UnknownController(controller)
    if policy_path is not None and controller is None and len(controllers) > 1:
        raise UsageError("{policy} applies to one controller: give {controller} too")
    chosen = [controller] if controller else sorted(controllers)
    if policy_path is not None:
        return {c: load_policy(policy_path) for c in chosen}
    policies = {}
    for c in chosen:
        try:
            policies[c] = load_policy(controllers[c].policy)
        except ConfigError as e:  # ledger.toml edited by hand, a policy file moved or broken
            raise PolicyUnavailable(c, controllers[c].policy, e.reason) from None
    return policies


@contextmanager
def projections_as_of(ledger: OpenLedger, as_of: int | None) -> Iterator[tuple[ReadConnection, int]]:
    """The projections to decide from, read-only, and the clock: as known now (clock: the
    ledger clock) or at the knowledge time ``as_of`` (``open_read_model``)."""
    with open_read_model(ledger, as_of=as_of) as con:
        yield con, ledger.clock.now() if as_of is None else as_of


def decisions_at(ledger: OpenLedger, as_of: int | None = None, controller: str | None = None,
                 policy_path: str | None = None) -> DecisionTable:
    policies = controller_policies(ledger, controller, policy_path)
    with projections_as_of(ledger, as_of) as (con, now):
        return DecisionTable(now, population_decisions(con, policies, now))


def subject_decision(ledger: OpenLedger, controller: str, subject: str,
                     as_of: int | None = None) -> Decision | None:
    """One subject's decision (for the register extract's retention schedule)."""
    policy = controller_policies(ledger, controller)[controller]
    with projections_as_of(ledger, as_of) as (con, now):
        facts = subject_facts(con, policy, controller, subject)
    return decide(facts[0], policy, now) if facts else None
