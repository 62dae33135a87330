"""ledger.bootstrap: the settings choose the adapters, in one table and nowhere else."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from ledger import bootstrap
from ledger.adapters.kafka_log import KafkaEventLog
from ledger.adapters.log_frames import LogFrames
from ledger.adapters.memory import MemoryEventLog
from ledger.adapters.sqlite_log import SQLiteEventLog
from ledger.adapters.sqlite_scan import SQLiteFrames
from ledger.adapters.sqlite_vault import SQLiteKeyVault
from ledger.app.auditing import Auditor
from ledger.app.service import Ledger, controller_secret_name
from ledger.config import Settings, master_key
from ledger.domain.errors import KafkaLogNeeded, UsageError
from ledger.ports import EventLog

ROOT = Path(__file__).resolve().parents[2]
# No broker is contacted: a Kafka log connects on first use, and these tests never use it.
KAFKA = "kafka://127.0.0.1:9/topic-a?timeout=1"


@pytest.fixture
def embedded(tmp_path: Path) -> Settings:
    Ledger.init(tmp_path / "data", ["cowrite"])
    with Ledger.open(tmp_path / "data") as ledger:  # a controller without a shipped policy
        ledger.add_controller("acme", "cowrite")
    return Settings(tmp_path / "data")


def test_the_table_names_each_scheme_once() -> None:
    assert set(bootstrap.BACKENDS) == {"embedded", "kafka"}
    assert all(scheme == b.scheme for scheme, b in bootstrap.BACKENDS.items())


def test_embedded_gives_the_sqlite_adapters(embedded: Settings) -> None:
    backend = bootstrap.backend(embedded)
    assert backend is bootstrap.BACKENDS["embedded"] and not backend.partitioned
    log = bootstrap.open_log(embedded)
    try:
        assert type(log) is SQLiteEventLog and not log.partitioned and log.name == "embedded"
    finally:
        log.close()
    assert (embedded.data_dir / "log.sqlite").exists()
    frames = bootstrap.open_frames(embedded, jobs=2)
    try:
        assert type(frames) is SQLiteFrames and frames.size() == 0
    finally:
        frames.close()
    assert bootstrap.projections_file(embedded) == "projections.duckdb"
    with pytest.raises(KafkaLogNeeded, match="needs a Kafka log, kafka://"):
        bootstrap.open_kafka_log(embedded)


def test_kafka_gives_the_kafka_adapters(tmp_path: Path) -> None:
    settings = Settings(tmp_path, KAFKA)
    backend = bootstrap.backend(settings)
    assert backend is bootstrap.BACKENDS["kafka"] and backend.partitioned
    log = bootstrap.open_log(settings)
    try:
        assert type(log) is KafkaEventLog and log.partitioned and log.name == "topic-a"
    finally:
        log.close()
    kafka = bootstrap.open_kafka_log(settings)
    kafka.close()
    frames = bootstrap.open_frames(settings)
    try:  # no raw reader: the auditor reads the log through its port
        assert type(frames) is LogFrames and type(frames.log) is KafkaEventLog
    finally:
        frames.close()
    assert bootstrap.projections_file(settings) == "projections.topic-a.duckdb"
    assert not list(tmp_path.iterdir())  # a Kafka log needs no data directory


def test_the_vault_factory_opens_the_ledgers_vault(embedded: Settings) -> None:
    vault = bootstrap.open_vault(embedded, master_key(embedded.data_dir))
    try:
        assert type(vault) is SQLiteKeyVault
        assert vault.secret(controller_secret_name("acme"))  # made by add_controller
    finally:
        vault.close()


@pytest.mark.parametrize("log_class", [EventLog, SQLiteEventLog, MemoryEventLog, KafkaEventLog])
def test_a_log_is_partitioned_exactly_when_it_reads_by_partition(log_class: type[EventLog]) -> None:
    """What the port's flag promises (the projection workers read a partitioned log with
    partitions() and read_partition()), each adapter keeps: it has both exactly when it says
    it is partitioned."""
    reads_by_partition = all(callable(getattr(log_class, m, None))
                             for m in ("partitions", "read_partition"))
    assert log_class.partitioned is reads_by_partition


def test_an_unpartitioned_log_cannot_be_shared_by_workers(embedded: Settings) -> None:
    """The flag decides how the log is projected: position by position (one projections file)
    unless it is partitioned, so an embedded log refuses a worker's share."""
    from projections.engine.projector import make_projector, projections_path
    from projections.engine.workers import Worker

    with Ledger.open(embedded.data_dir) as ledger:
        assert not ledger.log.partitioned
        assert projections_path(ledger, worker=Worker(1, 2)) == embedded.data_dir / "projections.duckdb"
        with pytest.raises(UsageError, match="only a partitioned log"):
            make_projector(ledger, None, worker=Worker(1, 2))  # type: ignore[arg-type]


@pytest.mark.parametrize("url", ["ftp://x", "sqlite", "kafka2://h/t", ""])
def test_an_unknown_scheme_is_one_line_naming_the_supported_ones(tmp_path: Path, url: str) -> None:
    settings = Settings(tmp_path, url)
    for choose in (bootstrap.backend, bootstrap.open_log, bootstrap.open_frames,
                   bootstrap.projections_file, Auditor.open):
        with pytest.raises(UsageError) as caught:
            choose(settings)
        message = str(caught.value)
        assert "\n" not in message and "unsupported log" in message
        assert "'embedded'" in message and "kafka://host:port/topic" in message
    assert not list(tmp_path.iterdir())


# --- nowhere else ---------------------------------------------------------------------------

ADAPTERS = {"SQLiteEventLog", "KafkaEventLog", "SQLiteKeyVault", "SQLiteFrames"}
# Where the adapters live (they may name and parse themselves), the in-memory test adapters,
# and the composition root.
ALLOWED = {"ledger/bootstrap.py", "ledger/adapters/sqlite_log.py", "ledger/adapters/kafka_log.py", "ledger/adapters/sqlite_vault.py",
           "ledger/adapters/sqlite_scan.py", "ledger/adapters/memory.py"}


def _is_scheme_text(node: ast.AST) -> bool:
    return isinstance(node, ast.Constant) and isinstance(node.value, str) and (
        node.value.startswith("kafka") or "://" in node.value)


def choices_of_infrastructure(source: str) -> list[str]:
    """Where this source tests a log URL's scheme or constructs an adapter (line: what)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call):
            func = node.func
            if (isinstance(func, ast.Attribute) and func.attr in {"startswith", "split", "partition"}
                    and any(_is_scheme_text(a) for a in node.args)):
                found.append(f"{node.lineno}: .{func.attr}({ast.unparse(node.args[0])})")
            named = func.value if isinstance(func, ast.Attribute) else func  # Class.from_x(...) too
            for part in (func, named):
                name = part.attr if isinstance(part, ast.Attribute) else getattr(part, "id", None)
                if name in ADAPTERS:
                    found.append(f"{node.lineno}: constructs {name}")
                    break
        elif isinstance(node, ast.Compare):
            if any(isinstance(op, ast.In | ast.NotIn | ast.Eq | ast.NotEq) for op in node.ops) and any(
                    _is_scheme_text(n) for n in [node.left, *node.comparators]):
                found.append(f"{node.lineno}: {ast.unparse(node)}")
    return found


def test_the_checker_sees_each_way_of_choosing() -> None:
    source = '''
if settings.log_url.startswith("kafka://"): pass
if "kafka://" in url: pass
if url.split("://")[0] == "kafka": pass
log = SQLiteEventLog(path)
log = kafka_log.KafkaEventLog.from_settings(settings)
vault = SQLiteKeyVault(path, key)
'''
    assert sorted(int(line.split(":")[0]) for line in choices_of_infrastructure(source)) == [
        2, 3, 4, 4, 5, 6, 7]
    assert choices_of_infrastructure("log = bootstrap.open_log(settings)\nx = 'embedded'") == []


def test_only_the_bootstrap_chooses_the_infrastructure() -> None:
    files = [ROOT / "cli.py", *sorted((ROOT / "ledger").rglob("*.py")),
             *sorted((ROOT / "projections").rglob("*.py"))]
    assert len(files) > 40
    offences = {
        rel: found
        for path in files
        if (rel := path.relative_to(ROOT).as_posix()) not in ALLOWED
        and (found := choices_of_infrastructure(path.read_text(encoding="utf-8")))
    }
    assert offences == {}, "choose adapters in ledger/bootstrap.py only"
