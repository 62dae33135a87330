"""consent-ledger: an event-sourced consent and activity ledger (write side)."""

from __future__ import annotations

from ledger.app.outcomes import PublishReport, RecordOutcome
from ledger.app.permits import PermitAnswer
from ledger.app.service import Ledger
from ledger.domain.errors import InvalidEvent, InvalidSubject, LedgerError, UsageError
from ledger.domain.subjects import SubjectSelector

__all__ = [
    "InvalidEvent", "InvalidSubject", "Ledger", "LedgerError", "PermitAnswer", "PublishReport",
    "RecordOutcome", "SubjectSelector", "UsageError",
]
__version__ = "0.1.0"
