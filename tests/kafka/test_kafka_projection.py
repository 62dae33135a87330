"""Projection workers on Kafka (SPEC §9): each worker owns partitions p % N == I, keeps an
offset per partition with its shard, and the shards together equal the embedded projection
of the same events."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

import cli
import projections
from ledger.adapters.kafka_log import KafkaSettings, partition_for
from ledger.app.service import Ledger
from ledger.demo.runner import run_demo
from ledger.domain.clock import FixedClock
from ledger.domain.timeutil import parse_timestamp
from projections.engine.workers import (
    Worker,
    WorkerReport,
    content_fingerprint,
    query_shards,
)
from tests.kafka.conftest import produce_raw, raw_messages
from tests.kafka.test_kafka_poison import poison

NOW = parse_timestamp("2026-11-01")


def run(*args: str) -> Result:
    return CliRunner().invoke(cli.main, list(args), catch_exceptions=False)


@dataclass(frozen=True)
class Twins:
    """Two copies of one freshly initialised data directory (same secrets, so the same
    pseudonyms; separate key vaults, so each log's retention sweep shreds its own keys)."""

    embedded: Path
    kafka: Path
    url: str

    def rebuilt_embedded(self, path: Path) -> Path:
        """The embedded log projected afresh (no retention decisions in it)."""
        with Ledger.open(self.embedded) as ledger:
            projections.project(ledger, path=path)
        return path


def demo(data: Path, log: str | None = None) -> None:
    with Ledger.open(data, log=log) as ledger:
        ledger.clock = FixedClock(NOW)
        run_demo(ledger, subjects=120, seed=5, years=2, monthly_sweeps=False)


@pytest.fixture(scope="module")
def embedded_twin(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A freshly initialised data directory, and a copy of it after the demo on the embedded
    log: made once, copied by each test (the demo is deterministic for the same secrets)."""
    root = tmp_path_factory.mktemp("twins")
    initialised, embedded = root / "initialised", root / "embedded"
    Ledger.init(initialised)
    shutil.copytree(initialised, embedded)
    demo(embedded)
    return initialised, embedded


@pytest.fixture
def twins(embedded_twin: tuple[Path, Path], tmp_path: Path, kafka_url: str) -> Twins:
    """The same demo history (publish, project, sweep) on the embedded log and on a
    4-partition topic of this test's own."""
    initialised, built = embedded_twin
    embedded, kafka = tmp_path / "embedded", tmp_path / "kafka"
    shutil.copytree(built, embedded)
    shutil.copytree(initialised, kafka)
    url = kafka_url.replace("partitions=3", "partitions=4")
    demo(kafka, url)
    return Twins(embedded, kafka, url)


@pytest.mark.slow  # each twin test produces a demo history to its own topic
def test_two_workers_together_equal_the_embedded_projection(twins: Twins, tmp_path: Path) -> None:
    data, url = twins.kafka, twins.url
    reports = []
    for worker in ("0/2", "1/2"):
        result = run("--data", str(data), "--log", url, "project", "--worker", worker, "--json")
        assert result.exit_code == 0, result.output
        reports.append(json.loads(result.stdout))
    assert [sorted(r["offsets"]) for r in reports] == [["0", "2"], ["1", "3"]]
    shards = sorted(data.glob("*.shard-*-of-2.duckdb"))
    assert len(shards) == 2
    embedded = run("kafka", "fingerprint", str(twins.rebuilt_embedded(tmp_path / "e.duckdb")))
    sharded = run("kafka", "fingerprint", str(data / "*.shard-*-of-2.duckdb"))
    assert embedded.exit_code == 0 and embedded.stdout == sharded.stdout
    # The demo's own projections, retention decisions of its sweep included, agree too.
    live_kafka = data / f"projections.{KafkaSettings.parse(url).topic}.duckdb"
    assert content_fingerprint([live_kafka]) == content_fingerprint(
        [twins.embedded / "projections.duckdb"])
    counted = run("--data", str(data), "query", "--shards", str(data / "*.shard-*.duckdb"),
                  "SELECT count(*) AS n, count(DISTINCT subject) AS s FROM events", "--json")
    alone = run("--data", str(twins.embedded), "query",
                "SELECT count(*) AS n, count(DISTINCT subject) AS s FROM events", "--json")
    assert json.loads(counted.stdout) == json.loads(alone.stdout)
    # Each subject lives in one shard only.
    _, rows = query_shards(shards, "SELECT count(*) FROM (SELECT subject FROM activity_clock "
                                   "GROUP BY controller, subject HAVING count(*) > 1)")
    assert rows == [(0,)]


@pytest.mark.slow  # each twin test produces a demo history to its own topic
def test_a_worker_resumes_at_its_offsets(twins: Twins, tmp_path: Path) -> None:
    worker = Worker(0, 2)
    with Ledger.open(twins.kafka, log=twins.url) as ledger:
        first = projections.project(ledger, worker=worker)
        ledger.clock = FixedClock(NOW + 86_400_000_000)
        more = [{"type": "LoggedIn", "event_id": f"00000000-0000-4000-8000-{i:012d}",
                 "controller": "cowrite", "occurred_at": "2026-11-01T10:00:00Z", "source": "app",
                 "actor": "subject", "subject": {"account": f"cw-new-{i}"}, "app": "cowrite",
                 "method": "password"} for i in range(40)]
        assert ledger.record_many(more).accepted == 40
        mine = sum(worker.owns(partition_for(ledger.subject_id("cowrite", account=f"cw-new-{i}")
                                             .encode(), 4)) for i in range(40))
        again = projections.project(ledger, worker=worker)
        assert again.events == mine  # only what arrived since its stored offsets
        assert isinstance(again, WorkerReport) and isinstance(first, WorkerReport)
        assert all(again.offsets[p] >= first.offsets[p] for p in first.offsets)
        assert projections.project(ledger, worker=worker).events == 0
        fresh = projections.project(ledger, worker=worker, path=tmp_path / "fresh.duckdb")
        assert fresh.events == first.events + mine
    resumed = next(twins.kafka.glob("*.shard-0-of-2.duckdb"))
    assert content_fingerprint([resumed]) == content_fingerprint([tmp_path / "fresh.duckdb"])


@pytest.mark.slow  # each twin test produces a demo history to its own topic
def test_an_event_produced_twice_is_projected_once(twins: Twins, kafka_bootstrap: str,
                                                   tmp_path: Path) -> None:
    with Ledger.open(twins.kafka, log=twins.url) as ledger:
        before = projections.project(ledger, path=tmp_path / "p.duckdb")
        topic = KafkaSettings.parse(twins.url).topic
        fp = content_fingerprint([tmp_path / "p.duckdb"])
        # A second copy of a message, as a racing second writer would leave it.
        original = raw_messages(kafka_bootstrap, topic)[7]
        produce_raw(kafka_bootstrap, topic, [{"key": original.key, "value": original.value,
                                              "headers": original.headers,
                                              "partition": original.partition}])
        resumed = projections.project(ledger, path=tmp_path / "p.duckdb")  # checks its events
        rebuilt = projections.project(ledger, path=tmp_path / "q.duckdb")  # skips within the run
    assert isinstance(resumed, WorkerReport)
    assert (resumed.events, resumed.duplicates) == (1, 1)
    assert rebuilt.events == before.events  # the reader skipped the copy within its run
    assert content_fingerprint([tmp_path / "p.duckdb"]) == fp == content_fingerprint([tmp_path / "q.duckdb"])


@pytest.mark.slow  # each twin test produces a demo history to its own topic
def test_poison_leaves_the_projection_exact(twins: Twins, kafka_bootstrap: str, tmp_path: Path) -> None:
    settings = KafkaSettings.parse(twins.url)
    key = raw_messages(kafka_bootstrap, settings.topic)[0].key  # a subject with good records
    produce_raw(kafka_bootstrap, settings.topic,
                [{"key": key, "partition": 1, **m} for m in poison(key.decode()).values()])
    with Ledger.open(twins.kafka, log=twins.url) as ledger:
        report = projections.project(ledger, worker=Worker(1, 2), path=tmp_path / "s1.duckdb")
        projections.project(ledger, worker=Worker(0, 2), path=tmp_path / "s0.duckdb")
    letters = raw_messages(kafka_bootstrap, settings.rejected_topic)
    assert report.errors == 0 and len(letters) == len(poison("x"))
    shards = [tmp_path / "s0.duckdb", tmp_path / "s1.duckdb"]
    assert content_fingerprint(shards) == content_fingerprint(
        [twins.rebuilt_embedded(tmp_path / "e.duckdb")])
    assert query_shards(shards, "SELECT count(*) FROM projection_errors")[1] == [(0,)]


@pytest.mark.slow  # each twin test produces a demo history to its own topic
def test_replay_as_of_on_kafka_equals_the_embedded_replay(twins: Twins, tmp_path: Path) -> None:
    as_of = parse_timestamp("2025-12-31")
    with Ledger.open(twins.embedded) as ledger:
        projections.replay(ledger, as_of, tmp_path / "embedded.duckdb")
    with Ledger.open(twins.kafka, log=twins.url) as ledger:
        projections.replay(ledger, as_of, tmp_path / "kafka.duckdb")
    assert content_fingerprint([tmp_path / "kafka.duckdb"]) == content_fingerprint(
        [tmp_path / "embedded.duckdb"])


def test_workers_need_a_partitioned_log(tmp_path: Path) -> None:
    data = tmp_path / "d"
    Ledger.init(data)
    result = run("--data", str(data), "project", "--worker", "1/2")
    assert result.exit_code == 2 and "only a partitioned log" in result.stderr
    bad = run("--data", str(data), "project", "--worker", "2/2")
    assert bad.exit_code == 2 and "0 <= I < N" in bad.stderr


@pytest.mark.slow  # each twin test produces a demo history to its own topic
def test_row14_a_worker_rebuilds_its_shard_into_a_new_file(twins: Twins) -> None:
    """Issue 9 row 14 on Kafka: `project --worker I/N --rebuild` builds a new shard file and
    renames it in when complete, as the embedded rebuild does; the content is the same."""
    data, url = twins.kafka, twins.url
    first = run("--data", str(data), "--log", url, "project", "--worker", "1/2")
    assert first.exit_code == 0, first.output
    shard = next(data.glob("*.shard-1-of-2.duckdb"))
    before, inode = content_fingerprint([shard]), shard.stat().st_ino
    again = run("--data", str(data), "--log", url, "project", "--worker", "1/2", "--rebuild")
    assert again.exit_code == 0, again.output
    assert shard.stat().st_ino != inode and content_fingerprint([shard]) == before
    assert not [p for p in data.iterdir() if ".rebuild-" in p.name]
