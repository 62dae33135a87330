"""consent-ledger: an event-sourced consent and activity ledger. The Python API: open a
``Ledger``, publish events, ask ``permits``, export a subject's register extract."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ledger.app.outcomes import PublishReport, RecordOutcome
from ledger.app.service import Ledger
from ledger.domain.errors import InvalidEvent, InvalidSubject, LedgerError, UsageError
from ledger.domain.subjects import SubjectSelector

if TYPE_CHECKING:
    from ledger.app.permits import PermitAnswer

__all__ = [
    "InvalidEvent", "InvalidSubject", "Ledger", "LedgerError", "PermitAnswer", "PublishReport",
    "RecordOutcome", "SubjectSelector", "UsageError",
]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    # The read side (DuckDB, Arrow, numpy) loads on first use, so `import ledger` and the CLI
    # start without it.
    if name == "PermitAnswer":
        from ledger.app.permits import PermitAnswer

        return PermitAnswer
    raise AttributeError(f"module 'ledger' has no attribute {name!r}")
