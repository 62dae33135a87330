"""The composition root: settings -> the adapters, chosen in exactly one table.

``BACKENDS`` maps the scheme of ``--log`` / ``LEDGER_LOG`` ('embedded', 'kafka://...') to a
``Backend``: how to open its ``EventLog``, the ``FrameSource`` an auditor reads, and the default
projections file. ``open_vault`` is the one place a ``KeyVault`` adapter is chosen (the ledger
and its publishing workers both open it here). No other module tests a log URL or constructs
an adapter; adapters are imported only when chosen (Kafka needs kafka-python)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ledger.config import LOG_FILE, VAULT_FILE, Settings
from ledger.domain.errors import KafkaLogNeeded, UsageError
from ledger.ports import EventLog, KeyVault

if TYPE_CHECKING:
    from ledger.adapters.kafka_log import KafkaEventLog
    from ledger.ports import FrameSource


@dataclass(frozen=True, slots=True)
class Backend:
    """One kind of event log and what goes with it."""

    scheme: str
    usage: str  # how a log URL names it, for error messages
    partitioned: bool  # one chain per partition (no global positions, digests or count)
    open_log: Callable[[Settings], EventLog]
    open_frames: Callable[[Settings, int], FrameSource]  # (settings, jobs): for the auditor
    projections_file: Callable[[Settings], str]  # the default file name in the data directory


def _embedded_log(settings: Settings) -> EventLog:
    from ledger.adapters.sqlite_log import SQLiteEventLog

    return SQLiteEventLog(settings.data_dir / LOG_FILE)


def _embedded_frames(settings: Settings, jobs: int) -> FrameSource:
    from ledger.adapters.sqlite_scan import SQLiteFrames

    return SQLiteFrames(settings.data_dir / LOG_FILE, jobs)


def _embedded_projections(settings: Settings) -> str:
    from projections.engine.projector import PROJECTIONS_FILE

    return PROJECTIONS_FILE


def _kafka_log(settings: Settings) -> EventLog:
    return open_kafka_log(settings)


def _kafka_frames(settings: Settings, jobs: int) -> FrameSource:
    from ledger.adapters.log_frames import LogFrames

    return LogFrames(_kafka_log(settings))


def _kafka_projections(settings: Settings) -> str:
    from ledger.adapters.kafka_log import KafkaSettings
    from projections.engine.workers import Worker, shard_name

    return shard_name(KafkaSettings.parse(settings.log_url).topic, Worker(0, 1))


BACKENDS: dict[str, Backend] = {
    b.scheme: b
    for b in (
        Backend("embedded", "'embedded'", False, _embedded_log, _embedded_frames, _embedded_projections),
        Backend("kafka", "kafka://host:port/topic", True, _kafka_log, _kafka_frames, _kafka_projections),
    )
}


def scheme_of(log_url: str) -> str:
    return log_url.split("://", 1)[0] if "://" in log_url else log_url


def backend(settings: Settings) -> Backend:
    """The backend the settings name; a one-line UsageError naming the supported ones if none."""
    found = BACKENDS.get(scheme_of(settings.log_url))
    if found is None:
        supported = " or ".join(b.usage for b in BACKENDS.values())
        raise UsageError(f"unsupported log {settings.log_url!r} (use {supported})", parameter="log")
    return found


def open_log(settings: Settings) -> EventLog:
    return backend(settings).open_log(settings)


def open_frames(settings: Settings, jobs: int = 1) -> FrameSource:
    """How the auditor reads the log: needs no master key and no key vault."""
    return backend(settings).open_frames(settings, jobs)


def projections_file(settings: Settings) -> str:
    return backend(settings).projections_file(settings)


def open_kafka_log(settings: Settings) -> KafkaEventLog:
    """The Kafka log for the `ledger kafka` commands (which need no data directory)."""
    if scheme_of(settings.log_url) != "kafka":
        raise KafkaLogNeeded()
    from ledger.adapters.kafka_log import KafkaEventLog

    return KafkaEventLog.from_settings(settings)


def open_vault(settings: Settings, master_key: bytes) -> KeyVault:
    """The key vault adapter (the one there is: SQLite in the data directory)."""
    from ledger.adapters.sqlite_vault import SQLiteKeyVault

    return SQLiteKeyVault(settings.data_dir / VAULT_FILE, master_key)
