"""``permits``: may the controller process this person's data for a purpose (on a channel) now?
(SPEC §5 "Permissions"). Upstream apps ask it before they e-mail, profile or share.

Two halves: ``decide`` (``ledger.domain.permissions``, shared with the ``permissions``
projection table) is a pure function over small typed facts (the rules, table-tested);
``gather`` builds those facts for one subject from the projections' rows
(``projections.store.subject_queries``). ``permits`` reads through the one as-of opener: the
projections brought up to date, so answers reflect every event in the log, or with ``as_of``
the log as known at T (knowledge time, SPEC §4), so events recorded after T never change the
answer.

The rules themselves, first match wins, are listed in ``ledger.domain.permissions``.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, cast

from ledger.app.decisions import controller_policies
from ledger.app.opened import OpenLedger
from ledger.domain.errors import UnknownController, UsageError
from ledger.domain.permissions import (
    ALLOWED_WHILE_RESTRICTED as ALLOWED_WHILE_RESTRICTED,
)
from ledger.domain.permissions import (
    CHANNEL_PURPOSES as CHANNEL_PURPOSES,
)
from ledger.domain.permissions import (
    ConsentFact,
    Evidence,
    Permission,
    PermitFacts,
    SubscriptionFact,
    decide,
)
from ledger.domain.retention.policy import Policy
from ledger.domain.subjects import SubjectSelector
from ledger.domain.timeutil import format_micros, to_micros
from ledger.domain.vocabulary import MARKETING_CHANNELS
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


class UnknownSubject(UsageError):
    """No event of this subject is in the ledger (for this controller)."""


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
    return _basis(controller_policies(ledger, controller)[controller], purpose)


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


# The facts of (controller, subject) on an open read model, and a controller's policy: the
# library reads both each time; the service keeps them cached (``ledger.app.serving``).
FactsOf = Callable[[ReadConnection, str, str], PermitFacts]
PolicyOf = Callable[[str], Policy]


@dataclass(frozen=True, slots=True)
class AnswerSource:
    """Where ``permits_many`` reads questions about now: ``read_model`` is the projections
    brought up to date (the library opens the file once per batch; the service hands out its
    open store), ``facts`` and ``policy`` as ``gather`` and ``controller_policies`` give them,
    and ``before_replay`` runs before a question as of a time opens the file itself."""

    read_model: Callable[[], AbstractContextManager[ReadConnection]]
    facts: FactsOf = gather
    policy: PolicyOf | None = None
    before_replay: Callable[[], None] = lambda: None


def permits_many(ledger: OpenLedger, questions: list[PermitQuestion],
                 source: AnswerSource | None = None) -> list[PermitAnswer | UsageError]:
    """Answers a batch, in order: the questions about now from ONE read model brought up to
    date once (a batch costs one catch-up, not one per question); a question as of a time
    goes through ``permits``. A question that cannot be answered (unknown controller,
    purpose, channel or subject) is its UsageError in place of the answer."""
    if source is None:
        source = AnswerSource(lambda: open_read_model(ledger))
    policy_of = source.policy or (lambda c: controller_policies(ledger, c)[c])
    results: list[PermitAnswer | UsageError | None] = [None] * len(questions)
    current = [(i, q) for i, q in enumerate(questions) if q.as_of is None]
    if current:
        with source.read_model() as con:
            now = ledger.clock.now()
            for i, q in current:
                try:
                    results[i] = _answer_in(ledger, con, q, now, source.facts, policy_of)
                except UsageError as e:
                    results[i] = e
    if len(current) < len(questions):
        source.before_replay()
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


def _basis(policy: Policy, purpose: str) -> str:
    """``purpose_basis`` on a policy at hand (the same message)."""
    basis = policy.basis(purpose)
    if basis is None:
        raise UsageError(f"unknown purpose {purpose[:40]!r} for policy {policy.name!r} "
                         f"(known: {', '.join(sorted(policy.purposes))})")
    return basis


def _answer_in(ledger: OpenLedger, con: ReadConnection, q: PermitQuestion, now: int,
               facts_of: FactsOf = gather, policy_of: PolicyOf | None = None) -> PermitAnswer:
    """``permits`` for a question about now, on an open read model (the same steps)."""
    policy = policy_of or (lambda c: controller_policies(ledger, c)[c])
    check_channel(q.channel)
    if q.who.controller is not None:
        if q.who.controller not in ledger.config.controllers:
            raise UnknownController(q.who.controller)
        _basis(policy(q.who.controller), q.purpose)
    ref = resolve_subject(ledger, con, subject=q.who.subject_id, email=q.who.email_address,
                          account=q.who.account_id, controller=q.who.controller)
    basis = _basis(policy(ref.controller), q.purpose)
    facts = facts_of(con, ref.controller, ref.subject)
    return PermitAnswer(ref.controller, ref.subject, now, decide(facts, q.purpose, basis, q.channel))
