"""Errors by layer. Everything the ledger raises on purpose derives from LedgerError, so the
CLI can print one clear line and the Python API can catch one base class."""

from __future__ import annotations


class LedgerError(Exception):
    """Base class of every error the ledger raises on purpose."""

    exit_code = 1


class UsageError(LedgerError):
    """The caller asked for something that cannot be done as asked (exit code 2)."""

    exit_code = 2


class UnknownController(UsageError):
    """A controller the ledger's configuration does not know. The message speaks of the
    controller, not of how it was given (the CLI adds its ``--controller`` flag)."""

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(f"unknown controller {name[:40]!r}")


class ConfigError(UsageError):
    """The data directory, its configuration or a setting is missing or wrong."""


class InvalidEvent(LedgerError):
    """A producer event was rejected; the message names the field and the problem."""

    def __init__(self, reason: str, field: str | None = None) -> None:
        self.reason = reason
        self.field = field
        super().__init__(f"{field}: {reason}" if field else reason)


class CodecError(LedgerError):
    """Bytes that are not a valid ledger event (bad header, unknown schema, corrupt body)."""


class ClockError(LedgerError):
    """The ledger clock is behind the log: recorded_at may never decrease."""

    exit_code = 2


class KeyUnavailable(LedgerError):
    """A subject's data key was shredded (erased) or sealed (pseudonymised)."""


class LogError(LedgerError):
    """The event log could not be read or written."""


class CorruptFile(ConfigError):
    """A file is damaged or is not what its name says (exit 2): the message names the file
    and what to do (restore it from a backup, or rebuild it when it is derived)."""


class StorageError(UsageError):
    """A write failed for want of space or an I/O error (exit 2); the transaction it was part
    of was rolled back."""
