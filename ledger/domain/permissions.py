"""The permission rules (SPEC §5 "Permissions") as pure functions over small typed facts: may
a controller process a subject's data for a purpose (on a channel)? No I/O. ``ledger permits``
(``ledger.app.permits``) and the ``permissions`` projection table both answer with ``decide``,
so the table an analyst queries cannot disagree with the ledger's own answer.

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
from typing import Any, Final

from ledger.domain.timeutil import format_day, format_micros
from ledger.domain.vocabulary import ALL

# Purposes a restriction (Art. 18) still allows: the contract itself and bookkeeping.
ALLOWED_WHILE_RESTRICTED: Final = frozenset({"service", "invoicing"})
# Purposes whose answer depends on the channel (opt-outs are per channel).
CHANNEL_PURPOSES: Final = frozenset({"marketing", "newsletter"})


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
