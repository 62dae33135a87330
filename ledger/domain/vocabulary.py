"""The privacy-domain vocabulary: event types and the values their fields may take.

Pure data, no I/O. The Avro schemas in ``schemas/`` fix the field *types*; this module fixes
the *meanings* (which values are allowed, which events count as activity, which key category
an event's personal data is encrypted under).
"""

from __future__ import annotations

from typing import Final

EVENT_TYPES: Final = (
    "SubjectRegistered",
    "PersonalDataUpdated",
    "NewsletterSubscribed",
    "Unsubscribed",
    "ConsentGiven",
    "ConsentWithdrawn",
    "ObjectionRaised",
    "LoggedIn",
    "ServiceUsed",
    "InvoiceUsageRecorded",
    "DataShared",
    "RightsRequested",
    "RightsRequestClosed",
    "DeletionNoticeSent",
    "SubjectPseudonymised",
    "SubjectErased",
    "RetentionReviewed",
    "NoticeDelivered",
    "NoticeFailed",
    "NoticePublished",
)

# Event types that count as activity of the person (SPEC §3); a policy may narrow this.
ACTIVITY_TYPES: Final = frozenset(
    {
        "SubjectRegistered",
        "NewsletterSubscribed",
        "ConsentGiven",
        "LoggedIn",
        "ServiceUsed",
        "InvoiceUsageRecorded",
    }
)

# A new relationship (SPEC §5). Erasure ends a relationship for good, but the person may come
# back: after a SubjectErased, the first of these events (in event time) starts a new
# relationship with them - they signed up, subscribed or consented again, i.e. gave the
# controller their data and a reason to hold it anew. The subject is then `active` again under
# a new key generation, and everything of the earlier relationship (consents, subscriptions,
# activity clocks, registrations, erasure requests, personal data) no longer counts: a consent
# given before the erasure never grants anything in the new relationship. Any other event on
# an erased subject (a login, usage, an invoice, a profile update) cannot revive it - those
# need an existing account - so the subject stays `erased`. A pseudonymised subject (an
# erasure under way, SPEC §5) is not revived either: SPEC §5 defines a new relationship only
# after an erasure.
RELATIONSHIP_STARTS: Final = frozenset({"SubjectRegistered", "NewsletterSubscribed", "ConsentGiven"})

# The outbox's reports of what the mailer did with a message owed to the person: recorded by
# the ledger itself (``ledger.app.outbox``), which checks them against the message.
OUTBOX_TYPES: Final = frozenset({"NoticeDelivered", "NoticeFailed"})

# Recorded by the ledger only (the retention sweep and the outbox); upstream producers may not
# publish them.
SWEEP_TYPES: Final = frozenset(
    {"DeletionNoticeSent", "SubjectPseudonymised", "SubjectErased", "RetentionReviewed"}
) | OUTBOX_TYPES

# The kinds of message the outbox holds (its message_id is the event id that owed it).
OUTBOX_KINDS: Final = ("deletion_notice", "erasure_done", "extract_ready")

# Written by `ledger notice publish` (ledger/app/notices.py), which computes the text's hash:
# producers may not publish them as events.
NOTICE_TYPES: Final = frozenset({"NoticePublished"})

# Key categories (SPEC §6). Personal data of bookkeeping events is encrypted under the
# bookkeeping key so that it can outlive the profile key under the legal hold.
KEY_CATEGORIES: Final = ("profile", "bookkeeping")
BOOKKEEPING_TYPES: Final = frozenset({"InvoiceUsageRecorded"})


def key_category(event_type: str) -> str:
    return "bookkeeping" if event_type in BOOKKEEPING_TYPES else "profile"


RELATIONS: Final = frozenset(
    {
        "customer_contact",
        "supplier_contact",
        "partner_contact",
        "consultant",
        "job_seeker",
        "student",
        "user",
    }
)
MARKETING_CHANNELS: Final = frozenset({"email", "sms", "app", "post"})
CONSENT_CHANNELS: Final = frozenset({"web", "app", "email", "sms", "post", "phone", "in_person"})
VIAS: Final = frozenset({"link", "settings", "support", "email", "phone", "post", "in_person"})
UPDATE_ORIGINS: Final = frozenset({"self", "staff", "register:SPAR", "register:Bolagsverket"})
RECIPIENT_KINDS: Final = frozenset({"group_company", "processor", "partner", "coach", "customer"})
LEGAL_BASES: Final = frozenset({"consent", "contract", "legal_obligation", "legitimate_interest"})
RIGHTS: Final = frozenset(
    {"access", "rectification", "erasure", "restriction", "portability", "objection"}
)
REQUEST_OUTCOMES: Final = frozenset({"fulfilled", "partially_fulfilled", "refused", "withdrawn"})

# Purposes policies and permits() use (SPEC §3); a policy may add more.
PURPOSES: Final = frozenset(
    {
        "service",
        "invoicing",
        "matching",
        "marketing",
        "newsletter",
        "profiling",
        "analytics",
        "coach_sharing",
    }
)

ALL: Final = "*"  # "every list" / "every channel" in an unsubscribe

# Field vocabularies checked on intake: (event type, field) -> allowed values.
FIELD_VOCABULARIES: Final[dict[tuple[str, str], frozenset[str]]] = {
    ("SubjectRegistered", "relation"): RELATIONS,
    ("PersonalDataUpdated", "origin"): UPDATE_ORIGINS,
    ("NewsletterSubscribed", "channel"): MARKETING_CHANNELS,
    ("Unsubscribed", "channel"): MARKETING_CHANNELS | {ALL},
    ("Unsubscribed", "via"): VIAS,
    ("ConsentGiven", "channel"): CONSENT_CHANNELS,
    ("ConsentWithdrawn", "via"): VIAS,
    ("ObjectionRaised", "via"): VIAS,
    ("DataShared", "recipient_kind"): RECIPIENT_KINDS,
    ("DataShared", "basis"): LEGAL_BASES,
    ("RightsRequested", "right"): RIGHTS,
    ("RightsRequestClosed", "outcome"): REQUEST_OUTCOMES,
}
