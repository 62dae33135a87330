"""``permits``: may the controller process this person's data for a purpose (on a channel) now?
(SPEC §5 "Permissions"). Upstream apps ask it before they e-mail, profile or share.

Two halves: ``decide`` is a pure function over small typed facts (the rules, table-tested);
``gather`` builds those facts for one subject from the projections' rows
(``projections.store.subject_queries``). ``permits`` reads through the one as-of opener: the
projections brought up to date, so answers reflect every event in the log, or with ``as_of``
the log as known at T (knowledge time, SPEC §4), so events recorded after T never change the
answer.

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

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, cast

from ledger.app.decisions import controller_policies
from ledger.app.opened import OpenLedger
from ledger.domain.errors import UnknownController, UsageError
from ledger.domain.subjects import SubjectSelector
from ledger.domain.timeutil import format_day, format_micros, to_micros
from ledger.domain.vocabulary import ALL, MARKETING_CHANNELS
from projections.store.opener import open_read_model
from projections.store.read_model import ReadConnection
from projections.store.subject_queries import (
    EventRow,
    consent_rows,
    controllers_knowing,
    is_known,
    latest_registration,
    subject_status,
    subscription_rows,
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

# decide's answer for its purpose: (permitted, rule, reason, evidence) -> Permission
Answer = Callable[[bool, str, str, Evidence | None], Permission]


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
                         answer: Answer) -> Permission:
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


def _newsletter(facts: PermitFacts, channel: str | None, answer: Answer) -> Permission:
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


# --- gathering the facts (from the read side) -------------------------------------------------


def _evidence(row: EventRow, type_: str) -> Evidence:
    return Evidence(to_micros(row.at), int(row.position or 0), row.event_id or "", row.type or type_)


_STATUS_TYPES: Final = {"restricted": "RightsRequested", "pseudonymised": "SubjectPseudonymised",
                        "erased": "SubjectErased", "active": "RightsRequestClosed"}
_CONSENT_TYPES: Final = {"granted": "ConsentGiven", "withdrawn": "ConsentWithdrawn",
                         "objected": "ObjectionRaised"}
_SUBSCRIPTION_TYPES: Final = {"subscribed": "NewsletterSubscribed", "unsubscribed": "Unsubscribed"}


def gather(con: ReadConnection, controller: str, subject: str) -> PermitFacts:
    """The subject's facts from the projections; raises UnknownSubject if it has no events."""
    if not is_known(con, controller, subject):
        raise UnknownSubject(f"unknown subject {subject[:16]}… for controller {controller!r}: "
                             "no events recorded")
    row = subject_status(con, controller, subject)
    status = "active" if row is None else row.status
    status_ev = None if row is None or row.since is None else \
        _evidence(row.since, _STATUS_TYPES[status])
    # Only a registration of the current relationship establishes it (consent_state and
    # subscriptions hold the current relationship's rows only: the fold drops the others).
    reg = latest_registration(con, controller, subject,
                              None if row is None else row.previous_erased_at,
                              None if row is None else row.previous_erased_position)
    consents = {purpose: ConsentFact(purpose, st, _evidence(since, _CONSENT_TYPES[st]))
                for purpose, st, since in consent_rows(con, controller, subject)}
    subscriptions = tuple(
        SubscriptionFact(list_, chan, st, _evidence(since, _SUBSCRIPTION_TYPES[st]))
        for list_, chan, st, since in subscription_rows(con, controller, subject))
    return PermitFacts(controller, subject, status, status_ev,
                       None if reg is None else _evidence(reg, "SubjectRegistered"),
                       consents, subscriptions)


# --- entry points -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SubjectRef:
    controller: str
    subject: str


def resolve_subject(
    ledger: OpenLedger,
    con: ReadConnection,
    *,
    subject: str | None = None,
    email: str | None = None,
    account: str | None = None,
    controller: str | None = None,
) -> SubjectRef:
    """A pseudonym (with its controller, or the one controller that knows it), or a natural
    identifier with its controller (SPEC §8)."""
    who = SubjectSelector(subject_id=subject, email_address=email, account_id=account,
                          controller=controller)  # names one subject, or InvalidSubject
    if who.controller is not None and who.controller not in ledger.config.controllers:
        raise UnknownController(who.controller)
    if who.subject_id is None:  # a natural identifier: the selector made sure of its controller
        controller = cast(str, who.controller)
        return SubjectRef(controller, ledger.subject_id(controller, email=email, account=account))
    if who.controller is not None:
        return SubjectRef(who.controller, who.subject_id)
    found = controllers_knowing(con, who.subject_id)
    if not found:
        raise UnknownSubject(f"unknown subject {who.subject_id[:16]}…: no events recorded")
    if len(found) > 1:
        raise UsageError(f"subject {who.subject_id[:16]}… is known to {', '.join(found)}: "
                         "give {controller}")
    return SubjectRef(found[0], who.subject_id)


def resolve_subject_in(ledger: OpenLedger, path: Path | None = None, *, subject: str | None = None,
                       email: str | None = None, account: str | None = None,
                       controller: str | None = None) -> SubjectRef:
    """``resolve_subject`` against the projections file at ``path`` (e.g. one replayed as of
    a time); without one, against the live projections, brought up to date first."""
    with open_read_model(ledger, path=path) as con:
        return resolve_subject(ledger, con, subject=subject, email=email, account=account,
                               controller=controller)


def purpose_basis(ledger: OpenLedger, controller: str, purpose: str) -> str:
    """The legal basis of a purpose under the controller's policy; a usage error if the policy
    does not know the purpose."""
    policy = controller_policies(ledger, controller)[controller]
    basis = policy.basis(purpose)
    if basis is None:
        raise UsageError(f"unknown purpose {purpose[:40]!r} for policy {policy.name!r} "
                         f"(known: {', '.join(sorted(policy.purposes))})")
    return basis


def check_channel(channel: str | None) -> str | None:
    if channel is not None and channel not in MARKETING_CHANNELS:
        raise UsageError(f"unknown channel {channel[:40]!r} "
                         f"(one of {', '.join(sorted(MARKETING_CHANNELS))})", parameter="channel")
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
    with open_read_model(ledger, as_of=as_of) as con:
        try:
            ref = resolve_subject(ledger, con, subject=subject, email=email, account=account,
                                  controller=controller)
            basis = purpose_basis(ledger, ref.controller, purpose)
            facts = gather(con, ref.controller, ref.subject)
        except UnknownSubject as e:
            if as_of is None:
                raise
            raise UnknownSubject(f"{e} as of {format_micros(as_of)}") from None
    permission = decide(facts, purpose, basis, channel)
    return PermitAnswer(ref.controller, ref.subject,
                        as_of if as_of is not None else ledger.clock.now(), permission)


@dataclass(frozen=True, slots=True)
class PermitQuestion:
    """One question of a batch: may ``purpose`` be pursued for ``who`` (on ``channel``)?"""

    purpose: str
    who: SubjectSelector
    channel: str | None = None
    as_of: int | None = None


def permits_many(ledger: OpenLedger, questions: list[PermitQuestion]
                 ) -> list[PermitAnswer | UsageError]:
    """Answers a batch, in order: the questions about now from ONE read model brought up to
    date once (a batch costs one catch-up, not one per question); a question as of a time
    goes through ``permits``. A question that cannot be answered (unknown controller,
    purpose, channel or subject) is its UsageError in place of the answer."""
    results: list[PermitAnswer | UsageError | None] = [None] * len(questions)
    current = [(i, q) for i, q in enumerate(questions) if q.as_of is None]
    if current:
        with open_read_model(ledger) as con:
            now = ledger.clock.now()
            for i, q in current:
                try:
                    results[i] = _answer_in(ledger, con, q, now)
                except UsageError as e:
                    results[i] = e
    for i, q in enumerate(questions):
        if q.as_of is not None:
            try:
                results[i] = permits(ledger, q.purpose, subject=q.who.subject_id,
                                     email=q.who.email_address, account=q.who.account_id,
                                     controller=q.who.controller, channel=q.channel,
                                     as_of=q.as_of)
            except UsageError as e:
                results[i] = e
    return [r for r in results if r is not None]


def _answer_in(ledger: OpenLedger, con: ReadConnection, q: PermitQuestion, now: int
               ) -> PermitAnswer:
    """``permits`` for a question about now, on an open read model (the same steps)."""
    check_channel(q.channel)
    if q.who.controller is not None:
        if q.who.controller not in ledger.config.controllers:
            raise UnknownController(q.who.controller)
        purpose_basis(ledger, q.who.controller, q.purpose)
    ref = resolve_subject(ledger, con, subject=q.who.subject_id, email=q.who.email_address,
                          account=q.who.account_id, controller=q.who.controller)
    basis = purpose_basis(ledger, ref.controller, q.purpose)
    facts = gather(con, ref.controller, ref.subject)
    return PermitAnswer(ref.controller, ref.subject, now, decide(facts, q.purpose, basis, q.channel))
