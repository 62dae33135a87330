"""The service layer: the ``Ledger`` that the CLI and upstream Python apps both use.

Publishing runs in chunks: validate (intake) -> pseudonymise -> fetch or create the subjects'
data keys -> encrypt personal data -> Avro-encode -> one durable, atomic log append per chunk.
A rejected event never stops the rest; it goes to the dead letters with its reason."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ledger import config as cfg
from ledger.clock import Clock, FixedClock, SystemClock
from ledger.codec import AvroCodec
from ledger.dead_letters import DeadLetters, Reject
from ledger.errors import CodecError, InvalidEvent, KeyUnavailable, UsageError
from ledger.events import Event
from ledger.intake import Draft, Intake
from ledger.log import EventLog, LogRecord, PendingRecord
from ledger.pseudonyms import pseudonym
from ledger.schemas import SchemaRegistry, default_registry
from ledger.timeutil import parse_cli_time
from ledger.vault import KeyVault, SQLiteKeyVault, blob_header, seal, unseal
from ledger.vocabulary import key_category

CHUNK = 2000
Progress = Callable[[int], None]


@dataclass
class PublishReport:
    accepted: int = 0
    duplicates: int = 0
    rejected: int = 0
    rejects: list[Reject] = field(default_factory=list)  # the first few, for display
    last_position: int | None = None

    KEEP = 20

    def add(self, other: PublishReport) -> None:
        self.accepted += other.accepted
        self.duplicates += other.duplicates
        self.rejected += other.rejected
        self.rejects.extend(other.rejects[: max(0, self.KEEP - len(self.rejects))])
        self.last_position = other.last_position or self.last_position

    def as_dict(self) -> dict[str, int]:
        return {"accepted": self.accepted, "duplicates": self.duplicates, "rejected": self.rejected}


@dataclass(frozen=True, slots=True)
class RecordOutcome:
    event_id: str
    subject: str
    status: str  # accepted | duplicate
    position: int | None


def controller_secret_name(controller: str) -> str:
    return f"controller/{controller}"


def open_log(settings: cfg.Settings) -> EventLog:
    """Chooses the log adapter from the settings (``--log`` / ``LEDGER_LOG``)."""
    url = settings.log_url
    scheme = url.split("://", 1)[0] if "://" in url else url
    factory = LOG_BACKENDS.get(scheme)
    if factory is None:
        raise UsageError(f"--log: unsupported log {url!r} (use 'embedded')")
    return factory(settings)


def _embedded(settings: cfg.Settings) -> EventLog:
    from ledger.sqlite_log import SQLiteEventLog

    return SQLiteEventLog(settings.data_dir / cfg.LOG_FILE)


LOG_BACKENDS: dict[str, Callable[[cfg.Settings], EventLog]] = {"embedded": _embedded}


class Ledger:
    def __init__(
        self,
        data_dir: Path,
        config: cfg.LedgerConfig,
        log: EventLog,
        vault: KeyVault,
        clock: Clock,
        registry: SchemaRegistry | None = None,
    ) -> None:
        self.data_dir = data_dir
        self.config = config
        self.log = log
        self.vault = vault
        self.clock = clock
        self.registry = registry or default_registry()
        self.codec = AvroCodec(self.registry)
        self.intake = Intake(self.registry, config.controllers)
        self._secrets = {c: vault.secret(controller_secret_name(c)) for c in config.controllers}
        self.dead_letters = DeadLetters(
            data_dir / cfg.DEAD_LETTERS_FILE, vault.secret("dead-letters", create=True)
        )

    # opening ------------------------------------------------------------------------------
    @classmethod
    def open(
        cls,
        data_dir: str | Path | None = None,
        *,
        log: str | None = None,
        now: str | None = None,
    ) -> Ledger:
        """Opens the ledger from the same settings as the CLI (arguments, else environment)."""
        return cls.from_settings(cfg.Settings.from_env(data_dir, log, now))

    @classmethod
    def from_settings(cls, settings: cfg.Settings) -> Ledger:
        config = cfg.load_config(settings.data_dir)
        vault = SQLiteKeyVault(settings.data_dir / cfg.VAULT_FILE, cfg.master_key(settings.data_dir))
        clock: Clock = (
            FixedClock(parse_cli_time(settings.now, "--now")) if settings.now else SystemClock()
        )
        return cls(settings.data_dir, config, open_log(settings), vault, clock)

    @staticmethod
    def init(
        data_dir: str | Path, controllers: Iterable[str] = cfg.DEFAULT_CONTROLLERS
    ) -> tuple[Path, bool]:
        """Creates the data directory (idempotent). Returns (dir, created)."""
        path = Path(data_dir)
        if (path / cfg.CONFIG_FILE).exists():
            return path, False
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
        key = cfg.master_key(path, create=True)
        vault = SQLiteKeyVault(path / cfg.VAULT_FILE, key)
        try:
            names = [cfg.check_controller_name(c) for c in controllers]
            for name in names:
                vault.secret(controller_secret_name(name), create=True)
            vault.secret("dead-letters", create=True)
        finally:
            vault.close()
        cfg.write_config(
            path, cfg.LedgerConfig({n: cfg.ControllerConfig(n, n) for n in names})
        )
        return path, True

    def add_controller(self, name: str, policy: str | None = None) -> bool:
        """Adds a controller with a fresh pseudonym secret; False if it already exists."""
        cfg.check_controller_name(name)
        if name in self.config.controllers:
            return False
        self._secrets[name] = self.vault.secret(controller_secret_name(name), create=True)
        controllers = dict(self.config.controllers)
        controllers[name] = cfg.ControllerConfig(name, policy or name)
        self.config = cfg.LedgerConfig(controllers)
        cfg.write_config(self.data_dir, self.config)
        self.intake = Intake(self.registry, self.config.controllers)
        return True

    def close(self) -> None:
        self.log.close()
        self.vault.close()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # pseudonyms ---------------------------------------------------------------------------
    def subject_id(self, controller: str, *, email: str | None = None, account: str | None = None) -> str:
        if controller not in self._secrets:
            raise UsageError(f"unknown controller {controller[:40]!r}")
        if (email is None) == (account is None):
            raise UsageError("give exactly one of an e-mail address or an account id")
        kind, value = ("email", email) if email is not None else ("account", account)
        assert value is not None
        return pseudonym(self._secrets[controller], kind, value)

    # publishing ---------------------------------------------------------------------------
    def record(self, event: Mapping[str, Any] | Event) -> RecordOutcome:
        """Appends one event; raises InvalidEvent (naming the field) if it is rejected."""
        if isinstance(event, Event):
            return self._append_events([event])[0]
        outcomes, rejects = self._process([(1, event)], origin="api")
        if rejects:
            raise InvalidEvent(rejects[0].reason)
        return outcomes[0]

    def record_many(
        self, events: Iterable[Mapping[str, Any]], *, origin: str = "api", progress: Progress | None = None
    ) -> PublishReport:
        return self._run(enumerate(events, 1), origin, progress)

    def publish(
        self, lines: Iterable[bytes], *, origin: str = "-", progress: Progress | None = None
    ) -> PublishReport:
        """Validates and appends JSON lines; blank lines are skipped."""
        numbered = ((n, line.rstrip(b"\r\n")) for n, line in enumerate(lines, 1) if line.strip())
        return self._run(numbered, origin, progress)

    def _run(
        self, items: Iterable[tuple[int, Any]], origin: str, progress: Progress | None
    ) -> PublishReport:
        report = PublishReport()
        chunk: list[tuple[int, Any]] = []
        for item in items:
            chunk.append(item)
            if len(chunk) >= CHUNK:
                report.add(self._chunk(chunk, origin))
                if progress:
                    progress(len(chunk))
                chunk = []
        if chunk:
            report.add(self._chunk(chunk, origin))
            if progress:
                progress(len(chunk))
        return report

    def _chunk(self, chunk: list[tuple[int, Any]], origin: str) -> PublishReport:
        outcomes, rejects = self._process(chunk, origin)
        self.dead_letters.write(rejects, self.clock.now())
        report = PublishReport(rejected=len(rejects), rejects=rejects[: PublishReport.KEEP])
        for o in outcomes:
            if o.status == "accepted":
                report.accepted += 1
                report.last_position = o.position
            else:
                report.duplicates += 1
        return report

    def _process(
        self, chunk: list[tuple[int, Any]], origin: str
    ) -> tuple[list[RecordOutcome], list[Reject]]:
        now = self.clock.now()
        rejects: list[Reject] = []
        drafts: list[tuple[int, Any, Draft]] = []
        for number, item in chunk:
            try:
                if isinstance(item, (bytes, bytearray)):
                    draft = self.intake.parse_line(bytes(item), now)
                else:
                    draft = self.intake.validate(item, now)
            except InvalidEvent as e:
                rejects.append(Reject(origin, number, str(e), _raw(item)))
                continue
            drafts.append((number, item, draft))

        subjects = [self._subject_of(d) for _, _, d in drafts]
        wanted = {
            (d.controller, s, key_category(d.type))
            for (_, _, d), s in zip(drafts, subjects, strict=True)
            if d.identifier or d.pii or d.account_ref
        }
        keys = self.vault.data_keys(wanted) if wanted else {}

        events: list[Event] = []
        pending: list[PendingRecord] = []
        for (number, item, d), subject in zip(drafts, subjects, strict=True):
            personal: dict[str, Any] = {}
            if d.identifier:
                personal["subject"] = {d.identifier[0]: d.identifier[1]}
            if d.account_ref:
                personal["account_ref"] = d.account_ref
            if d.pii:
                personal["pii"] = d.pii
            blob = None
            if personal:
                key = keys[(d.controller, subject, key_category(d.type))]
                plaintext = json.dumps(personal, ensure_ascii=False, separators=(",", ":")).encode()
                blob = seal(key, plaintext, d.event_id)
            body = d.body
            if d.account_ref:
                body = {**body, "account_ref": pseudonym(self._secrets[d.controller], "account", d.account_ref)}
            event = Event(d.type, d.event_id, d.controller, subject, d.occurred_at, now,
                          d.source, d.actor, body, blob)
            try:
                payload = self.codec.encode(event)
            except CodecError as e:
                rejects.append(Reject(origin, number, str(e), _raw(item)))
                continue
            events.append(event)
            pending.append(PendingRecord(d.event_id, d.type, subject, now, payload))
        positions = self.log.append(pending)
        outcomes = [
            RecordOutcome(e.event_id, e.subject, "accepted" if p else "duplicate", p)
            for e, p in zip(events, positions, strict=True)
        ]
        return outcomes, rejects

    def _subject_of(self, d: Draft) -> str:
        if d.subject_id is not None:
            return d.subject_id
        assert d.identifier is not None
        return pseudonym(self._secrets[d.controller], *d.identifier)

    def _append_events(self, events: list[Event]) -> list[RecordOutcome]:
        """Appends events the ledger itself built (the retention sweep)."""
        pending = [
            PendingRecord(e.event_id, e.type, e.subject, e.recorded_at, self.codec.encode(e))
            for e in events
        ]
        positions = self.log.append(pending)
        return [
            RecordOutcome(e.event_id, e.subject, "accepted" if p else "duplicate", p)
            for e, p in zip(events, positions, strict=True)
        ]

    # reading ------------------------------------------------------------------------------
    def events(self, start: int = 1, *, recorded_by: int | None = None) -> Iterator[tuple[LogRecord, Event]]:
        for record in self.log.read(start, recorded_by=recorded_by):
            yield record, self.codec.decode(record.payload)

    def personal_data(self, event: Event, *, include_sealed: bool = False) -> dict[str, Any] | None:
        """Decrypts an event's personal data; None if it has none. Raises KeyUnavailable if
        the key was shredded."""
        if event.pii is None:
            return None
        header = blob_header(event.pii)
        key = self.vault.data_key(event.controller, event.subject, header.category, header.generation)
        result: dict[str, Any] = json.loads(unseal(key, event.pii, event.event_id))
        return result


def _raw(item: Any) -> bytes:
    if isinstance(item, (bytes, bytearray)):
        return bytes(item)
    try:
        return json.dumps(item, ensure_ascii=False, default=str).encode("utf-8", "surrogatepass")
    except (TypeError, ValueError):
        return repr(item).encode("utf-8", "replace")


__all__ = ["Ledger", "PublishReport", "RecordOutcome", "KeyUnavailable"]
