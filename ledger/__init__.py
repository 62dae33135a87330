"""consent-ledger: an event-sourced consent and activity ledger (write side)."""

from __future__ import annotations

from ledger.errors import InvalidEvent, LedgerError
from ledger.service import Ledger, PublishReport, RecordOutcome

__all__ = ["InvalidEvent", "Ledger", "LedgerError", "PublishReport", "RecordOutcome"]
__version__ = "0.1.0"
