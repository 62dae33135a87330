"""The ledger event: an envelope and a typed body (SPEC §3). Pure domain, no I/O."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ledger.domain.timeutil import format_micros

# The envelope's fields, as the Avro record nests them (body fields are flat beside it).
ENVELOPE_FIELDS = ("event_id", "controller", "subject", "occurred_at", "recorded_at", "source",
                   "actor", "pii")


@dataclass(frozen=True, slots=True)
class Event:
    """One event as stored in the log. Subjects are pseudonyms; personal data is only in the
    encrypted ``pii`` blob. Times are UTC microseconds since the Unix epoch."""

    type: str
    event_id: str
    controller: str
    subject: str
    occurred_at: int
    recorded_at: int
    source: str
    actor: str
    body: dict[str, Any] = field(default_factory=dict)
    pii: bytes | None = None

    def to_record(self) -> dict[str, Any]:
        """The Avro record (envelope nested, body fields flat)."""
        record = dict(self.body)
        record["envelope"] = {
            "event_id": self.event_id,
            "controller": self.controller,
            "subject": self.subject,
            "occurred_at": self.occurred_at,
            "recorded_at": self.recorded_at,
            "source": self.source,
            "actor": self.actor,
            "pii": self.pii,
        }
        return record

    @classmethod
    def from_record(cls, event_type: str, record: dict[str, Any]) -> Event:
        env = record.pop("envelope")
        return cls(
            type=event_type,
            event_id=env["event_id"],
            controller=env["controller"],
            subject=env["subject"],
            occurred_at=env["occurred_at"],
            recorded_at=env["recorded_at"],
            source=env["source"],
            actor=env["actor"],
            body=record,
            pii=env["pii"],
        )

    def describe(self) -> dict[str, Any]:
        """A JSON-friendly view without the encrypted blob (for listings and dead letters)."""
        return {
            "type": self.type,
            "event_id": self.event_id,
            "controller": self.controller,
            "subject": self.subject,
            "occurred_at": format_micros(self.occurred_at),
            "recorded_at": format_micros(self.recorded_at),
            "source": self.source,
            "actor": self.actor,
            **self.body,
            "has_pii": self.pii is not None,
        }
