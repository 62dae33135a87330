"""The service layer: the ``Ledger`` that the CLI and upstream Python apps both use.

Publishing runs in chunks: validate (intake) -> pseudonymise -> fetch or create the subjects'
data keys -> encrypt personal data -> Avro-encode -> one durable, atomic log append per chunk.
A rejected event never stops the rest; it goes to the dead letters with its reason."""

from __future__ import annotations

import itertools
import json
import multiprocessing
import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ledger import config as cfg
from ledger.clock import Clock, FixedClock, SystemClock
from ledger.codec import AvroCodec
from ledger.dead_letters import DeadLetters, Reject
from ledger.errors import InvalidEvent, KeyUnavailable, UsageError
from ledger.events import Event
from ledger.intake import Intake
from ledger.log import EventLog, LogRecord, PendingRecord
from ledger.preparation import Prepared, Preparer, Unit, worker_init, worker_prepare
from ledger.pseudonyms import pseudonym
from ledger.schemas import SchemaRegistry, default_registry
from ledger.timeutil import parse_cli_time
from ledger.vault import EffectsDone, KeyVault, SQLiteKeyVault, blob_header, unseal
from ledger.writer_lock import LOCK_FILE, WriterLock

if TYPE_CHECKING:  # projections sit above this layer: imported at call time, typed here
    from projections.permissions import PermitAnswer

CHUNK = 2000  # items a unit holds when the input does not come in batches of its own
# Items one log transaction holds. Durable commits (fsync) and the random event-id index
# pages each commit rewrites dominate append cost, so bulk input is committed in large
# groups; every item is still durable before publish reports it accepted.
PACKAGE = 10_000
PARALLEL_AFTER = 2  # packages read before worker processes are worth starting
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


def _packages(units: Iterable[Unit]) -> Iterator[list[Unit]]:
    """Groups units into packages of about PACKAGE items: one worker task and one log
    transaction each, however small the units (a demo day holds a handful of events)."""
    package: list[Unit] = []
    size = 0
    for unit in units:
        package.append(unit)
        size += len(unit.items)
        if size >= PACKAGE:
            yield package
            package, size = [], 0
    if package:
        yield package


def controller_secret_name(controller: str) -> str:
    return f"controller/{controller}"


def open_log(settings: cfg.Settings) -> EventLog:
    """Chooses the log adapter from the settings (``--log`` / ``LEDGER_LOG``)."""
    url = settings.log_url
    scheme = url.split("://", 1)[0] if "://" in url else url
    factory = LOG_BACKENDS.get(scheme)
    if factory is None:
        raise UsageError(f"--log: unsupported log {url!r} (use 'embedded' or kafka://host:port/topic)")
    return factory(settings)


def _embedded(settings: cfg.Settings) -> EventLog:
    from ledger.sqlite_log import SQLiteEventLog

    return SQLiteEventLog(settings.data_dir / cfg.LOG_FILE)


def _kafka(settings: cfg.Settings) -> EventLog:
    from ledger.kafka_log import KafkaEventLog

    return KafkaEventLog.from_settings(settings)


LOG_BACKENDS: dict[str, Callable[[cfg.Settings], EventLog]] = {"embedded": _embedded, "kafka": _kafka}


class Ledger:
    def __init__(
        self,
        data_dir: Path,
        config: cfg.LedgerConfig,
        log: EventLog,
        vault: KeyVault,
        clock: Clock,
        registry: SchemaRegistry | None = None,
        master_key: bytes | None = None,
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
        self._preparer = Preparer(self.intake, self._secrets, vault, self.registry)
        self._master_key = master_key
        # Held around every durable effect (appends, shredding, sealing): see writer_lock.
        self.writer_lock = WriterLock(data_dir / LOCK_FILE)
        self.dead_letters = DeadLetters(
            data_dir / cfg.DEAD_LETTERS_FILE, vault, self._secrets, lock=self.writer_lock
        )
        self.settle_effects()  # record first, then act: finish what a crash left undone

    # opening ------------------------------------------------------------------------------
    @classmethod
    def open(
        cls,
        data_dir: str | Path | None = None,
        *,
        log: str | None = None,
        now: str | None = None,
        schema_registry: str | None = None,
    ) -> Ledger:
        """Opens the ledger from the same settings as the CLI (arguments, else environment)."""
        return cls.from_settings(cfg.Settings.from_env(data_dir, log, now, schema_registry))

    @classmethod
    def from_settings(cls, settings: cfg.Settings) -> Ledger:
        config = cfg.load_config(settings.data_dir)
        cfg.check_private(settings.data_dir)
        master_key = cfg.master_key(settings.data_dir)
        cfg.check_vault_file(settings.data_dir)
        vault = SQLiteKeyVault(settings.data_dir / cfg.VAULT_FILE, master_key)
        try:
            clock: Clock = (
                FixedClock(parse_cli_time(settings.now, "--now")) if settings.now else SystemClock()
            )
            log = open_log(settings)
        except BaseException:
            vault.close()
            raise
        try:
            return cls(settings.data_dir, config, log, vault, clock, master_key=master_key)
        except BaseException:
            log.close()
            vault.close()
            raise

    @staticmethod
    def init(
        data_dir: str | Path, controllers: Iterable[str] = cfg.DEFAULT_CONTROLLERS
    ) -> tuple[Path, bool]:
        """Creates the data directory (idempotent). Returns (dir, created)."""
        path = Path(data_dir)
        if (path / cfg.CONFIG_FILE).exists():
            cfg.check_private(path)
            return path, False
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(path, 0o700)  # an existing directory too, whatever the umask
        key = cfg.master_key(path, create=True)
        vault = SQLiteKeyVault(path / cfg.VAULT_FILE, key)
        try:
            names = [cfg.check_controller_name(c) for c in controllers]
            for name in names:
                vault.secret(controller_secret_name(name), create=True)
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
        self._preparer = Preparer(self.intake, self._secrets, self.vault, self.registry)
        return True

    def settle_effects(self) -> EffectsDone:
        """Record first, then act (SPEC §7a): shreds or seals the keys of sweep events that
        are in the log but whose effect a crash interrupted, and forgets the noted effects of
        events that never reached the log (nothing was recorded, nothing is done: the decision
        stays due). One small vault read when nothing is pending."""
        if not self.vault.pending_effects():
            return EffectsDone()
        with self.writer_lock:
            ids = [e.event_id for e in self.vault.pending_effects()]
            recorded = self.log.contains(ids) if ids else set()
            self.vault.drop_effects([i for i in ids if i not in recorded])
            return self.vault.complete_effects([i for i in ids if i in recorded])

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
        prepared = self._preparer.prepare(Unit(self.clock.now(), [(1, event)]), "api")
        if prepared.rejects:
            raise InvalidEvent(prepared.rejects[0].reason)
        return self._commit([prepared])[0]

    def record_many(
        self,
        events: Iterable[Mapping[str, Any]],
        *,
        origin: str = "api",
        progress: Progress | None = None,
        workers: int = 1,
    ) -> PublishReport:
        return self._execute(self._units(enumerate(events, 1)), origin, progress, workers)

    def record_batches(
        self,
        batches: Iterable[tuple[int, Sequence[Mapping[str, Any]]]],
        *,
        origin: str = "api",
        progress: Progress | None = None,
        workers: int = 1,
    ) -> PublishReport:
        """Appends batches that each carry their own ledger clock (recorded_at), e.g. a
        history back-filled day by day. Each batch is one atomic append."""
        units = (Unit(at, list(enumerate(events, 1))) for at, events in batches)
        return self._execute(units, origin, progress, workers)

    def publish(
        self,
        lines: Iterable[bytes],
        *,
        origin: str = "-",
        progress: Progress | None = None,
        workers: int = 1,
    ) -> PublishReport:
        """Validates and appends JSON lines; blank lines are skipped."""
        numbered = ((n, line.rstrip(b"\r\n")) for n, line in enumerate(lines, 1) if line.strip())
        return self._execute(self._units(numbered), origin, progress, workers)

    def _units(self, items: Iterable[tuple[int, Any]]) -> Iterator[Unit]:
        chunk: list[tuple[int, Any]] = []
        for item in items:
            chunk.append(item)
            if len(chunk) >= CHUNK:
                yield Unit(self.clock.now(), chunk)
                chunk = []
        if chunk:
            yield Unit(self.clock.now(), chunk)

    def _execute(
        self, units: Iterable[Unit], origin: str, progress: Progress | None, workers: int
    ) -> PublishReport:
        report = PublishReport()
        packages = _packages(units)
        if workers > 1 and self._master_key is not None:
            # Small inputs are not worth starting processes for: go parallel only once the
            # input has proved long.
            head = list(itertools.islice(packages, PARALLEL_AFTER))
            if len(head) == PARALLEL_AFTER:
                prepared = self._prepare_in_workers(itertools.chain(head, packages), origin, workers)
            else:
                prepared = (self._preparer.prepare_all(p, origin) for p in head)
        else:
            prepared = (self._preparer.prepare_all(p, origin) for p in packages)
        for package in prepared:
            outcomes = self._commit(package)
            rejects = [r for p in package for r in p.rejects]
            chunk = PublishReport(rejected=len(rejects), rejects=rejects[: PublishReport.KEEP])
            for o in outcomes:
                if o.position is not None:
                    chunk.accepted += 1
                    chunk.last_position = o.position
                else:
                    chunk.duplicates += 1
            report.add(chunk)
            if progress:
                progress(len(outcomes) + len(rejects))
        return report

    def _prepare_in_workers(
        self, packages: Iterator[list[Unit]], origin: str, workers: int
    ) -> Iterator[list[Prepared]]:
        """Prepares packages in worker processes, in order, with a bounded number in flight."""
        context = multiprocessing.get_context("spawn")  # no SQLite handles cross a fork
        master_key = self._master_key
        assert master_key is not None
        with ProcessPoolExecutor(
            max_workers=workers,
            mp_context=context,
            initializer=worker_init,
            initargs=(
                str(self.data_dir / cfg.VAULT_FILE),
                master_key,
                list(self.config.controllers),
                {c: controller_secret_name(c) for c in self.config.controllers},
            ),
        ) as pool:
            in_flight: deque[Future[list[Prepared]]] = deque()
            for package in packages:
                in_flight.append(pool.submit(worker_prepare, package, origin))
                if len(in_flight) >= 2 * workers:
                    yield in_flight.popleft().result()
            while in_flight:
                yield in_flight.popleft().result()

    def _commit(self, package: list[Prepared]) -> list[RecordOutcome]:
        """The ordered half of publishing: one atomic, durable append per package (each
        record keeps its own unit's recorded_at)."""
        pending = [r for p in package for r in p.pending]
        with self.writer_lock:
            positions = self.log.append(pending)
        for p in package:
            self.dead_letters.write(p.rejects, p.recorded_at)
        return [
            RecordOutcome(p.event_id, p.subject, "accepted" if pos else "duplicate", pos)
            for p, pos in zip(pending, positions, strict=True)
        ]

    def _append_events(self, events: list[Event]) -> list[RecordOutcome]:
        """Appends events the ledger itself built (the retention sweep)."""
        pending = [
            PendingRecord(e.event_id, e.type, e.subject, e.recorded_at, self.codec.encode(e))
            for e in events
        ]
        with self.writer_lock:
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
        key = self.vault.data_key(event.controller, event.subject, header.category,
                                  header.generation, include_sealed=include_sealed)
        result: dict[str, Any] = json.loads(unseal(key, event.pii, event.event_id))
        return result

    # rights (SPEC §5 permissions, §2 register extract) -------------------------------------
    # They read the DuckDB projections, which sit above this layer: imported when called.
    def permits(self, purpose: str, **kwargs: Any) -> PermitAnswer:
        """May ``purpose`` be pursued for a subject now (or ``as_of``)? See
        ``projections.permissions.permits`` for the arguments; returns a PermitAnswer."""
        from projections.permissions import permits

        return permits(self, purpose, **kwargs)

    def export_subject(self, **kwargs: Any) -> dict[str, Any]:
        """The register extract / portable copy of one subject; see
        ``projections.export.export_subject``."""
        from projections.export import export_subject

        return export_subject(self, **kwargs)


__all__ = ["KeyUnavailable", "Ledger", "PublishReport", "RecordOutcome"]
