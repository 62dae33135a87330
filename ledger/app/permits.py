"""``permits``: may the controller process this person's data for a purpose (on a channel) now?
(SPEC §5 "Permissions"). Upstream apps ask it before they e-mail, profile or share.

Two halves: ``decide`` is a pure function over small typed facts (the rules, table-tested);
``gather`` reads those facts for one subject from the DuckDB projections. ``permits`` brings the
projections up to date first, so answers reflect every event in the log; with ``as_of`` it
answers from a replay of the log as known at T (knowledge time, SPEC §4) into a temporary
file, so events recorded after T never change the answer.

Rules, first match wins; every answer names the deciding event and its date:
1. erased or pseudonymised -> no;
2. restricted -> no, except ``service`` and ``invoicing``;
3. consent purposes -> yes only if the latest consent (for ``newsletter``: a subscription on the
   channel or a ConsentGiven) was given and not withdrawn, objected to or unsubscribed since;
4. legitimate-interest purposes -> yes unless an objection to the purpose (or a withdrawal of
   consent to it), or for ``marketing`` an unsubscribe on the channel or on every channel,
   came after the last opt-in;
5. contract and legal-obligation purposes -> yes while the relationship exists
   (SubjectRegistered seen in the current relationship, not erased).
"""

from __future__ import annotations

import tempfile
from contextlib import closing
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Final

import duckdb

from ledger.app.opened import OpenLedger
from ledger.domain.errors import UnknownController, UsageError
from ledger.domain.retention.policy import load_policy
from ledger.domain.timeutil import format_day, format_micros, to_micros
from ledger.domain.vocabulary import ALL, MARKETING_CHANNELS
from projections.engine.projector import (
    project,
    projections_path,
    read_only_connection,
    replay,
)

# Purposes a restriction (Art. 18) still allows: the contract itself and bookkeeping.
ALLOWED_WHILE_RESTRICTED: Final = frozenset({"service", "invoicing"})
# Purposes whose answer depends on the channel (opt-outs are per channel).
CHANNEL_PURPOSES: Final = frozenset({"marketing", "newsletter"})


class UnknownSubject(UsageError):
    """No event of this subject is in the ledger (for this controller)."""


# --- facts --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, order=True)
class Evidence:
    """An event a fact rests on. Ordered like the projections order a subject's events: by
    event time, equal times by log position (the later record wins)."""

    at: int  # occurred_at, UTC microseconds
    position: int
    event_id: str
    type: str

    def after(self, other: Evidence | None) -> bool:
        return other is None or (self.at, self.position) > (other.at, other.position)

    def describe(self) -> str:
        return f"{self.type} on {format_day(self.at)} ({self.event_id})"

    def as_dict(self) -> dict[str, Any]:
        return {"event_id": self.event_id, "type": self.type, "at": format_micros(self.at),
                "position": self.position}


@dataclass(frozen=True, slots=True)
class ConsentFact:
    """The subject's consent_state row for one purpose."""

    purpose: str
    status: str  # granted | withdrawn | objected
    evidence: Evidence


@dataclass(frozen=True, slots=True)
class SubscriptionFact:
    """A subscriptions row; ``*`` in an unsubscribe means every list / every channel."""

    list: str
    channel: str
    status: str  # subscribed | unsubscribed
    evidence: Evidence

    def covers(self, list_: str, channel: str | None) -> bool:
        """Whether this (unsubscribe) row reaches a subscription to list_ on channel; with no
        channel asked, only an all-channel row reaches every channel."""
        return (self.list in (list_, ALL)) and (
            self.channel == ALL or (channel is not None and self.channel == channel))


@dataclass(frozen=True, slots=True)
class PermitFacts:
    """What the projections know about one subject, as much as the rules need."""

    controller: str
    subject: str
    status: str = "active"  # active | restricted | pseudonymised | erased
    status_evidence: Evidence | None = None
    registered: Evidence | None = None  # the latest SubjectRegistered
    consents: dict[str, ConsentFact] = field(default_factory=dict)  # purpose -> row
    subscriptions: tuple[SubscriptionFact, ...] = ()


@dataclass(frozen=True, slots=True)
class Permission:
    permitted: bool
    reason: str
    rule: str  # erased | pseudonymised | restricted | consent | legitimate_interest | relationship
    purpose: str
    basis: str
    channel: str | None = None
    evidence: Evidence | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"permitted": self.permitted, "reason": self.reason, "rule": self.rule,
                "purpose": self.purpose, "basis": self.basis, "channel": self.channel,
                "evidence": self.evidence.as_dict() if self.evidence else None}


# --- the rules (pure) ---------------------------------------------------------------------


def decide(facts: PermitFacts, purpose: str, basis: str, channel: str | None = None) -> Permission:
    """The answer for ``purpose`` (whose legal basis under the policy is ``basis``)."""

    def answer(permitted: bool, rule: str, reason: str, evidence: Evidence | None) -> Permission:
        return Permission(permitted, reason, rule, purpose, basis, channel, evidence)

    # Only opt-outs are per channel: for other purposes a channel changes nothing.
    where = f" on {channel}" if channel and purpose in CHANNEL_PURPOSES else ""
    ev = facts.status_evidence
    if facts.status in ("erased", "pseudonymised"):
        what = f"the subject was {facts.status}"
        return answer(False, facts.status, f"{what}: {ev.describe()}" if ev else what, ev)
    if facts.status == "restricted" and purpose not in ALLOWED_WHILE_RESTRICTED:
        what = "processing is restricted (Art. 18)"
        reason = f"{what} since {ev.describe()}" if ev else what
        return answer(False, "restricted", f"{reason}; only service and invoicing are allowed", ev)

    if basis == "consent":
        if purpose == "newsletter":
            return _newsletter(facts, channel, answer)
        consent = facts.consents.get(purpose)
        if consent is None:
            return answer(False, "consent", f"no consent to {purpose} recorded", None)
        if consent.status == "granted":
            return answer(True, "consent", f"consent to {purpose} given: "
                          f"{consent.evidence.describe()}", consent.evidence)
        return answer(False, "consent", f"consent to {purpose} {consent.status}: "
                      f"{consent.evidence.describe()}", consent.evidence)

    if basis == "legitimate_interest":
        return _legitimate_interest(facts, purpose, channel, where, answer)

    # contract, legal_obligation: while the relationship exists (erasure was caught above).
    if facts.registered is None:
        return answer(False, "relationship", f"no relationship: no SubjectRegistered for this "
                      f"subject ({basis.replace('_', ' ')} needs one)", None)
    return answer(True, "relationship", f"{basis.replace('_', ' ')}: relationship since "
                  f"{facts.registered.describe()}", facts.registered)


def _latest(evidence: list[Evidence]) -> Evidence | None:
    return max(evidence, default=None)


def _legitimate_interest(facts: PermitFacts, purpose: str, channel: str | None, where: str,
                         answer: Any) -> Permission:
    consent = facts.consents.get(purpose)
    # consent_state keeps the latest of ConsentGiven / ConsentWithdrawn / ObjectionRaised, so
    # an objection (or withdrawal) there came after every explicit opt-in to the purpose. A
    # newsletter subscription is consent to the newsletter, not a retraction of an objection.
    if consent is not None and consent.status in ("objected", "withdrawn"):
        word = "objection to" if consent.status == "objected" else "consent withdrawn for"
        return answer(False, "legitimate_interest", f"{word} {purpose}: "
                      f"{consent.evidence.describe()}", consent.evidence)
    opt_ins = [consent.evidence] if consent is not None else []
    if purpose == "marketing":
        # A subscription re-opts in on its own channel only; with no channel asked, only an
        # explicit consent to marketing outweighs an all-channel unsubscribe.
        opt_ins += [s.evidence for s in facts.subscriptions
                    if s.status == "subscribed" and channel is not None and s.channel == channel]
        opt_outs = [s.evidence for s in facts.subscriptions
                    if s.status == "unsubscribed" and (s.channel == ALL or s.channel == channel)]
        last_in, last_out = _latest(opt_ins), _latest(opt_outs)
        if last_out is not None and last_out.after(last_in):
            return answer(False, "legitimate_interest", f"unsubscribed from marketing{where}: "
                          f"{last_out.describe()}", last_out)
        if last_out is not None and last_in is not None:
            return answer(True, "legitimate_interest", f"legitimate interest: opted in again "
                          f"{last_in.describe()} after unsubscribing ({last_out.describe()})",
                          last_in)
    last_in = _latest(opt_ins)
    basis = f"legitimate interest in {purpose}{where}: no objection or opt-out recorded"
    if last_in is not None:
        return answer(True, "legitimate_interest", f"{basis} since {last_in.describe()}", last_in)
    if facts.registered is not None:
        return answer(True, "legitimate_interest", f"{basis}; relationship since "
                      f"{facts.registered.describe()}", facts.registered)
    return answer(True, "legitimate_interest", basis, None)


def _newsletter(facts: PermitFacts, channel: str | None, answer: Any) -> Permission:
    """Each list subscription on the channel (or every channel) and a ConsentGiven for the
    newsletter are opt-ins; one is live unless a withdrawal of the newsletter consent or an
    unsubscribe reaching it came later. Yes if any is live (naming the latest live one)."""
    consent = facts.consents.get("newsletter")
    withdrawn = consent.evidence if consent is not None and consent.status != "granted" else None
    unsubscribes = [s for s in facts.subscriptions if s.status == "unsubscribed"]
    live: list[Evidence] = []
    stopped: list[Evidence] = []  # the events that ended an opt-in

    def stop_of(opt_in: Evidence, list_: str, chan: str | None) -> Evidence | None:
        stops = [u.evidence for u in unsubscribes
                 if u.covers(list_, chan) and u.evidence.after(opt_in)]
        if withdrawn is not None and withdrawn.after(opt_in):
            stops.append(withdrawn)
        return _latest(stops)

    for s in facts.subscriptions:
        if s.status == "subscribed" and (channel is None or s.channel == channel):
            stop = stop_of(s.evidence, s.list, s.channel)
            (live if stop is None else stopped).append(s.evidence if stop is None else stop)
    for s in facts.subscriptions:  # the same list and channel unsubscribed: the row itself
        if s.status == "unsubscribed" and s.list != ALL and (channel is None or s.channel in (channel, ALL)):
            stopped.append(s.evidence)
    if consent is not None and consent.status == "granted":
        # A consent has no list: only an unsubscribe from all marketing on the channel ends it.
        stop = stop_of(consent.evidence, ALL, channel)
        (live if stop is None else stopped).append(consent.evidence if stop is None else stop)
    where = f" on {channel}" if channel else ""
    if live:
        latest = max(live)
        return answer(True, "consent", f"opted in to the newsletter{where}: "
                      f"{latest.describe()}", latest)
    if withdrawn is not None:
        stopped.append(withdrawn)
    last = _latest(stopped)
    if last is None:
        return answer(False, "consent", f"no newsletter subscription or consent{where} recorded",
                      None)
    return answer(False, "consent", f"newsletter{where} ended: {last.describe()}", last)


# --- gathering the facts (DuckDB) ------------------------------------------------------------


def _evidence(at: datetime, position: int | None, event_id: str | None, type_: str) -> Evidence:
    return Evidence(to_micros(at), int(position or 0), event_id or "", type_)


_STATUS_TYPES: Final = {"restricted": "RightsRequested", "pseudonymised": "SubjectPseudonymised",
                        "erased": "SubjectErased", "active": "RightsRequestClosed"}
_CONSENT_TYPES: Final = {"granted": "ConsentGiven", "withdrawn": "ConsentWithdrawn",
                         "objected": "ObjectionRaised"}
_SUBSCRIPTION_TYPES: Final = {"subscribed": "NewsletterSubscribed", "unsubscribed": "Unsubscribed"}


def subject_controllers(con: duckdb.DuckDBPyConnection, subject: str) -> list[str]:
    rows = con.execute("SELECT DISTINCT controller FROM activity_clock WHERE subject = ? "
                       "ORDER BY 1", [subject]).fetchall()
    return [r[0] for r in rows]


def gather(con: duckdb.DuckDBPyConnection, controller: str, subject: str) -> PermitFacts:
    """The subject's facts from the projections; raises UnknownSubject if it has no events."""
    key = [controller, subject]
    if con.execute("SELECT 1 FROM activity_clock WHERE controller = ? AND subject = ?",
                   key).fetchone() is None:
        raise UnknownSubject(f"unknown subject {subject[:16]}… for controller {controller!r}: "
                             "no events recorded")
    status, status_ev = "active", None
    row = con.execute(
        "SELECT s.status, s.since, s.event_id, e.position, e.type, s.previous_erased_at, "
        "s.previous_erased_position FROM pseudonymisation_status s "
        "LEFT JOIN events e ON e.event_id = s.event_id WHERE s.controller = ? AND s.subject = ?",
        key).fetchone()
    after_at, after_position = None, None  # where the current relationship begins (SPEC §5)
    if row is not None:
        status = row[0]
        if row[1] is not None:
            status_ev = _evidence(row[1], row[3], row[2], row[4] or _STATUS_TYPES[status])
        after_at, after_position = row[5], row[6]
    # Only a registration of the current relationship establishes it (consent_state and
    # subscriptions hold the current relationship's rows only: the fold drops the others).
    reg = con.execute(
        "SELECT occurred_at, position, event_id FROM events WHERE controller = ? AND subject = ? "
        "AND type = 'SubjectRegistered' AND (?::TIMESTAMP IS NULL OR occurred_at > ? OR "
        "(occurred_at = ? AND position > ?)) ORDER BY occurred_at DESC, position DESC LIMIT 1",
        [*key, after_at, after_at, after_at, after_position]).fetchone()
    consents = {
        purpose: ConsentFact(purpose, st, _evidence(since, pos, eid, _CONSENT_TYPES[st]))
        for purpose, st, since, pos, eid in con.execute(
            "SELECT purpose, status, since, position, event_id FROM consent_state "
            "WHERE controller = ? AND subject = ?", key).fetchall()
    }
    subscriptions = tuple(
        SubscriptionFact(list_, chan, st, _evidence(since, pos, eid, _SUBSCRIPTION_TYPES[st]))
        for list_, chan, st, since, pos, eid in con.execute(
            "SELECT list, channel, status, since, position, event_id FROM subscriptions "
            "WHERE controller = ? AND subject = ? ORDER BY since, position", key).fetchall()
    )
    return PermitFacts(
        controller, subject, status, status_ev,
        _evidence(reg[0], reg[1], reg[2], "SubjectRegistered") if reg else None,
        consents, subscriptions,
    )


# --- entry points -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SubjectRef:
    controller: str
    subject: str


def resolve_subject(
    ledger: OpenLedger,
    con: duckdb.DuckDBPyConnection,
    *,
    subject: str | None = None,
    email: str | None = None,
    account: str | None = None,
    controller: str | None = None,
) -> SubjectRef:
    """A pseudonym (with its controller, or the one controller that knows it), or a natural
    identifier with its controller (SPEC §8)."""
    if (subject is None) == (email is None and account is None):
        raise UsageError("give a SUBJECT pseudonym, or --email/--account with --controller")
    if controller is not None and controller not in ledger.config.controllers:
        raise UnknownController(controller)
    if subject is None:
        if controller is None:
            raise UsageError("--email/--account need --controller (the pseudonym is per controller)")
        return SubjectRef(controller, ledger.subject_id(controller, email=email, account=account))
    if controller is not None:
        return SubjectRef(controller, subject)
    found = subject_controllers(con, subject)
    if not found:
        raise UnknownSubject(f"unknown subject {subject[:16]}…: no events recorded")
    if len(found) > 1:
        raise UsageError(f"subject {subject[:16]}… is known to {', '.join(found)}: give --controller")
    return SubjectRef(found[0], subject)


def resolve_subject_in(ledger: OpenLedger, path: Path | None = None, *, subject: str | None = None,
                       email: str | None = None, account: str | None = None,
                       controller: str | None = None) -> SubjectRef:
    """``resolve_subject`` against the projections file at ``path`` (e.g. one replayed as of
    a time); without one, against the live projections, brought up to date first."""
    if path is None:
        project(ledger)
        path = projections_path(ledger)
    with closing(read_only_connection(path)) as con:
        return resolve_subject(ledger, con, subject=subject, email=email, account=account,
                               controller=controller)


def purpose_basis(ledger: OpenLedger, controller: str, purpose: str) -> str:
    """The legal basis of a purpose under the controller's policy; a usage error if the policy
    does not know the purpose."""
    policy = load_policy(ledger.config.controllers[controller].policy)
    basis = policy.basis(purpose)
    if basis is None:
        raise UsageError(f"unknown purpose {purpose[:40]!r} for policy {policy.name!r} "
                         f"(known: {', '.join(sorted(policy.purposes))})")
    return basis


def check_channel(channel: str | None) -> str | None:
    if channel is not None and channel not in MARKETING_CHANNELS:
        raise UsageError(f"--channel: unknown channel {channel[:40]!r} "
                         f"(one of {', '.join(sorted(MARKETING_CHANNELS))})")
    return channel


@dataclass(frozen=True, slots=True)
class PermitAnswer:
    controller: str
    subject: str
    as_of: int
    permission: Permission

    @property
    def permitted(self) -> bool:
        return self.permission.permitted

    @property
    def reason(self) -> str:
        return self.permission.reason

    def as_dict(self) -> dict[str, Any]:
        return {**self.permission.as_dict(), "controller": self.controller,
                "subject": self.subject, "as_of": format_micros(self.as_of)}


def open_projections(ledger: OpenLedger, as_of: int | None, workdir: Path) -> Path:
    """The projections file to answer from: the live one brought up to date, or a replay as of
    T built in ``workdir`` (a temporary directory the caller removes)."""
    if as_of is None:
        project(ledger)
        return projections_path(ledger)
    target = workdir / "as-of.duckdb"
    replay(ledger, as_of, target)
    return target


def permits(
    ledger: OpenLedger,
    purpose: str,
    *,
    subject: str | None = None,
    email: str | None = None,
    account: str | None = None,
    controller: str | None = None,
    channel: str | None = None,
    as_of: int | None = None,
) -> PermitAnswer:
    """May ``purpose`` be pursued for this person (on ``channel``) now, or as known at
    ``as_of``? Raises UsageError for an unknown controller (UnknownController), purpose,
    channel or subject."""
    check_channel(channel)
    if controller is not None:  # a bad purpose is a usage error before any I/O
        if controller not in ledger.config.controllers:
            raise UnknownController(controller)
        purpose_basis(ledger, controller, purpose)
    with tempfile.TemporaryDirectory(prefix="ledger-permits-") as workdir:
        con = read_only_connection(open_projections(ledger, as_of, Path(workdir)))
        try:
            ref = resolve_subject(ledger, con, subject=subject, email=email, account=account,
                                  controller=controller)
            basis = purpose_basis(ledger, ref.controller, purpose)
            facts = gather(con, ref.controller, ref.subject)
        except UnknownSubject as e:
            if as_of is None:
                raise
            raise UnknownSubject(f"{e} as of {format_micros(as_of)}") from None
        finally:
            con.close()
    permission = decide(facts, purpose, basis, channel)
    return PermitAnswer(ref.controller, ref.subject,
                        as_of if as_of is not None else ledger.clock.now(), permission)
