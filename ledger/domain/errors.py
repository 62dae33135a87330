"""Errors by layer. Everything the ledger raises on purpose derives from LedgerError, so the
CLI can print one clear line and the Python API can catch one base class."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

# An input of the call named inside a message, by its Python name: "give {controller} too".
MENTION = re.compile(r"\{([a-z][a-z_]*)\}")


class LedgerError(Exception):
    """Base class of every error the ledger raises on purpose. A message may name another
    input of the call as ``{name}``: ``str(e)`` shows the Python name, the CLI its flag."""

    exit_code = 1

    def __str__(self) -> str:
        return self.in_words(lambda name: name)

    def in_words(self, name_of: Callable[[str], str]) -> str:
        """The message with each ``{name}`` it mentions spelled by ``name_of``."""
        return MENTION.sub(lambda m: name_of(m.group(1)), super().__str__())

    def __reduce__(self) -> tuple[Any, ...]:
        # Errors cross process boundaries (publishing workers): rebuild them from their state,
        # not by calling __init__ with the message (subclasses take other arguments).
        return _restore, (type(self), self.args, self.__dict__)


def _restore(cls: type[LedgerError], args: tuple[Any, ...], state: dict[str, Any]) -> LedgerError:
    error = cls.__new__(cls)
    error.args = args
    error.__dict__.update(state)
    return error


class UsageError(LedgerError):
    """The caller asked for something that cannot be done as asked (exit code 2).

    ``parameter`` is the domain name of the input the error is about (``log``, ``worker``,
    ``into``), as the Python API names it; ``value`` the offending value when the message
    quotes it up front. ``str(e)`` reads "parameter: reason" (or "parameter 'value': reason");
    the CLI prints its flag in place of the parameter. ``reason`` never names a CLI flag."""

    exit_code = 2

    def __init__(self, reason: str, *, parameter: str | None = None,
                 value: str | None = None) -> None:
        self.reason = reason
        self.parameter = parameter
        self.value = value
        super().__init__(self.about(parameter) + reason if parameter else reason)

    def about(self, name: str) -> str:
        """The message's lead naming the input: "log: " or "log 'kafka://x': "."""
        return f"{name} {self.value!r}: " if self.value is not None else f"{name}: "


class UnknownController(UsageError):
    """A controller the ledger's configuration does not know. The message speaks of the
    controller, not of how it was given (the CLI adds its ``--controller`` flag)."""

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(f"unknown controller {name[:40]!r}")


class ConfigError(UsageError):
    """The data directory, its configuration or a setting is missing or wrong."""


class PolicyUnavailable(ConfigError):
    """A configured controller's policy cannot be loaded (``ledger.toml`` edited by hand, a
    policy file moved or broken): the message names the controller, its policy and why."""

    def __init__(self, controller: str, policy: str, reason: str) -> None:
        self.controller = controller
        self.policy = policy
        self.cause = reason
        super().__init__(
            f"controller {controller!r}: its policy {policy[:200]!r} cannot be loaded "
            f"({reason}); set a valid one (set-policy), or give {{controller}} to work on "
            "another controller")


class TargetExists(UsageError):
    """An output file exists and the caller did not ask to replace it (``force``)."""

    def __init__(self, target: Path, parameter: str) -> None:
        self.target = target
        super().__init__(f"{target} exists (pass force=True to replace it)", parameter=parameter)


class NoLedger(ConfigError):
    """The data directory holds no ledger (it was never initialised)."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        super().__init__(f"no ledger in {data_dir}: create it first (Ledger.init)",
                         parameter="data_dir")


class NoEventLog(ConfigError):
    """The data directory an auditor was given holds no event log."""

    def __init__(self, path: Path) -> None:
        self.path = path
        super().__init__(f"no event log at {path}: is it the ledger's data directory?",
                         parameter="data_dir")


class KafkaLogNeeded(UsageError):
    """An operation on Kafka topics was asked of a ledger whose log is not on Kafka."""

    def __init__(self) -> None:
        super().__init__("needs a Kafka log, kafka://host:port/topic (or LEDGER_LOG)",
                         parameter="log")


# What is wrong with a SubjectSelector: no one named, a pseudonym and a natural identifier,
# a natural identifier without its controller, both an e-mail address and an account id, or a
# value that is not a non-empty string.
SubjectProblem = Literal["none", "both", "no-controller", "email-and-account", "malformed"]


class InvalidSubject(UsageError):
    """A subject selector that names no one, or names someone twice (``SubjectSelector``).
    ``problem`` says which: the CLI words each with its own flags."""

    def __init__(self, reason: str, problem: SubjectProblem) -> None:
        self.problem = problem
        super().__init__(reason)


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
