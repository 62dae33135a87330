"""``OpenLedger``: what the application services work on — an opened ledger's adapters and its
few write primitives. ``ledger.app.service.Ledger`` is the one implementation; the services
name this protocol rather than the class, so the facade can offer them (``Ledger.permits``)
without an import cycle."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from ledger.config import LedgerConfig, Settings
from ledger.contracts.codec import AvroCodec
from ledger.contracts.schemas import SchemaRegistry
from ledger.domain.chain import LogRecord
from ledger.domain.clock import Clock
from ledger.domain.events import Event
from ledger.ports import EffectsDone, EventLog, KeyVault

if TYPE_CHECKING:
    from ledger.adapters.dead_letters import DeadLetters
    from ledger.adapters.writer_lock import WriterLock
    from ledger.app.outcomes import RecordOutcome


class OpenLedger(Protocol):
    @property
    def data_dir(self) -> Path: ...

    @property
    def settings(self) -> Settings: ...

    @property
    def config(self) -> LedgerConfig: ...

    @property
    def log(self) -> EventLog: ...

    @property
    def vault(self) -> KeyVault: ...

    @property
    def clock(self) -> Clock: ...

    @property
    def registry(self) -> SchemaRegistry: ...

    @property
    def codec(self) -> AvroCodec: ...

    @property
    def writer_lock(self) -> WriterLock: ...

    @property
    def dead_letters(self) -> DeadLetters: ...

    def events(self, start: int = 1, *, recorded_by: int | None = None
               ) -> Iterator[tuple[LogRecord, Event]]:
        """The log's events from ``start``, decoded."""

    def personal_data(self, event: Event, *, include_sealed: bool = False
                      ) -> dict[str, Any] | None:
        """An event's personal data, decrypted; None if it has none."""

    def subject_id(self, controller: str, *, email: str | None = None,
                   account: str | None = None) -> str:
        """The pseudonym of a natural identifier under the controller's secret."""

    def settle_effects(self) -> EffectsDone:
        """Carries out the key effects of sweep events in the log (record first, then act)."""

    def append_events(self, events: list[Event]) -> list[RecordOutcome]:
        """Appends events the ledger itself built (the retention sweep), durably."""
