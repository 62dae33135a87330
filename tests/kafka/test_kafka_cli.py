"""End to end on Kafka: ``ledger --log kafka://… publish`` of demo events, the same ledger as
the embedded log; a broker that is down or stops answering."""

from __future__ import annotations

import json
import uuid
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

import cli
import ledger.app.service
from ledger.adapters.kafka_log import KafkaUnavailable
from ledger.app.service import Ledger
from ledger.demo.history import write_jsonl
from ledger.domain.errors import LedgerError
from tests.kafka.conftest import TIMEOUT
from tests.kafka_broker import TansuBroker, free_port

NOW = "2026-01-02T08:00:00Z"


def run(*args: str, input: str | None = None) -> Result:
    return CliRunner().invoke(cli.main, list(args), input=input, catch_exceptions=False)


def without_pii(event: Any) -> tuple:
    """An event's identity minus the encrypted blob (AES-GCM nonces differ per append)."""
    return (event.event_id, event.type, event.subject, event.occurred_at, event.recorded_at,
            json.dumps(event.body, sort_keys=True, default=str), event.pii is None)


@pytest.fixture
def demo_file(tmp_path: Path) -> tuple[Path, int]:
    path = tmp_path / "demo.jsonl"
    count = write_jsonl(path, 40, 11, start=date(2025, 1, 1), end=date(2026, 1, 1))
    return path, count


def test_publish_demo_events_to_kafka_as_to_the_embedded_log(
    tmp_path: Path, kafka_url: str, demo_file: tuple[Path, int]
) -> None:
    path, count = demo_file
    data = str(tmp_path / "d")
    assert run("--data", data, "init").exit_code == 0
    made = run("--log", kafka_url, "kafka", "init", "--partitions", "3", "--json")
    assert made.exit_code == 0, made.output
    assert json.loads(made.stdout)["partitions"] == 3
    kafka = ("--data", data, "--log", kafka_url, "--now", NOW)
    first = run(*kafka, "publish", str(path), "--json")
    assert first.exit_code == 0, first.output
    assert json.loads(first.stdout) == {"accepted": count, "duplicates": 0, "rejected": 0, "conflicts": 0}
    again = run(*kafka, "publish", str(path), "--json")
    assert json.loads(again.stdout) == {"accepted": 0, "duplicates": count, "rejected": 0, "conflicts": 0}
    embedded = run("--data", data, "--now", NOW, "publish", str(path), "--json")
    assert json.loads(embedded.stdout)["accepted"] == count

    with Ledger.open(data, log=kafka_url) as on_kafka, Ledger.open(data) as on_disk:
        from_kafka = [e for _, e in on_kafka.events()]
        from_disk = [e for _, e in on_disk.events()]
        assert sorted(map(without_pii, from_kafka)) == sorted(map(without_pii, from_disk))
        subjects = {e.subject for e in from_disk}
        for s in list(subjects)[:10]:  # each subject's events in the same order in both logs
            assert [e.event_id for e in from_kafka if e.subject == s] == [
                e.event_id for e in from_disk if e.subject == s]
        anna = next(e for e in from_kafka if e.pii is not None)
        assert on_kafka.personal_data(anna)  # decryptable: the same vault serves both logs
    heads = run("--log", kafka_url, "kafka", "heads", "--json")
    assert [h["partition"] for h in json.loads(heads.stdout)] == [0, 1, 2]


def test_kafka_init_refuses_to_repartition(kafka_url: str) -> None:
    assert run("--log", kafka_url, "kafka", "init", "--partitions", "2").exit_code == 0
    again = run("--log", kafka_url, "kafka", "init", "--partitions", "2")
    assert again.exit_code == 0 and "Already present" in again.stdout
    other = run("--log", kafka_url, "kafka", "init", "--partitions", "4")
    assert other.exit_code == 2
    assert "already has 2 partitions, not 4" in other.stderr


def test_kafka_commands_need_a_kafka_log() -> None:
    result = run("--log", "embedded", "kafka", "heads")
    assert result.exit_code == 2 and "needs --log kafka://" in result.stderr


@pytest.mark.slow  # waits out the client's timeouts by design
def test_a_broker_that_is_down_is_one_line_and_exit_2(tmp_path: Path) -> None:
    data = str(tmp_path / "d")
    run("--data", data, "init")
    url = f"kafka://127.0.0.1:{free_port()}/ledger.events?timeout=2"
    line = json.dumps({"type": "LoggedIn", "event_id": str(uuid.uuid4()), "controller": "cowrite",
                       "occurred_at": "2026-01-01T10:00:00Z", "source": "web", "actor": "subject",
                       "subject": {"account": "cw-1"}, "app": "cowrite", "method": "password"})
    result = run("--data", data, "--log", url, "--now", NOW, "publish", "-", input=line + "\n")
    assert result.exit_code == 2
    assert result.stdout == ""  # no counts: nothing is reported accepted
    [message] = result.stderr.strip().splitlines()
    assert message.startswith(f"Error: Kafka {url[8:].split('/')[0]}: ")
    assert "Traceback" not in result.output


@pytest.mark.slow  # waits out the client's timeouts by design
def test_a_broker_that_stops_answering_mid_publish(
    tmp_path: Path, demo_file: tuple[Path, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first append is acknowledged, then the broker freezes: publishing fails with one
    clear error, reports as acknowledged only what the broker acknowledged, and those
    events are all in the topic once the broker answers again."""
    path, count = demo_file
    monkeypatch.setattr(ledger.app.service, "CHUNK", 100)  # several appends from a small file
    monkeypatch.setattr(ledger.app.service, "PACKAGE", 100)
    data = tmp_path / "d"
    Ledger.init(data)
    with TansuBroker.start() as broker:
        url = f"kafka://{broker.bootstrap}/ledger.events?partitions=2&timeout=2"
        with Ledger.open(data, log=url, now=NOW) as led:
            append = led.log.append
            appended: list[str] = []

            def append_then_freeze(records: Any) -> Any:
                positions = append(records)
                appended.extend(r.event_id for r, p in zip(records, positions, strict=True) if p)
                broker.pause()
                return positions

            monkeypatch.setattr(led.log, "append", append_then_freeze)
            with open(path, "rb") as f, pytest.raises(KafkaUnavailable) as failure:
                led.publish(f, workers=1)
            broker.resume()
            message = str(failure.value)
            assert "\n" not in message and "append to ledger.events failed" in message
            assert f"{len(appended)} records acknowledged before this batch" in message
            assert "none reported accepted" in message
        assert 0 < len(appended) < count
        with Ledger.open(data, log=f"kafka://{broker.bootstrap}/ledger.events?timeout={TIMEOUT}") as led:
            stored = {r.event_id for r in led.log.read()}
        assert set(appended) <= stored  # every acknowledged event is there


@pytest.mark.slow  # waits out the client's timeouts by design
def test_a_frozen_broker_times_out_with_one_line(tmp_path: Path) -> None:
    data = str(tmp_path / "d")
    run("--data", data, "init")
    with TansuBroker.start() as broker:
        broker.pause()
        url = f"kafka://{broker.bootstrap}/ledger.events?timeout=1"
        result = run("--data", data, "--log", url, "--now", NOW, "kafka", "heads")
        broker.resume()
    assert result.exit_code == 2
    assert len(result.stderr.strip().splitlines()) == 1 and result.stderr.startswith("Error: Kafka")


def test_kafka_verify_checks_each_partition_and_names_a_break(kafka_url: str) -> None:
    from ledger.adapters.kafka_log import KafkaEventLog, KafkaSettings, partition_for
    from tests.integration.log_contract import pending

    a = KafkaEventLog(KafkaSettings.parse(kafka_url))
    b = KafkaEventLog(KafkaSettings.parse(kafka_url))
    try:
        a.append([pending(1, subject=f"s{i}") for i in range(9)])
        ok = run("--log", kafka_url, "kafka", "verify", "--json")
        assert ok.exit_code == 0 and all(r["ok"] for r in json.loads(ok.stdout))
        audited = run("--log", kafka_url, "audit", "verify", "--json")
        assert audited.exit_code == 0, audited.output
        assert json.loads(audited.stdout)["ok"] and json.loads(audited.stdout)["records"] == 9
        b.contains([])  # b learns the tails now; a appends again; b's next record is stale
        a.append([pending(2, subject="s0")])
        with pytest.raises(LedgerError, match="another writer"):
            b.append([pending(3, subject="s0")])
    finally:
        a.close()
        b.close()
    broken = run("--log", kafka_url, "kafka", "verify", "--json")
    assert broken.exit_code == 1
    rows = {r["partition"]: r for r in json.loads(broken.stdout)}
    p = partition_for(b"s0", 3)
    stale = sum(partition_for(f"s{i}".encode(), 3) == p for i in range(9)) + 1
    # Two records chain to the same predecessor: the verifier names the first of the pair
    # that the chain does not continue from (one of the two racing appends).
    assert rows[p]["first_bad_offset"] in (stale - 1, stale) and rows[p]["kind"] == "forged"
    assert all(r["ok"] for q, r in rows.items() if q != p)
    # `ledger audit verify` on a Kafka log checks the same per-partition chains.
    audited = run("--log", kafka_url, "audit", "verify", "--json")
    assert audited.exit_code == 1
    report = json.loads(audited.stdout)
    assert not report["ok"] and report["reason"].startswith(f"partition {p} offset")
    assert "forged" in report["reason"]
    assert run("--log", kafka_url, "audit", "verify", "--digest", "x.json").exit_code == 2
