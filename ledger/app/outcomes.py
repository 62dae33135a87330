"""What publishing reports: per input line, and per publish call."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from ledger.adapters.dead_letters import Reject


@dataclass
class PublishReport:
    """``rejected`` counts every line not appended for a reason (dead-lettered); of them,
    ``conflicts`` reused an event id already in the log with other content."""

    accepted: int = 0
    duplicates: int = 0
    rejected: int = 0
    rejects: list[Reject] = field(default_factory=list)  # the first few, for display
    last_position: int | None = None
    conflicts: int = 0

    KEEP = 20

    def add(self, other: PublishReport) -> None:
        self.accepted += other.accepted
        self.duplicates += other.duplicates
        self.rejected += other.rejected
        self.conflicts += other.conflicts
        self.rejects.extend(other.rejects[: max(0, self.KEEP - len(self.rejects))])
        self.last_position = other.last_position or self.last_position

    def as_dict(self) -> dict[str, int]:
        return {"accepted": self.accepted, "duplicates": self.duplicates, "rejected": self.rejected,
                "conflicts": self.conflicts}


OutcomeStatus = Literal["accepted", "duplicate", "conflict"]
ItemStatus = Literal["accepted", "duplicate", "conflict", "rejected"]


@dataclass(frozen=True, slots=True)
class RecordOutcome:
    event_id: str
    subject: str
    status: OutcomeStatus
    position: int | None  # the new position; for a conflict, the existing event's


def conflict_reason(position: int) -> str:
    return f"event_id: conflicts with the event at position {position} (same id, different content)"


@dataclass(frozen=True, slots=True)
class ItemResult:
    """What became of one item of a grouped append (the HTTP API's per-event result)."""

    number: int  # 1-based, in the caller's input
    event_id: str | None  # None when the item was rejected before an id was read
    status: ItemStatus
    position: int | None
    reason: str | None = None
