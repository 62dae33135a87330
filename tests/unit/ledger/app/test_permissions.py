"""The permission rules (SPEC §5) as a table of cases over small typed facts: no I/O."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import pytest

from ledger.app.permits import (
    ConsentFact,
    Evidence,
    PermitFacts,
    SubscriptionFact,
    decide,
)
from ledger.domain.timeutil import parse_timestamp

_positions = itertools.count(1)


def ev(type_: str, day: str) -> Evidence:
    """An event on 2026-<day> (MM-DD); positions grow in the order events are built."""
    n = next(_positions)
    return Evidence(parse_timestamp(f"2026-{day}"), n, f"ev-{type_}-{day}-{n}", type_)


def consent(purpose: str, status: str, day: str) -> ConsentFact:
    kind = {"granted": "ConsentGiven", "withdrawn": "ConsentWithdrawn",
            "objected": "ObjectionRaised"}[status]
    return ConsentFact(purpose, status, ev(kind, day))


def sub(list_: str, channel: str, status: str, day: str) -> SubscriptionFact:
    kind = "NewsletterSubscribed" if status == "subscribed" else "Unsubscribed"
    return SubscriptionFact(list_, channel, status, ev(kind, day))


REGISTERED = ev("SubjectRegistered", "01-10")


def facts(*, status: str = "active", status_day: str | None = None, registered: bool = True,
          consents: tuple[ConsentFact, ...] = (), subs: tuple[SubscriptionFact, ...] = ()
          ) -> PermitFacts:
    kind = {"erased": "SubjectErased", "pseudonymised": "SubjectPseudonymised",
            "restricted": "RightsRequested"}.get(status, "RightsRequestClosed")
    return PermitFacts(
        "cowrite", "s" * 64, status, ev(kind, status_day) if status_day else None,
        REGISTERED if registered else None, {c.purpose: c for c in consents}, subs,
    )


@dataclass(frozen=True)
class Case:
    name: str
    facts: PermitFacts
    purpose: str
    basis: str
    channel: str | None
    permitted: bool
    rule: str
    deciding: str | None  # the type of the deciding event named in the reason (None: none)


CASES = [
    # status outranks everything
    Case("erased: no, even for invoicing", facts(status="erased", status_day="04-01"),
         "invoicing", "legal_obligation", None, False, "erased", "SubjectErased"),
    Case("pseudonymised: no, even for service",
         facts(status="pseudonymised", status_day="04-01"),
         "service", "contract", None, False, "pseudonymised", "SubjectPseudonymised"),
    Case("pseudonymised: no, even with consent",
         facts(status="pseudonymised", status_day="04-01",
               consents=(consent("profiling", "granted", "02-01"),)),
         "profiling", "consent", None, False, "pseudonymised", "SubjectPseudonymised"),
    Case("restricted: marketing no", facts(status="restricted", status_day="03-01"),
         "marketing", "legitimate_interest", "email", False, "restricted", "RightsRequested"),
    Case("restricted: granted consent still no",
         facts(status="restricted", status_day="03-01",
               consents=(consent("analytics", "granted", "02-01"),)),
         "analytics", "consent", None, False, "restricted", "RightsRequested"),
    Case("restricted: service yes", facts(status="restricted", status_day="03-01"),
         "service", "contract", None, True, "relationship", "SubjectRegistered"),
    Case("restricted: invoicing yes", facts(status="restricted", status_day="03-01"),
         "invoicing", "legal_obligation", None, True, "relationship", "SubjectRegistered"),
    # contract / legal obligation
    Case("service without a relationship: no", facts(registered=False),
         "service", "contract", None, False, "relationship", None),
    # consent purposes
    Case("profiling without consent: no", facts(), "profiling", "consent", None, False,
         "consent", None),
    Case("profiling granted: yes", facts(consents=(consent("profiling", "granted", "02-01"),)),
         "profiling", "consent", None, True, "consent", "ConsentGiven"),
    Case("profiling withdrawn: no", facts(consents=(consent("profiling", "withdrawn", "02-05"),)),
         "profiling", "consent", None, False, "consent", "ConsentWithdrawn"),
    Case("withdrawn then re-granted (latest row granted): yes",
         facts(consents=(consent("analytics", "granted", "03-01"),)),
         "analytics", "consent", None, True, "consent", "ConsentGiven"),
    # newsletter: subscriptions per channel, ConsentGiven, unsubscribes
    Case("newsletter subscribed on email: yes",
         facts(subs=(sub("weekly", "email", "subscribed", "02-01"),)),
         "newsletter", "consent", "email", True, "consent", "NewsletterSubscribed"),
    Case("newsletter subscribed on sms only, asked email: no",
         facts(subs=(sub("weekly", "sms", "subscribed", "02-01"),)),
         "newsletter", "consent", "email", False, "consent", None),
    Case("newsletter: unsubscribe * after opt-in: no",
         facts(subs=(sub("weekly", "email", "subscribed", "02-01"),
                     sub("*", "*", "unsubscribed", "02-10"))),
         "newsletter", "consent", "email", False, "consent", "Unsubscribed"),
    Case("newsletter: opt-in after unsubscribe *: yes",
         facts(subs=(sub("*", "*", "unsubscribed", "02-10"),
                     sub("weekly", "email", "subscribed", "02-20"))),
         "newsletter", "consent", "email", True, "consent", "NewsletterSubscribed"),
    Case("newsletter: same list unsubscribed (row replaced): no",
         facts(subs=(sub("weekly", "email", "unsubscribed", "02-10"),)),
         "newsletter", "consent", "email", False, "consent", "Unsubscribed"),
    Case("newsletter: list * on the channel ends every list there",
         facts(subs=(sub("weekly", "email", "subscribed", "02-01"),
                     sub("*", "email", "unsubscribed", "02-10"))),
         "newsletter", "consent", "email", False, "consent", "Unsubscribed"),
    Case("newsletter: unsubscribe on sms leaves email",
         facts(subs=(sub("weekly", "email", "subscribed", "02-01"),
                     sub("*", "sms", "unsubscribed", "02-10"))),
         "newsletter", "consent", "email", True, "consent", "NewsletterSubscribed"),
    Case("newsletter: ConsentGiven counts on any channel",
         facts(consents=(consent("newsletter", "granted", "02-01"),)),
         "newsletter", "consent", "sms", True, "consent", "ConsentGiven"),
    Case("newsletter: ConsentGiven then unsubscribe *: no",
         facts(consents=(consent("newsletter", "granted", "02-01"),),
               subs=(sub("*", "*", "unsubscribed", "02-10"),)),
         "newsletter", "consent", "email", False, "consent", "Unsubscribed"),
    Case("newsletter: consent withdrawn after the subscription: no",
         facts(subs=(sub("weekly", "email", "subscribed", "02-01"),),
               consents=(consent("newsletter", "withdrawn", "02-10"),)),
         "newsletter", "consent", "email", False, "consent", "ConsentWithdrawn"),
    Case("newsletter: subscription after the withdrawal: yes",
         facts(consents=(consent("newsletter", "withdrawn", "02-10"),),
               subs=(sub("weekly", "email", "subscribed", "02-20"),)),
         "newsletter", "consent", "email", True, "consent", "NewsletterSubscribed"),
    # legitimate interest
    Case("marketing with no opt-out: yes", facts(), "marketing", "legitimate_interest", "email",
         True, "legitimate_interest", "SubjectRegistered"),
    Case("marketing: objection: no",
         facts(consents=(consent("marketing", "objected", "02-01"),)),
         "marketing", "legitimate_interest", "email", False, "legitimate_interest",
         "ObjectionRaised"),
    Case("marketing: objection outlasts a later newsletter subscription",
         facts(consents=(consent("marketing", "objected", "02-01"),),
               subs=(sub("weekly", "email", "subscribed", "02-10"),)),
         "marketing", "legitimate_interest", "email", False, "legitimate_interest",
         "ObjectionRaised"),
    Case("matching: objection: no", facts(consents=(consent("matching", "objected", "02-01"),)),
         "matching", "legitimate_interest", None, False, "legitimate_interest", "ObjectionRaised"),
    Case("matching: objection to marketing does not reach matching",
         facts(consents=(consent("marketing", "objected", "02-01"),)),
         "matching", "legitimate_interest", None, True, "legitimate_interest",
         "SubjectRegistered"),
    Case("marketing: unsubscribe * after opt-in: no",
         facts(subs=(sub("weekly", "email", "subscribed", "02-01"),
                     sub("*", "*", "unsubscribed", "02-10"))),
         "marketing", "legitimate_interest", "email", False, "legitimate_interest",
         "Unsubscribed"),
    Case("marketing: opt-in on the channel after unsubscribe: yes",
         facts(subs=(sub("*", "*", "unsubscribed", "02-10"),
                     sub("weekly", "email", "subscribed", "02-20"))),
         "marketing", "legitimate_interest", "email", True, "legitimate_interest",
         "NewsletterSubscribed"),
    Case("marketing: opt-in on email does not reopen sms",
         facts(subs=(sub("*", "*", "unsubscribed", "02-10"),
                     sub("weekly", "email", "subscribed", "02-20"))),
         "marketing", "legitimate_interest", "sms", False, "legitimate_interest", "Unsubscribed"),
    Case("marketing: unsubscribe on sms leaves email",
         facts(subs=(sub("*", "sms", "unsubscribed", "02-10"),)),
         "marketing", "legitimate_interest", "email", True, "legitimate_interest",
         "SubjectRegistered"),
    Case("marketing: explicit consent after unsubscribe *: yes",
         facts(subs=(sub("*", "*", "unsubscribed", "02-10"),),
               consents=(consent("marketing", "granted", "02-20"),)),
         "marketing", "legitimate_interest", "post", True, "legitimate_interest", "ConsentGiven"),
    Case("marketing, no channel asked: an all-channel unsubscribe blocks",
         facts(subs=(sub("*", "*", "unsubscribed", "02-10"),)),
         "marketing", "legitimate_interest", None, False, "legitimate_interest", "Unsubscribed"),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_permission_rules(case: Case) -> None:
    answer = decide(case.facts, case.purpose, case.basis, case.channel)
    assert (answer.permitted, answer.rule) == (case.permitted, case.rule), answer.reason
    if case.deciding is None:
        assert answer.evidence is None or answer.evidence.type == "SubjectRegistered"
    else:
        assert answer.evidence is not None and answer.evidence.type == case.deciding, answer.reason
        # the reason names the deciding event and its date
        assert answer.evidence.event_id in answer.reason
        assert answer.evidence.describe().split(" on ")[1][:10] in answer.reason


def test_equal_event_times_are_broken_by_log_position() -> None:
    day = parse_timestamp("2026-02-10")
    unsubscribe = SubscriptionFact("*", "*", "unsubscribed", Evidence(day, 5, "u", "Unsubscribed"))
    later = SubscriptionFact("weekly", "email", "subscribed",
                             Evidence(day, 6, "s", "NewsletterSubscribed"))
    earlier = SubscriptionFact("weekly", "email", "subscribed",
                               Evidence(day, 4, "s", "NewsletterSubscribed"))
    assert decide(facts(subs=(unsubscribe, later)), "newsletter", "consent", "email").permitted
    assert not decide(facts(subs=(earlier, unsubscribe)), "newsletter", "consent", "email").permitted


def test_answer_as_dict_is_json_ready() -> None:
    answer = decide(facts(consents=(consent("profiling", "granted", "02-01"),)),
                    "profiling", "consent")
    d = answer.as_dict()
    assert d["permitted"] is True and d["evidence"]["type"] == "ConsentGiven"
    assert d["evidence"]["at"].startswith("2026-02-01T")
