"""Retention policies (SPEC §5): TOML files, validated on load, each with a content hash that
decisions and sweep events record. ``coegi`` and ``cowrite`` ship with the package and encode
the seed privacy policies (SPEC §2). Pure apart from reading the file."""

from __future__ import annotations

import calendar
import hashlib
import json
import os
import re
import stat
import tomllib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any

from ledger.domain.errors import ConfigError
from ledger.domain.timeutil import MICROS, from_micros, to_micros
from ledger.domain.vocabulary import ACTIVITY_TYPES, EVENT_TYPES, KEY_CATEGORIES

BASES = ("consent", "contract", "legal_obligation", "legitimate_interest")
ERASURE_ACTIONS = ("pseudonymise", "erase")
COUNTED_FROM = ("end_of_calendar_year", "event")
_DURATION = re.compile(r"P(?:(\d+)Y)?(?:(\d+)M)?(?:(\d+)W)?(?:(\d+)D)?")
_DAY = 86_400 * MICROS


@dataclass(frozen=True, slots=True)
class Duration:
    """An ISO-8601 calendar duration (years, months, days): months and years are added on the
    calendar (31 Jan + P1M = 28/29 Feb), days exactly."""

    years: int = 0
    months: int = 0
    days: int = 0

    @classmethod
    def parse(cls, text: str) -> Duration:
        m = _DURATION.fullmatch(text) if isinstance(text, str) else None
        if not m or text == "P":
            raise ValueError("expected an ISO-8601 duration such as P3Y, P6M, P14D or P60D")
        years, months, weeks, days = (int(g) if g else 0 for g in m.groups())
        return cls(years, months, weeks * 7 + days)

    def add(self, micros: int, sign: int = 1) -> int:
        dt = from_micros(micros)
        month_index = dt.year * 12 + (dt.month - 1) + sign * (self.years * 12 + self.months)
        year, month = divmod(month_index, 12)
        day = min(dt.day, calendar.monthrange(year, month + 1)[1])
        shifted = dt.replace(year=year, month=month + 1, day=day)
        return to_micros(shifted) + sign * self.days * _DAY

    def subtract(self, micros: int) -> int:
        return self.add(micros, -1)

    def times(self, n: int) -> Duration:
        return Duration(self.years * n, self.months * n, self.days * n)

    def __str__(self) -> str:
        parts = [f"{n}{u}" for n, u in ((self.years, "Y"), (self.months, "M"), (self.days, "D")) if n]
        return "P" + ("".join(parts) or "0D")


DEFAULT_DEAD_LETTER_RETENTION = Duration(days=30)
DEFAULT_NOTICE_RETRIES = 3
DEFAULT_NOTICE_RETRY_EVERY = Duration(days=1)
MAX_NOTICE_RETRIES = 100


@dataclass(frozen=True, slots=True)
class LegalHold:
    name: str
    categories: tuple[str, ...]
    keep_for: Duration
    counted_from: str  # end_of_calendar_year | event

    def ends_at(self, event_time: int) -> int:
        """When the hold on data from an event at ``event_time`` ends."""
        start = event_time
        if self.counted_from == "end_of_calendar_year":
            year = from_micros(event_time).year
            start = to_micros(datetime(year + 1, 1, 1, tzinfo=UTC))
        return self.keep_for.add(start)


# The rules a policy's clauses may quote (legal holds as "legal_holds.<name>").
CLAUSE_RULES = ("inactivity", "notice", "no_relationship", "erasure_request", "review", "access")
# The rule whose clause each outbox message quotes ("access": the right to a register extract).
MESSAGE_CLAUSES = {"deletion_notice": "notice", "erasure_done": "erasure_request",
                   "extract_ready": "access"}
MAX_CLAUSE_CHARS = 2000


@dataclass(frozen=True, slots=True)
class Clause:
    """The privacy policy's own words for one rule (Swedish for the shipped policies), and
    where they come from: quoted in reports, never interpreted."""

    text: str
    source: str


@dataclass(frozen=True, slots=True)
class Policy:
    name: str
    description: str
    activity: frozenset[str]
    inactive_after: Duration
    notice_before: Duration | None
    keep_without_relationship: bool
    review_every: Duration | None
    erasure_action: str  # pseudonymise | erase
    pseudonymise_for: Duration | None
    legal_holds: tuple[LegalHold, ...]
    purposes: dict[str, str] = field(default_factory=dict)
    content_hash: str = ""
    source: str = ""
    # How long rejected input (dead letters) is kept before the sweep destroys it.
    dead_letter_retention: Duration = DEFAULT_DEAD_LETTER_RETENTION
    # A deletion notice the mailer reports failed is retried this many times, this far apart;
    # after the last failed retry it finally fails and the notice period counts from then.
    notice_retries: int = DEFAULT_NOTICE_RETRIES
    notice_retry_every: Duration = DEFAULT_NOTICE_RETRY_EVERY
    # rule -> clause ("inactivity", ..., "legal_holds.bookkeeping"); wording, not rules, so not
    # part of content_hash (a policy's hash stays the one its sweep events recorded).
    clauses: dict[str, Clause] = field(default_factory=dict)
    file_sha256: str = ""  # SHA-256 of the file's bytes (comments and clauses included)

    def clause(self, kind: str) -> str | None:
        """The text an outbox message of ``kind`` quotes: the clause of the rule it carries out."""
        quoted = self.clauses.get(MESSAGE_CLAUSES.get(kind, ""))
        return quoted.text if quoted else None

    def basis(self, purpose: str) -> str | None:
        return self.purposes.get(purpose)

    def held_categories(self) -> frozenset[str]:
        return frozenset(c for h in self.legal_holds for c in h.categories)


def _get(raw: dict[str, Any], key: str, kind: type, where: str, default: Any = ...) -> Any:
    if key not in raw:
        if default is ...:
            raise ConfigError(f"{where}: {key}: missing")
        return default
    value = raw[key]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ConfigError(f"{where}: {key}: expected {kind.__name__}, got {type(value).__name__}")
    return value


def _duration(raw: dict[str, Any], key: str, where: str, required: bool = True) -> Duration | None:
    text = _get(raw, key, str, where, ... if required else None)
    if text is None:
        return None
    try:
        return Duration.parse(text)
    except ValueError as e:
        raise ConfigError(f"{where}: {key}: {e}") from None


def parse_policy(text: str, source: str) -> Policy:
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{source}: not valid TOML: {e}") from None
    known = {"name", "description", "activity", "inactive_after", "notice_before",
             "keep_without_relationship", "review_every", "erasure_request", "legal_holds",
             "purposes", "dead_letter_retention", "notice_retries", "notice_retry_every",
             "clauses"}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ConfigError(f"{source}: {unknown[0]}: unknown key")
    name = _get(raw, "name", str, source)
    activity = _get(raw, "activity", list, source, sorted(ACTIVITY_TYPES))
    for t in activity:
        if t not in EVENT_TYPES:
            raise ConfigError(f"{source}: activity: unknown event type {str(t)[:40]!r}")
    erasure = _get(raw, "erasure_request", dict, source, {"action": "erase"})
    action = _get(erasure, "action", str, f"{source}: erasure_request")
    if action not in ERASURE_ACTIONS:
        raise ConfigError(f"{source}: erasure_request.action: must be one of {', '.join(ERASURE_ACTIONS)}")
    pseudonymise_for = _duration(erasure, "pseudonymise_for", f"{source}: erasure_request",
                                 required=action == "pseudonymise")
    holds = []
    for hold_name, hold in _get(raw, "legal_holds", dict, source, {}).items():
        where = f"{source}: legal_holds.{hold_name}"
        if not isinstance(hold, dict):
            raise ConfigError(f"{where}: expected a table")
        categories = tuple(_get(hold, "categories", list, where))
        for c in categories:
            if c not in KEY_CATEGORIES:
                raise ConfigError(f"{where}: categories: unknown key category {str(c)[:40]!r}")
        counted_from = _get(hold, "counted_from", str, where, "end_of_calendar_year")
        if counted_from not in COUNTED_FROM:
            raise ConfigError(f"{where}: counted_from: must be one of {', '.join(COUNTED_FROM)}")
        keep_for = _duration(hold, "keep_for", where)
        assert keep_for is not None
        holds.append(LegalHold(hold_name, categories, keep_for, counted_from))
    purposes = _get(raw, "purposes", dict, source, {})
    for purpose, basis in purposes.items():
        if basis not in BASES:
            raise ConfigError(f"{source}: purposes.{purpose}: must be one of {', '.join(BASES)}")
    inactive_after = _duration(raw, "inactive_after", source)
    assert inactive_after is not None
    retries = _get(raw, "notice_retries", int, source, DEFAULT_NOTICE_RETRIES)
    if not 0 <= retries <= MAX_NOTICE_RETRIES:
        raise ConfigError(f"{source}: notice_retries: must be 0 to {MAX_NOTICE_RETRIES}")
    retry_every = _duration(raw, "notice_retry_every", source, required=False)
    if retry_every is not None and retry_every == Duration():
        raise ConfigError(f"{source}: notice_retry_every: must be longer than nothing")
    clauses = _clauses(_get(raw, "clauses", dict, source, {}), {h.name for h in holds}, source)
    # The hash names what decides; the clauses are only wording quoted to people, so editing
    # them keeps every recorded decision's policy hash valid.
    ruled = {k: v for k, v in raw.items() if k != "clauses"}
    canonical = json.dumps(ruled, sort_keys=True, ensure_ascii=False, default=str)
    return Policy(
        name=name,
        description=_get(raw, "description", str, source, ""),
        activity=frozenset(activity),
        inactive_after=inactive_after,
        notice_before=_duration(raw, "notice_before", source, required=False),
        keep_without_relationship=_get(raw, "keep_without_relationship", bool, source, True),
        review_every=_duration(raw, "review_every", source, required=False),
        erasure_action=action,
        pseudonymise_for=pseudonymise_for,
        legal_holds=tuple(holds),
        purposes=dict(purposes),
        content_hash=hashlib.sha256(canonical.encode()).hexdigest(),
        source=source,
        dead_letter_retention=_duration(raw, "dead_letter_retention", source, required=False)
        or DEFAULT_DEAD_LETTER_RETENTION,
        notice_retries=retries,
        notice_retry_every=retry_every or DEFAULT_NOTICE_RETRY_EVERY,
        clauses=clauses,
        file_sha256=hashlib.sha256(text.encode("utf-8")).hexdigest(),
    )


def _clauses(raw: dict[str, Any], holds: set[str], source: str) -> dict[str, Clause]:
    """``[clauses]``: rule = { text = "...", source = "..." }; legal holds as a sub-table."""
    out: dict[str, Clause] = {}
    flat: dict[str, Any] = {k: v for k, v in raw.items() if k != "legal_holds"}
    for name, value in _get(raw, "legal_holds", dict, f"{source}: clauses", {}).items():
        if name not in holds:
            raise ConfigError(f"{source}: clauses.legal_holds.{str(name)[:40]}: no such legal hold")
        flat[f"legal_holds.{name}"] = value
    for rule, value in flat.items():
        where = f"{source}: clauses.{str(rule)[:60]}"
        if rule not in CLAUSE_RULES and not rule.startswith("legal_holds."):
            raise ConfigError(f"{where}: unknown rule (one of {', '.join(CLAUSE_RULES)}, legal_holds.NAME)")
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a table with text and source")
        text = _get(value, "text", str, where)
        origin = _get(value, "source", str, where, "")
        if not text.strip() or len(text) > MAX_CLAUSE_CHARS or len(origin) > 200:
            raise ConfigError(f"{where}: text must be 1 to {MAX_CLAUSE_CHARS} characters, source at most 200")
        out[rule] = Clause(text.strip(), origin)
    return out


def builtin_policies() -> list[str]:
    return sorted(p.name[:-5] for p in resources.files("ledger.domain.retention.policies").iterdir()
                  if p.name.endswith(".toml"))


MAX_POLICY_BYTES = 1 << 20  # a policy is a page of TOML; anything larger is not one


def is_shipped(name: str) -> bool:
    return name in builtin_policies()


def load_policy(name_or_path: str) -> Policy:
    """A shipped policy by name (``coegi``, ``cowrite``) or any TOML file by path. A shipped
    name wins over a file of the same name in the working directory."""
    if is_shipped(name_or_path):
        text = resources.files("ledger.domain.retention.policies").joinpath(
            f"{name_or_path}.toml").read_text("utf-8")
        return parse_policy(text, name_or_path)
    path = Path(name_or_path)
    if path.suffix == ".toml" or path.exists():
        return parse_policy(_read_policy_file(path), str(path))
    raise ConfigError(f"unknown policy {name_or_path[:40]!r} (shipped: "
                      f"{', '.join(builtin_policies())}; or give a .toml path)")


def _read_policy_file(path: Path) -> str:
    """The text of a policy file: a regular file of at most MAX_POLICY_BYTES of UTF-8."""
    shown = repr(str(path))
    try:
        with open(path, "rb") as f:
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                raise ConfigError(f"cannot read policy {shown}: not a regular file")
            data = f.read(MAX_POLICY_BYTES + 1)
    except IsADirectoryError:
        raise ConfigError(f"cannot read policy {shown}: it is a directory") from None
    except OSError as e:
        raise ConfigError(f"cannot read policy {shown}: {e.strerror or e}") from None
    if len(data) > MAX_POLICY_BYTES:
        raise ConfigError(f"policy {shown} is larger than {MAX_POLICY_BYTES // 1024} KiB: "
                          "not a policy file")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"policy {shown} is not UTF-8 text: not a policy file") from None


_UNSAFE = re.compile(r"[\x00-\x1f\x7f]")


def policy_setting(name_or_path: str) -> tuple[str, Policy]:
    """What ``ledger.toml`` records for a policy an operator names, and the policy, loaded and
    validated: a shipped name as it is; a path made absolute (against the working directory,
    so every later command finds the same file). Raises ConfigError if it cannot be used."""
    if is_shipped(name_or_path):
        return name_or_path, load_policy(name_or_path)
    if not name_or_path or _UNSAFE.search(name_or_path):
        raise ConfigError(f"policy {name_or_path[:40]!r}: not a policy name or a file path")
    try:
        name_or_path.encode("utf-8")
    except UnicodeEncodeError:
        raise ConfigError(f"policy {name_or_path[:40]!r}: the path is not UTF-8") from None
    path = Path(name_or_path)
    if path.suffix != ".toml" and not path.exists():
        load_policy(name_or_path)  # raises: unknown policy
    setting = os.path.abspath(path)
    return setting, load_policy(setting)
