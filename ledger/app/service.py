"""The service layer: the ``Ledger`` that the CLI and upstream Python apps both use.

Publishing runs in chunks: validate (intake) -> pseudonymise -> fetch or create the subjects'
data keys -> encrypt personal data -> Avro-encode -> one durable, atomic log append per chunk.
A rejected event never stops the rest; it goes to the dead letters with its reason."""

from __future__ import annotations

import dataclasses
import itertools
import json
import multiprocessing
import os
import signal
import sqlite3
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from ledger import bootstrap
from ledger import config as cfg
from ledger.adapters.dead_letters import DeadLetters, Reject
from ledger.adapters.writer_lock import LOCK_FILE, WriterLock
from ledger.app.notice_index import NoticeIndex
from ledger.app.outcomes import ItemResult, PublishReport, RecordOutcome, conflict_reason
from ledger.app.preparation import (
    Prepared,
    Preparer,
    Unit,
    content_digest,
    raw_input,
    worker_init,
    worker_prepare,
)
from ledger.contracts.codec import AvroCodec
from ledger.contracts.schemas import SchemaRegistry, default_registry
from ledger.domain.blobs import blob_header, decrypt_blob
from ledger.domain.chain import Conflict, LogRecord, PendingRecord
from ledger.domain.clock import Clock, ledger_clock
from ledger.domain.errors import (
    ConfigError,
    InvalidEvent,
    KeyUnavailable,
    LedgerError,
    UnknownController,
    UsageError,
)
from ledger.domain.events import Event
from ledger.domain.intake import Intake
from ledger.domain.notices import PublishedHashes
from ledger.domain.pseudonyms import pseudonym
from ledger.domain.retention.policy import Policy, builtin_policies, is_shipped, policy_setting
from ledger.domain.subjects import SubjectSelector
from ledger.ports import (
    EffectsDone,
    EventLog,
    KeyRef,
    KeyVault,
)

if TYPE_CHECKING:  # the read side loads on first use: ledger and its CLI start without DuckDB
    from ledger.app.permits import PermitAnswer

CHUNK = 2000  # items a unit holds when the input does not come in batches of its own
# Items one log transaction holds. Durable commits (fsync) and the random event-id index
# pages each commit rewrites dominate append cost, so bulk input is committed in large
# groups; every item is still durable before publish reports it accepted.
PACKAGE = 10_000
PARALLEL_AFTER = 2  # packages read before worker processes are worth starting
Progress = Callable[[int], None]


def _test_crash(point: str) -> None:
    """Crash tests (tests/crash) kill the process at a chosen point of an append."""
    if os.environ.get("LEDGER_TEST_CRASH_AT") == point:
        os.kill(os.getpid(), signal.SIGKILL)


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
        *,
        writer_lock: WriterLock | None = None,
        dead_letters: type[DeadLetters] = DeadLetters,
        settings: cfg.Settings | None = None,
    ) -> None:
        """``writer_lock`` and ``dead_letters`` default to the files in ``data_dir``; unit
        tests pass the in-memory ones (``ledger.memory``), and then, with the in-memory log
        and vault, nothing touches ``data_dir``. ``settings`` (default: the data directory's)
        tell publishing's worker processes how to open the vault (``ledger.bootstrap``)."""
        self.data_dir = data_dir
        self.settings = settings or cfg.Settings(data_dir)
        self.config = config
        self.log = log
        self.vault = vault
        self.clock = clock
        self.registry = registry or default_registry()
        self.codec = AvroCodec(self.registry)
        self.intake = Intake(self.registry, config.controllers)
        self._secrets = {c: vault.secret(controller_secret_name(c)) for c in config.controllers}
        # The notice registry as the log holds it, read at most once per publishing run.
        self.notices = NoticeIndex()
        self._notice_hashes: PublishedHashes | None = None
        self._preparer = Preparer(self.intake, self._secrets, vault, self.registry,
                                  notices=self._published_notices)
        self._master_key = master_key
        # Held around every durable effect (appends, shredding, sealing): see writer_lock.
        self.writer_lock = writer_lock if writer_lock is not None else WriterLock(data_dir / LOCK_FILE)
        self.dead_letters = dead_letters(
            data_dir / cfg.DEAD_LETTERS_FILE, vault, self._secrets, lock=self.writer_lock
        )
        self.settle_effects()  # record first, then act: finish what a crash left undone
        self._recovered = False
        self._confirmed: set[KeyRef] = set()  # keys this ledger confirmed (a generation is never reused)
        self._unsettled: set[KeyRef] = set()  # new keys of a failed append not yet destroyed
        # Keys made from now on may be this ledger's own, still in flight: a settlement
        # deferred to the first append leaves them alone.
        self._opened_at = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime())
        if self.vault.pending_keys():  # a writer failed or crashed: settle its keys now,
            with self.writer_lock.if_free() as free:  # or at this ledger's first append
                if free:
                    try:
                        self._recover_keys(everything=True)
                    except LedgerError:  # e.g. Kafka unreachable: opening must still work
                        self._recovered = False

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
        vault = bootstrap.open_vault(settings, master_key)
        try:
            clock = ledger_clock(settings.now)
            log = bootstrap.open_log(settings)
        except BaseException:
            vault.close()
            raise
        try:
            return cls(settings.data_dir, config, log, vault, clock, master_key=master_key,
                       settings=settings)
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
        # Checked before anything is created: a new controller needs a policy, and init
        # gives each the shipped policy of its name (others are added with their own).
        names = [cfg.check_controller_name(c) for c in controllers]
        for name in names:
            if not is_shipped(name):
                raise UsageError(
                    f"{name!r} has no shipped policy of its name (shipped: "
                    f"{', '.join(builtin_policies())}): create the ledger with shipped ones, "
                    "then add it with its policy file (controller add)", parameter="controller")
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(path, 0o700)  # an existing directory too, whatever the umask
        key = cfg.master_key(path, create=True)
        vault = bootstrap.open_vault(cfg.Settings(path), key)
        try:
            for name in names:
                vault.secret(controller_secret_name(name), create=True)
        finally:
            vault.close()
        cfg.write_config(
            path, cfg.LedgerConfig({n: cfg.ControllerConfig(n, n) for n in names})
        )
        return path, True

    # controllers: each change re-reads ledger.toml and replaces it atomically under the
    # writer lock, after the policy was loaded and validated (nothing changes on an error).
    def add_controller(self, name: str, policy: str | None = None) -> bool:
        """Adds a controller with a fresh pseudonym secret and its policy: a shipped policy's
        name or a policy TOML's path (recorded absolute), by default the shipped policy of
        the controller's name. False if it already exists (with that policy, when given)."""
        cfg.check_controller_name(name)
        with self.writer_lock:
            self._reload_config()
            existing = self.config.controllers.get(name)
            if existing is not None:
                if policy is not None and _setting(policy)[0] != existing.policy:
                    raise UsageError(
                        f"controller {name!r} exists with policy {existing.policy[:200]!r} "
                        "(set-policy changes it)", parameter="policy")
                return False
            if policy is None and not is_shipped(name):
                raise UsageError(
                    f"controller {name!r} has no shipped policy of its name: give {{policy}}, "
                    f"a shipped policy ({', '.join(builtin_policies())}) or a policy TOML file",
                    parameter="policy")
            setting, _ = _setting(policy or name)
            controllers = dict(self.config.controllers)
            controllers[name] = cfg.ControllerConfig(name, setting)
            config = cfg.LedgerConfig(controllers)
            cfg.config_text(config)  # writable, before the secret is made
            secret = self.vault.secret(controller_secret_name(name), create=True)
            cfg.write_config(self.data_dir, config)
            self._secrets[name] = secret
            self._use_config(config)
        return True

    def set_policy(self, name: str, policy: str) -> str:
        """Gives a controller another policy (validated first); returns what ledger.toml now
        records for it."""
        with self.writer_lock:
            self._reload_config()
            if name not in self.config.controllers:
                raise UnknownController(name)
            setting, _ = _setting(policy)
            controllers = dict(self.config.controllers)
            controllers[name] = cfg.ControllerConfig(name, setting)
            config = cfg.LedgerConfig(controllers)
            cfg.write_config(self.data_dir, config)
            self._use_config(config)
        return setting

    def remove_controller(self, name: str) -> str:
        """Removes a controller the log holds no event of from ledger.toml (its pseudonym
        secret stays in the key vault: adding it again gives the same pseudonyms). Refused
        while the log holds any of its events: they stay its evidence. Returns the policy it
        had."""
        with self.writer_lock:
            self._reload_config()
            existing = self.config.controllers.get(name)
            if existing is None:
                raise UnknownController(name)
            held = self.controller_events(name)
            if held:
                raise UsageError(
                    f"controller {name!r} cannot be removed: the log holds {held:,} of its "
                    f"event{'' if held == 1 else 's'} (kept as evidence)")
            controllers = {c: v for c, v in self.config.controllers.items() if c != name}
            config = cfg.LedgerConfig(controllers)
            cfg.write_config(self.data_dir, config)
            self._secrets.pop(name, None)
            self._use_config(config)
        return existing.policy

    def controller_events(self, name: str) -> int:
        """How many events of controller ``name`` the log holds (one scan; only records whose
        bytes mention the name are decoded)."""
        needle = name.encode()
        return sum(1 for record in self.log.read()
                   if needle in record.payload
                   and self.codec.decode(record.payload).controller == name)

    def _reload_config(self) -> None:
        """ledger.toml as it is now (another process may have changed it); unchanged when
        this ledger has no file (unit tests with in-memory adapters)."""
        if (self.data_dir / cfg.CONFIG_FILE).exists():
            self._use_config(cfg.load_config(self.data_dir))

    def _use_config(self, config: cfg.LedgerConfig) -> None:
        self.config = config
        for c in config.controllers:
            if c not in self._secrets:
                self._secrets[c] = self.vault.secret(controller_secret_name(c), create=True)
        self.intake = Intake(self.registry, self.config.controllers)
        self._preparer = Preparer(self.intake, self._secrets, self.vault, self.registry,
                                  notices=self._published_notices)

    def _published_notices(self) -> PublishedHashes:
        if self._notice_hashes is None:
            self._notice_hashes = self.notices.refresh(self).snapshot()
        return self._notice_hashes

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
            raise UnknownController(controller)
        if (email is None) == (account is None):
            raise UsageError("give exactly one of an e-mail address or an account id")
        kind, value = ("email", email) if email is not None else ("account", account)
        assert value is not None
        return pseudonym(self._secrets[controller], kind, value)

    # publishing ---------------------------------------------------------------------------
    def record(self, event: Mapping[str, Any] | Event) -> RecordOutcome:
        """Appends one event; raises InvalidEvent (naming the field) if it is rejected."""
        if isinstance(event, Event):
            return self.append_events([event])[0]
        unit = Unit(self.clock.now(), [(1, event)])
        self._notice_hashes = None  # notices published since the last call count
        prepared = self._preparer.prepare(unit, "api")
        if prepared.rejects:
            raise InvalidEvent(prepared.rejects[0].reason)
        outcome = self._commit([prepared], [unit], "api")[0]
        if outcome.status == "conflict":
            assert outcome.position is not None
            raise InvalidEvent(conflict_reason(outcome.position))
        return outcome

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

    def record_groups(self, groups: Sequence[Sequence[Any]], *, origin: str = "http"
                      ) -> list[list[ItemResult]]:
        """Appends several callers' inputs (each a list of dicts or JSON lines) in ONE durable
        append: the service groups concurrent requests here. Returns, per group, one result per
        item in input order (its 1-based number): accepted, duplicate, rejected or conflict."""
        units = [Unit(self.clock.now(), list(enumerate(g, 1))) for g in groups]
        package = self._preparer.prepare_all(units, origin)
        outcomes = iter(self._commit(package, units, origin))
        results: list[list[ItemResult]] = []
        for p, unit in zip(package, units, strict=True):
            by_number: dict[int, ItemResult] = {}
            for number in p.numbers:
                o = next(outcomes)
                by_number[number] = ItemResult(number, o.event_id, o.status, o.position)
            for reject in p.rejects:
                found = by_number.get(reject.line)
                if found is not None:  # a conflict: it has an outcome and a reason
                    by_number[reject.line] = dataclasses.replace(found, reason=reject.reason)
                else:
                    by_number[reject.line] = ItemResult(reject.line, None, "rejected", None,
                                                        reject.reason)
            results.append([by_number[n] for n, _ in unit.items if n in by_number])
        return results

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
        self._notice_hashes = None  # notices published since the last run count
        packages = _packages(units)
        prepared: Iterator[tuple[list[Unit], list[Prepared]]]
        if workers > 1 and self._master_key is not None:
            # Small inputs are not worth starting processes for: go parallel only once the
            # input has proved long.
            head = list(itertools.islice(packages, PARALLEL_AFTER))
            if len(head) == PARALLEL_AFTER:
                prepared = self._prepare_in_workers(itertools.chain(head, packages), origin, workers)
            else:
                prepared = ((p, self._preparer.prepare_all(p, origin)) for p in head)
        else:
            prepared = ((p, self._preparer.prepare_all(p, origin)) for p in packages)
        for units_of, package in prepared:
            outcomes = self._commit(package, units_of, origin)
            rejects = [r for p in package for r in p.rejects]
            chunk = PublishReport(rejected=len(rejects), rejects=rejects[: PublishReport.KEEP])
            for o in outcomes:
                if o.status == "accepted":
                    chunk.accepted += 1
                    chunk.last_position = o.position
                elif o.status == "duplicate":
                    chunk.duplicates += 1
                else:
                    chunk.conflicts += 1  # counted in rejected too: it is in the rejects
            report.add(chunk)
            if progress:
                progress(len(outcomes) - chunk.conflicts + len(rejects))
        return report

    def _prepare_in_workers(
        self, packages: Iterator[list[Unit]], origin: str, workers: int
    ) -> Iterator[tuple[list[Unit], list[Prepared]]]:
        """Prepares packages in worker processes, in order, with a bounded number in flight."""
        context = multiprocessing.get_context("spawn")  # no SQLite handles cross a fork
        master_key = self._master_key
        assert master_key is not None
        with ProcessPoolExecutor(
            max_workers=workers,
            mp_context=context,
            initializer=worker_init,
            initargs=(
                self.settings,
                master_key,
                list(self.config.controllers),
                {c: controller_secret_name(c) for c in self.config.controllers},
                self._published_notices(),
            ),
        ) as pool:
            in_flight: deque[tuple[list[Unit], Future[list[Prepared]]]] = deque()
            for package in packages:
                in_flight.append((package, pool.submit(worker_prepare, package, origin)))
                if len(in_flight) >= 2 * workers:
                    units, future = in_flight.popleft()
                    yield units, future.result()
            while in_flight:
                units, future = in_flight.popleft()
                yield units, future.result()

    def _commit(self, package: list[Prepared], units: list[Unit], origin: str) -> list[RecordOutcome]:
        """The ordered half of publishing: one atomic, durable append per package (each
        record keeps its own unit's recorded_at). Under the writer lock, before the append:
        every data key the records use is confirmed live (stale -> re-prepared under a new
        key generation); with the wall clock, stamps behind the log are taken again. After
        it: the package's new (pending) keys are confirmed; if it fails, they are destroyed."""
        with self.writer_lock:
            self._recover_keys()
            if self._unsettled:
                self._discard_keys(set(self._unsettled))
            self._confirm_live(package, units, origin)
            if getattr(self.clock, "wall", False):
                self._restamp(package)
            pending = [r for p in package for r in p.pending]
            unconfirmed = {k for p in package for k in p.unconfirmed}
            _test_crash("after-keys")
            try:
                # An explicit clock behind the log is refused here (ClockError, only for
                # records not already in the log, so a back-filled history can be replayed):
                # the package's new keys are then destroyed and no dead letter is written.
                positions = self.log.append(pending)
            except BaseException:
                self._discard_keys(unconfirmed)
                raise
            _test_crash("after-append")
            self._confirm_keys(unconfirmed)
        outcomes = []
        results = iter(positions)
        for p, unit in zip(package, units, strict=True):
            items: dict[int, Any] | None = None
            for r, number in zip(p.pending, p.numbers, strict=True):
                pos = next(results)
                if isinstance(pos, Conflict) and not (pos.known or self._differs(r, pos.position)):
                    pos = None
                if isinstance(pos, Conflict):
                    items = dict(unit.items) if items is None else items
                    p.rejects.append(Reject(origin, number, conflict_reason(pos.position),
                                            raw_input(items[number])))
                    outcomes.append(RecordOutcome(r.event_id, r.subject, "conflict", pos.position))
                else:
                    outcomes.append(RecordOutcome(r.event_id, r.subject,
                                                  "accepted" if pos else "duplicate", pos))
            p.rejects.sort(key=lambda reject: reject.line)
            self.dead_letters.write(p.rejects, p.recorded_at)
        return outcomes

    def _confirm_live(self, package: list[Prepared], units: list[Unit], origin: str) -> None:
        """Re-prepares the records whose data key is no longer live (another process shredded
        it since the key was fetched, possibly into a cache). Called under the writer lock,
        where no key can die (shredding takes the same lock)."""
        used = {k for p in package for k in p.keys if k is not None}
        if not used:
            return
        epoch = self.vault.epoch()
        if epoch is not None and all(p.epoch == epoch for p in package if any(p.keys)):
            return  # nothing destroyed or changed since the keys were fetched: all live
        stale = self.vault.stale(used)
        if not stale:
            return
        for p, unit in zip(package, units, strict=True):
            redo = [j for j, k in enumerate(p.keys) if k in stale]
            if not redo:
                continue
            items = dict(unit.items)
            again = self._preparer.prepare(
                Unit(p.recorded_at, [(p.numbers[j], items[p.numbers[j]]) for j in redo]), origin)
            fresh = {n: (r, k) for n, r, k in zip(again.numbers, again.pending, again.keys, strict=True)}
            keep = [j for j in range(len(p.pending)) if j not in set(redo) or p.numbers[j] in fresh]
            for j in redo:
                if p.numbers[j] in fresh:
                    p.pending[j], p.keys[j] = fresh[p.numbers[j]]
            p.pending = [p.pending[j] for j in keep]
            p.keys = [p.keys[j] for j in keep]
            p.numbers = [p.numbers[j] for j in keep]
            p.rejects.extend(again.rejects)
            p.unconfirmed = {k for k in p.unconfirmed | again.unconfirmed if k not in stale}
            p.epoch = again.epoch

    def _restamp(self, package: list[Prepared]) -> None:
        """Wall clock only, under the writer lock: a unit stamped before another process
        appended later records is stamped again, ``max(now, last + 1 µs)``, and its records
        re-encoded (recorded_at is in the Avro envelope). Cheap when not behind."""
        last = self.log.last_recorded_at()
        for p in package:
            if p.recorded_at <= last:
                at = max(self.clock.now(), last + 1)
                p.pending = [self._restamped(r, at) for r in p.pending]
                p.recorded_at = at
            last = max(last, p.recorded_at)

    def _restamped(self, record: PendingRecord, at: int) -> PendingRecord:
        event = dataclasses.replace(self.codec.decode(record.payload), recorded_at=at)
        return dataclasses.replace(record, recorded_at=at, payload=self.codec.encode(event))

    def _differs(self, record: PendingRecord, position: int) -> bool:
        """For a stored record from before content digests: compares decoded content."""
        stored = next(iter(self.log.read(position, limit=1)), None)
        if stored is None or stored.position != position:
            return False
        event = self.codec.decode(stored.payload)
        try:
            personal = self.personal_data(event, include_sealed=True)
        except KeyUnavailable:
            # The stored personal data cannot be read any more (erased): not comparable, so
            # it counts as a duplicate, as every same id did before digests existed.
            return False
        pii = personal.get("pii") if personal else None
        return content_digest(event, pii or None) != record.digest

    # pending keys (a failed append leaves no orphan keys) ----------------------------------
    def _confirm_keys(self, keys: set[KeyRef]) -> None:
        # Workers' caches keep calling a key pending after it was confirmed: skip those.
        keys = keys - self._confirmed
        try:
            self.vault.confirm(keys)
        except (LedgerError, sqlite3.Error):
            return  # still pending: the next open confirms them from the log
        if len(self._confirmed) > 200_000:  # bounded memory
            self._confirmed.clear()
        self._confirmed |= keys

    def _discard_keys(self, keys: set[KeyRef]) -> None:
        """After a failed append: destroys the new keys it would have used, unless one of
        their records is in the log after all (a failure after the records landed, e.g. a
        Kafka batch half acknowledged): those are kept and confirmed. A concurrent writer
        that picked up a destroyed key re-prepares at its commit (``_confirm_live``)."""
        if not keys:
            return
        try:
            self._settle(keys)
        except (LedgerError, sqlite3.Error):
            self._unsettled |= keys  # the disk may be full: the next append (or open) retries
        else:
            self._unsettled -= keys

    def _settle(self, only: set[KeyRef] | None = None, created_before: str | None = None) -> None:
        """Pending keys (these, or all made before a time): kept and confirmed if one of the
        events they were handed out for is in the log, else destroyed. Under the writer lock."""
        pending = {k: ids for k, ids in self.vault.pending_keys(created_before).items()
                   if only is None or k in only}
        if not pending:
            return
        present = self.log.contains(sorted({i for ids in pending.values() for i in ids}))
        used = {k for k, ids in pending.items() if any(i in present for i in ids)}
        self.vault.confirm(used)
        self.vault.discard(set(pending) - used)

    def _recover_keys(self, *, everything: bool = False) -> None:
        """Pending keys left by a writer that crashed or failed (under the writer lock): kept
        if one of the events they were made for is in the log, else destroyed. At open, all
        of them; later, only those made before this ledger was opened (not its own packages
        in flight)."""
        if self._recovered:
            return
        self._recovered = True
        self._settle(created_before=None if everything else self._opened_at)

    def append_events(self, events: list[Event]) -> list[RecordOutcome]:
        """Appends events the ledger itself built (the retention sweep). Their ids are derived
        from what they record, so the same id with other content is a bug: it raises."""
        pending = [
            PendingRecord(e.event_id, e.type, e.subject, e.recorded_at, self.codec.encode(e),
                          content_digest(e, None))
            for e in events
        ]
        with self.writer_lock:
            positions = self.log.append(pending)
        for e, p in zip(events, positions, strict=True):
            if isinstance(p, Conflict):
                raise LedgerError(f"{e.type} {e.event_id}: the ledger built an event whose id is in "
                                  f"the log at position {p.position} with other content")
        # No conflict is left (it raised above): each position is new (int) or None.
        return [
            RecordOutcome(e.event_id, e.subject, "accepted" if p else "duplicate",
                          p if isinstance(p, int) else None)
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
        result: dict[str, Any] = json.loads(decrypt_blob(key, event.pii, event.event_id))
        return result

    # rights (SPEC §5 permissions, §2 register extract) -------------------------------------
    def permits(self, purpose: str, who: SubjectSelector, *, channel: str | None = None,
                as_of: int | None = None) -> PermitAnswer:
        """May ``purpose`` be pursued for the person ``who`` names (on ``channel``) now, or as
        known at ``as_of`` (UTC microseconds)? Raises UsageError for an unknown controller
        (UnknownController), purpose, channel or subject."""
        from ledger.app.permits import permits  # the read side (DuckDB, Arrow) loads on use

        return permits(self, purpose, subject=who.subject_id, email=who.email_address,
                       account=who.account_id, controller=who.controller, channel=channel,
                       as_of=as_of)

    def export_subject(self, who: SubjectSelector, *,
                       include_pseudonymised: bool = False) -> dict[str, Any]:
        """The register extract / portable copy of the person ``who`` names, as a JSON-ready
        dict; a pseudonymised subject's personal data (under its sealed keys) only with
        ``include_pseudonymised``."""
        from ledger.app.export import export_subject  # the read side loads on use
        from ledger.app.permits import resolve_subject_in

        if who.controller is None:  # a pseudonym alone: the one controller that knows it
            who = who.for_controller(resolve_subject_in(self, subject=who.subject_id).controller)
        return export_subject(self, controller=cast(str, who.controller), subject=who.subject_id,
                              email=who.email_address, account=who.account_id,
                              include_pseudonymised=include_pseudonymised)

__all__ = ["KeyUnavailable", "Ledger", "PublishReport", "RecordOutcome"]


def _setting(policy: str) -> tuple[str, Policy]:
    """A policy named by an operator, loaded and validated; errors are about ``policy``."""
    try:
        return policy_setting(policy)
    except ConfigError as e:
        raise UsageError(e.reason, parameter="policy") from None
