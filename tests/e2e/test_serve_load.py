"""``ledger serve`` under load (slow tier): the HTTP answers equal ``Ledger.permits`` over a
whole demo population; read-your-writes 1,000 times; 16 permit clients with 4 publishers and
a sweep (no 5xx, exactly the acknowledged events in the log, the log verifies); SIGKILL during
a publish load, 10 trials (every acknowledged event survives, re-sending gives duplicates)."""

from __future__ import annotations

import random
import threading
import time
from pathlib import Path
from typing import Any, cast

import httpx
import pytest
from click.testing import CliRunner

import cli
from ledger.app.decisions import controller_policies
from ledger.app.permits import CHANNEL_PURPOSES, PermitAnswer, PermitQuestion, permits_many
from ledger.app.service import Ledger
from ledger.domain.subjects import SubjectSelector
from ledger.domain.vocabulary import MARKETING_CHANNELS
from tests.conftest import DEMO_NOW, make_event
from tests.e2e.serving import Server, auth, copy_data, create_token
from tests.e2e.test_serve import read_your_writes

# `load`: minutes each on two cores while every permits answer catches the projections up
# (issue 11); run by `make test-load`, outside `make test`'s 15-minute budget.
pytestmark = [pytest.mark.slow, pytest.mark.load]

NOW = "2026-11-02T00:00:00Z"


def producer_ids(data: Path) -> set[str]:
    with Ledger.open(data) as ledger:
        return {e.event_id for _, e in ledger.events() if e.type in PRODUCER_TYPES}


PRODUCER_TYPES = {"SubjectRegistered", "LoggedIn", "NewsletterSubscribed", "Unsubscribed",
                  "ConsentGiven", "ServiceUsed"}


def audit_verify(data: Path) -> None:
    result = CliRunner().invoke(cli.main, ["--data", str(data), "audit", "verify"])
    assert result.exit_code == 0, result.output


def test_http_permits_equal_the_library_over_the_demo_population(demo_data: Path,
                                                                 tmp_path: Path) -> None:
    data = copy_data(demo_data, tmp_path / "ledger-data")
    questions: list[dict[str, Any]] = []
    asked: list[PermitQuestion] = []
    with Ledger.open(data, now=DEMO_NOW) as ledger:
        subjects = sorted({(e.controller, e.subject) for _, e in ledger.events()})
        for controller, subject in subjects:
            policy = controller_policies(ledger, controller)[controller]
            for purpose in sorted(policy.purposes):
                channels = [None, *sorted(MARKETING_CHANNELS)] if purpose in CHANNEL_PURPOSES \
                    else [None]
                for channel in channels:
                    q: dict[str, Any] = {"controller": controller, "purpose": purpose,
                                         "subject": {"id": subject}}
                    if channel is not None:
                        q["channel"] = channel
                    questions.append(q)
                    asked.append(PermitQuestion(purpose, SubjectSelector(
                        subject_id=subject, controller=controller), channel))
        # The whole population from one read model; every 25th also through Ledger.permits
        # (one catch-up per question: too slow for all of them), which must agree.
        answers = permits_many(ledger, asked)
        expected = [cast(PermitAnswer, a).as_dict() for a in answers]
        for pq, e in list(zip(asked, expected, strict=True))[::25]:
            assert ledger.permits(pq.purpose, pq.who, channel=pq.channel).as_dict() == e
    token = create_token(data, "app", "permits")
    server = Server(data, DEMO_NOW).start()
    try:
        got: list[dict[str, Any]] = []
        with httpx.Client(base_url=server.url, timeout=600) as client:
            for i in range(0, len(questions), 1000):
                r = client.post("/v1/permits", json={"questions": questions[i:i + 1000]},
                                headers=auth(token))
                assert r.status_code == 200
                got.extend(r.json()["answers"])
    finally:
        server.stop()
    assert len(got) == len(expected) > 500
    for g, e in zip(got, expected, strict=True):
        assert (g["permitted"], g["reason"], g["subject"], g["purpose"], g["channel"],
                g["as_of"]) == (e["permitted"], e["reason"], e["subject"], e["purpose"],
                                e["channel"], e["as_of"])
        assert g["evidence"] == (None if e["evidence"] is None else
                                 {k: e["evidence"][k] for k in ("event_id", "type", "at")})


def test_read_your_writes_1000_times(initialised: Path, tmp_path: Path) -> None:
    data = copy_data(initialised, tmp_path / "ledger-data")
    token = create_token(data, "app", "publish,permits")
    server = Server(data, None).start()
    try:
        with httpx.Client(base_url=server.url, timeout=60) as client:
            read_your_writes(client, token, "loop.person@example.org", 1000)
    finally:
        server.stop()


def publisher(url: str, token: str, stop: threading.Event, acknowledged: dict[str, Any],
              lock: threading.Lock, tag: int, batch: int = 20) -> None:
    with httpx.Client(base_url=url, timeout=60) as client:
        n = 0
        while not stop.is_set():
            events = [make_event("LoggedIn", subject={"email": f"p{tag}-{n}-{i}@example.org"},
                                 occurred_at="2026-10-01T09:00:00Z") for i in range(batch)]
            n += 1
            try:
                r = client.post("/v1/events", json=events, headers=auth(token))
            except httpx.HTTPError:
                return  # the server went away (the SIGKILL test)
            if r.status_code == 200:
                statuses = {x["status"] for x in r.json()["results"]}
                assert statuses <= {"accepted", "duplicate"}, r.text[:300]
                with lock:
                    acknowledged.update((e["event_id"], e) for e in events)
            else:
                assert r.status_code < 500, r.text


def test_16_permit_clients_4_publishers_and_a_sweep(demo_data: Path, tmp_path: Path) -> None:
    data = copy_data(demo_data, tmp_path / "ledger-data")
    before = producer_ids(data)
    token = create_token(data, "app", "publish,permits,sweep,decisions")
    with Ledger.open(data) as ledger:
        subjects = sorted({(e.controller, e.subject) for _, e in ledger.events()})[:40]
    server = Server(data, None).start()
    stop = threading.Event()
    acknowledged: dict[str, Any] = {}
    lock = threading.Lock()
    statuses: list[int] = []
    errors: list[BaseException] = []

    def asker(seed: int) -> None:
        rng = random.Random(seed)
        try:
            with httpx.Client(base_url=server.url, timeout=60) as client:
                while not stop.is_set():
                    controller, subject = rng.choice(subjects)
                    r = client.get("/v1/permits", params={"controller": controller,
                                                          "subject": subject,
                                                          "purpose": "service"},
                                   headers=auth(token))
                    statuses.append(r.status_code)
        except BaseException as e:  # noqa: BLE001 - reported by the assertion below
            errors.append(e)

    def sweeper() -> None:
        try:
            with httpx.Client(base_url=server.url, timeout=120) as client:
                r = client.post("/v1/sweep", json={"dry_run": False}, headers=auth(token))
                statuses.append(r.status_code)
        except BaseException as e:  # noqa: BLE001 - reported by the assertion below
            errors.append(e)

    def guarded_publisher(tag: int) -> None:
        try:
            publisher(server.url, token, stop, acknowledged, lock, tag)
        except BaseException as e:  # noqa: BLE001 - reported by the assertion below
            errors.append(e)

    threads = [threading.Thread(target=asker, args=(i,)) for i in range(16)]
    threads += [threading.Thread(target=guarded_publisher, args=(i,)) for i in range(4)]
    threads.append(threading.Thread(target=sweeper))
    try:
        for t in threads:
            t.start()
        time.sleep(20)
        stop.set()
        for t in threads:
            t.join(120)
    finally:
        stop.set()
        server.stop()
    assert not errors, errors[:3]
    assert statuses and all(s == 200 for s in statuses), sorted(set(statuses))
    assert acknowledged
    assert producer_ids(data) - before == set(acknowledged)
    audit_verify(data)


def test_sigkill_during_publish_keeps_every_acknowledged_event(initialised: Path,
                                                               tmp_path: Path) -> None:
    data = copy_data(initialised, tmp_path / "ledger-data")
    token = create_token(data, "app", "publish")
    acknowledged: dict[str, Any] = {}
    lock = threading.Lock()
    rng = random.Random(11)
    for trial in range(10):
        server = Server(data, None).start()
        stop = threading.Event()
        mine: dict[str, Any] = {}

        def load(tag: int, url: str = server.url, stop: threading.Event = stop,
                 mine: dict[str, Any] = mine, base: int = trial * 10) -> None:
            publisher(url, token, stop, mine, lock, base + tag)

        threads = [threading.Thread(target=load, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        time.sleep(rng.uniform(0.5, 2.5))
        server.kill()
        stop.set()
        for t in threads:
            t.join(60)
        acknowledged.update(mine)
    assert acknowledged
    assert set(acknowledged) <= producer_ids(data)
    audit_verify(data)
    # A restart catches up by itself, and re-sending the acknowledged events: only duplicates.
    server = Server(data, None).start()
    try:
        health = httpx.get(f"{server.url}/v1/health").json()
        assert health["projected_position"] == health["log_position"]
        events = list(acknowledged.values())
        with httpx.Client(base_url=server.url, timeout=120) as client:
            for i in range(0, len(events), 5000):
                r = client.post("/v1/events", json=events[i:i + 5000], headers=auth(token))
                assert r.status_code == 200
                assert {x["status"] for x in r.json()["results"]} == {"duplicate"}
    finally:
        server.stop()
