"""``ledger serve`` through a real uvicorn on a free loopback port and a real HTTP client:
every endpoint and status, tokens, a table of hostile requests (each a clear 4xx, the server
still serving), read-your-writes, and an access log without natural identifiers."""

from __future__ import annotations

import json
import socket
import stat
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

import cli
from tests.conftest import DEMO_NOW, make_event
from tests.e2e.serving import Server, auth, copy_data, create_token

NOW = "2026-11-02T00:00:00Z"  # after the demo's clock: appends stay ahead of the log
EMAIL = "serve.person@example.org"
SCOPES = "publish,permits,export,decisions,sweep"


class Env:
    def __init__(self, server: Server, token: str, narrow: str, client: httpx.Client) -> None:
        self.server, self.token, self.narrow, self.client = server, token, narrow, client

    def post(self, path: str, body: Any, token: str | None = None) -> httpx.Response:
        return self.client.post(path, json=body, headers=auth(token or self.token))

    def get(self, path: str, token: str | None = None, **params: Any) -> httpx.Response:
        return self.client.get(path, params=params, headers=auth(token or self.token))


@pytest.fixture(scope="module")
def env(demo_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    data = copy_data(demo_data, tmp_path_factory.mktemp("serve") / "ledger-data")
    token = create_token(data, "app", SCOPES)
    narrow = create_token(data, "reader", "permits")
    server = Server(data, NOW).start()
    try:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            yield Env(server, token, narrow, client)
    finally:
        server.stop()


# --- tokens (CLI) ---------------------------------------------------------------------------


def test_tokens_are_stored_as_hashes_in_a_private_file(env: Env) -> None:
    path = env.server.data_dir / "tokens.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    text = path.read_text()
    assert env.token not in text and env.narrow not in text
    listed = CliRunner().invoke(cli.main, ["--data", str(env.server.data_dir), "token", "list",
                                           "--json"])
    assert listed.exit_code == 0
    assert {t["name"]: t["scopes"] for t in json.loads(listed.output)} == {
        "app": SCOPES.split(","), "reader": ["permits"]}


def test_token_cli_refuses_bad_input(tmp_path: Path, initialised: Path) -> None:
    def run(*args: str) -> Any:
        return CliRunner().invoke(cli.main, ["--data", str(initialised), "token", *args])

    assert run("create", "x", "--scope", "nope").exit_code == 2
    assert run("create", "bad name!", "--scope", "permits").exit_code == 2
    assert run("revoke", "no-such-token").exit_code == 2


def test_a_revoked_token_is_refused(env: Env) -> None:
    token = create_token(env.server.data_dir, "temp", "permits")
    assert env.get("/v1/decisions", token).status_code == 403
    result = CliRunner().invoke(cli.main, ["--data", str(env.server.data_dir), "token",
                                           "revoke", "temp"])
    assert result.exit_code == 0
    assert env.get("/v1/decisions", token).status_code == 401


# --- the endpoints --------------------------------------------------------------------------


def test_health_metrics_and_openapi_need_no_token(env: Env) -> None:
    health = env.client.get("/v1/health").json()
    assert health["status"] == "ok" and health["log_position"] >= health["projected_position"] > 0
    metrics = env.client.get("/metrics")
    assert metrics.status_code == 200 and "ledger_http_requests_total" in metrics.text
    assert "ledger_projection_lag" in metrics.text
    spec = env.client.get("/openapi.json").json()
    assert {"/v1/events", "/v1/permits", "/v1/sweep", "/v1/decisions"} <= set(spec["paths"])


def test_publish_then_permits_by_email_and_by_pseudonym(env: Env) -> None:
    events = [make_event("SubjectRegistered", subject={"email": EMAIL},
                         occurred_at="2026-10-01T09:00:00Z"),
              make_event("NewsletterSubscribed", subject={"email": EMAIL},
                         occurred_at="2026-10-02T09:00:00Z")]
    r = env.post("/v1/events", events)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["accepted"] == 2 and body["duplicates"] == 0 and body["rejected"] == 0
    assert [x["status"] for x in body["results"]] == ["accepted", "accepted"]
    assert all(x["position"] > 0 for x in body["results"])
    again = env.post("/v1/events", events).json()
    assert again["duplicates"] == 2 and [x["status"] for x in again["results"]] == ["duplicate"] * 2
    question = {"controller": "cowrite", "purpose": "newsletter", "channel": "email",
                "subject": {"email": EMAIL}}
    answer = env.post("/v1/permits", question).json()
    assert answer["permitted"] is True
    assert answer["evidence"]["type"] == "NewsletterSubscribed"
    assert answer["policy"]["name"] == "cowrite" and len(answer["policy"]["hash"]) == 64
    by_id = env.get("/v1/permits", controller="cowrite", subject=answer["subject"],
                    purpose="newsletter", channel="email").json()
    assert by_id == answer
    batch = env.post("/v1/permits", {"questions": [question, {**question, "controller": "nope"},
                                                   {**question, "subject": {"id": "0" * 64}}]})
    answers = batch.json()["answers"]
    assert answers[0] == answer and "error" in answers[1] and answers[2]["status"] == 404


def test_ndjson_and_per_event_results(env: Env) -> None:
    good = make_event("LoggedIn", subject={"email": EMAIL}, occurred_at="2026-10-03T09:00:00Z")
    conflicting = {**good, "app": "coegi"}  # the same id, other content
    lines = "\n".join([json.dumps(good), "{not json", json.dumps({"type": "LoggedIn"})]) + "\n"
    r = env.client.post("/v1/events", content=lines.encode(),
                        headers={**auth(env.token), "Content-Type": "application/x-ndjson"})
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert [x["status"] for x in results] == ["accepted", "rejected", "rejected"]
    assert [x["index"] for x in results] == [0, 1, 2]
    assert all("reason" in x for x in results[1:])
    conflict = env.post("/v1/events", [conflicting]).json()
    assert conflict["results"][0]["status"] == "conflict" and conflict["rejected"] == 1


def test_export_decisions_and_sweep(env: Env) -> None:
    env.post("/v1/events", [make_event("SubjectRegistered", subject={"email": EMAIL},
                                       occurred_at="2026-10-01T09:00:00Z")])
    extract = env.post("/v1/subjects/export", {"controller": "cowrite",
                                               "subject": {"email": EMAIL}})
    assert extract.status_code == 200, extract.text
    assert extract.json()  # the register extract of `ledger subject export`
    assert env.post("/v1/subjects/export", {"controller": "cowrite",
                                            "subject": {"id": "f" * 64}}).status_code == 404
    decisions = env.get("/v1/decisions", limit=3).json()["decisions"]
    assert 0 < len(decisions) <= 3 and {"subject", "action", "policy_hash"} <= decisions[0].keys()
    only = env.get("/v1/decisions", action="keep", controller="coegi").json()["decisions"]
    assert only and {d["action"] for d in only} == {"keep"} and {d["controller"] for d in only} == {"coegi"}


@pytest.mark.slow
def test_sweep_dry_run_and_real(env: Env) -> None:
    dry = env.post("/v1/sweep", {"dry_run": True})
    assert dry.status_code == 200 and dry.json()["dry_run"] is True
    real = env.post("/v1/sweep", {"dry_run": False})
    assert real.status_code == 200 and real.json()["dry_run"] is False


@pytest.mark.parametrize("method, path, body, scope_needed", [
    ("POST", "/v1/events", [], "publish"),
    ("POST", "/v1/subjects/export", {}, "export"),
    ("GET", "/v1/decisions", None, "decisions"),
    ("POST", "/v1/sweep", {"dry_run": True}, "sweep"),
])
def test_401_without_a_token_and_403_without_the_scope(env: Env, method: str, path: str,
                                                       body: Any, scope_needed: str) -> None:
    bare = env.client.request(method, path, json=body)
    assert bare.status_code == 401 and "error" in bare.json()
    wrong = env.client.request(method, path, json=body, headers=auth("lt_not-a-token"))
    assert wrong.status_code == 401
    narrow = env.client.request(method, path, json=body, headers=auth(env.narrow))
    assert narrow.status_code == 403 and scope_needed in narrow.json()["error"]


def test_unknown_path_is_404_json(env: Env) -> None:
    r = env.client.get("/v1/nothing-here")
    assert r.status_code == 404 and "error" in r.json()


# --- hostile requests -----------------------------------------------------------------------

Q = {"controller": "cowrite", "purpose": "newsletter", "subject": {"email": EMAIL}}
JSON = {"Content-Type": "application/json"}


def deep(n: int) -> str:
    return "[" * n + "]" * n


HOSTILE: list[tuple[str, str, str, bytes, dict[str, str], int]] = [
    # (name, method, path, body, extra headers, status)
    ("events: not JSON", "POST", "/v1/events", b"{nope", JSON, 400),
    ("events: an object, not an array", "POST", "/v1/events", b'{"a": 1}', JSON, 400),
    ("events: non-UTF-8", "POST", "/v1/events", b'["\xff\xfe"]', JSON, 400),
    ("events: NDJSON non-UTF-8", "POST", "/v1/events", b'\xff\xfe\n',
     {"Content-Type": "application/x-ndjson"}, 400),
    ("events: deep JSON", "POST", "/v1/events", deep(100_000).encode(), JSON, 400),
    ("events: nested 40 deep", "POST", "/v1/events", deep(40).encode(), JSON, 400),
    ("events: text/plain", "POST", "/v1/events", b"[]", {"Content-Type": "text/plain"}, 415),
    ("events: no content type", "POST", "/v1/events", b"[]", {"Content-Type": ""}, 415),
    ("events: form encoded", "POST", "/v1/events", b"a=1",
     {"Content-Type": "application/x-www-form-urlencoded"}, 415),
    ("events: 10,001 events", "POST", "/v1/events", json.dumps([{}] * 10_001).encode(), JSON, 413),
    ("events: declared 17 MiB", "POST", "/v1/events", b"[]",
     {**JSON, "Content-Length": str(17 * 1024 * 1024)}, 413),
    ("events: 17 MiB body", "POST", "/v1/events", b"[" + b" " * (17 * 1024 * 1024) + b"]",
     JSON, 413),
    ("events: NaN literal", "POST", "/v1/events", b"[NaN]", JSON, 200),  # one rejected item
    ("permits: not JSON", "POST", "/v1/permits", b"[[[", JSON, 400),
    ("permits: an array", "POST", "/v1/permits", b"[]", JSON, 400),
    ("permits: a number", "POST", "/v1/permits", b"42", JSON, 400),
    ("permits: unknown field", "POST", "/v1/permits", json.dumps({**Q, "x": 1}).encode(), JSON, 400),
    ("permits: controller a number", "POST", "/v1/permits",
     json.dumps({**Q, "controller": 5}).encode(), JSON, 400),
    ("permits: unknown controller", "POST", "/v1/permits",
     json.dumps({**Q, "controller": "nope"}).encode(), JSON, 400),
    ("permits: unknown purpose", "POST", "/v1/permits",
     json.dumps({**Q, "purpose": "mining"}).encode(), JSON, 400),
    ("permits: unknown channel", "POST", "/v1/permits",
     json.dumps({**Q, "channel": "pigeon"}).encode(), JSON, 400),
    ("permits: subject a string", "POST", "/v1/permits",
     json.dumps({**Q, "subject": EMAIL}).encode(), JSON, 400),
    ("permits: subject with two keys", "POST", "/v1/permits",
     json.dumps({**Q, "subject": {"email": EMAIL, "id": "x"}}).encode(), JSON, 400),
    ("permits: subject kind unknown", "POST", "/v1/permits",
     json.dumps({**Q, "subject": {"phone": "1"}}).encode(), JSON, 400),
    ("permits: huge purpose", "POST", "/v1/permits",
     json.dumps({**Q, "purpose": "p" * 100_000}).encode(), JSON, 400),
    ("permits: bad as_of", "POST", "/v1/permits", json.dumps({**Q, "as_of": "yesterday"}).encode(),
     JSON, 400),
    ("permits: unknown subject", "POST", "/v1/permits",
     json.dumps({**Q, "subject": {"id": "a" * 64}}).encode(), JSON, 404),
    ("permits: 1,001 questions", "POST", "/v1/permits",
     json.dumps({"questions": [Q] * 1001}).encode(), JSON, 413),
    ("permits: questions not a list", "POST", "/v1/permits", b'{"questions": 3}', JSON, 400),
    ("permits: wrong content type", "POST", "/v1/permits", json.dumps(Q).encode(),
     {"Content-Type": "text/xml"}, 415),
    ("permits GET: missing subject", "GET", "/v1/permits?controller=cowrite&purpose=service",
     b"", {}, 400),
    ("decisions: limit not a number", "GET", "/v1/decisions?limit=ten", b"", {}, 400),
    ("decisions: negative limit", "GET", "/v1/decisions?limit=-1", b"", {}, 400),
    ("sweep: dry_run a string", "POST", "/v1/sweep", b'{"dry_run": "yes"}', JSON, 400),
    ("sweep: not an object", "POST", "/v1/sweep", b'"sweep"', JSON, 400),
    ("export: no subject", "POST", "/v1/subjects/export", b'{"controller": "cowrite"}', JSON, 400),
    ("export: include_pseudonymised 1", "POST", "/v1/subjects/export",
     json.dumps({"controller": "cowrite", "subject": {"email": EMAIL},
                 "include_pseudonymised": 1}).encode(), JSON, 400),
    ("method not allowed", "DELETE", "/v1/events", b"", {}, 405),
    ("bad content-length", "POST", "/v1/sweep", b"{}", {**JSON, "Content-Length": "x"}, 400),
]


@pytest.mark.parametrize("name, method, path, body, headers, status", HOSTILE,
                         ids=[h[0] for h in HOSTILE])
def test_hostile_requests_get_a_clear_answer(env: Env, name: str, method: str, path: str,
                                             body: bytes, headers: dict[str, str],
                                             status: int) -> None:
    if "Content-Length" in headers:  # a lie about the length: raw socket, httpx would refuse
        code = raw_request(env.server.port, method, path, body, {**headers, **auth(env.token)})
        assert code == status
    else:
        r = env.client.request(method, path, content=body or None,
                               headers={**auth(env.token), **headers})
        assert r.status_code == status, r.text[:300]
        if status >= 400:
            assert isinstance(r.json()["error"], str)
            assert EMAIL not in r.text
    assert env.client.get("/v1/health").status_code == 200


def raw_request(port: int, method: str, path: str, body: bytes, headers: dict[str, str],
                timeout: float = 20.0) -> int:
    head = f"{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n" + "".join(
        f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(head.encode() + body)
        data = s.recv(1024)
    return int(data.split(b" ", 2)[1])


def test_huge_headers_are_refused(env: Env) -> None:
    code = raw_request(env.server.port, "GET", "/v1/health", b"", {"X-Big": "a" * 200_000})
    assert 400 <= code < 500
    assert env.client.get("/v1/health").status_code == 200


@pytest.mark.slow
def test_a_slow_client_times_out_with_408(env: Env) -> None:
    """A body that never finishes: the server gives up on it (408) and keeps serving."""
    head = (f"POST /v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {env.token}\r\n"
            "Content-Type: application/json\r\nContent-Length: 100\r\n\r\n[")
    with socket.create_connection(("127.0.0.1", env.server.port), timeout=30) as s:
        s.sendall(head.encode())
        started = time.monotonic()
        data = s.recv(1024)
    assert int(data.split(b" ", 2)[1]) == 408 and time.monotonic() - started < 15
    assert env.client.get("/v1/health").status_code == 200


# --- semantics ------------------------------------------------------------------------------


RYW_FAST = 10  # test_serve_load runs the loop 1,000 times; the fast tier's publish test asks too


@pytest.mark.slow
def test_read_your_writes_unsubscribe_then_ask(env: Env) -> None:
    """Each unsubscribe recorded through the API is seen by the very next question."""
    read_your_writes(env.client, env.token, "ryw.person@example.org", RYW_FAST)


def read_your_writes(client: httpx.Client, token: str, email: str, rounds: int) -> None:
    env = Env(None, token, "", client)  # type: ignore[arg-type]
    start = datetime(2026, 10, 10, tzinfo=UTC)
    env.post("/v1/events", [make_event("SubjectRegistered", subject={"email": email},
                                       occurred_at="2026-10-09T00:00:00Z")])
    question = {"controller": "cowrite", "purpose": "newsletter", "channel": "email",
                "subject": {"email": email}}
    for i in range(rounds):
        at = (start + timedelta(minutes=2 * i)).strftime("%Y-%m-%dT%H:%M:%SZ")
        sub = make_event("NewsletterSubscribed", subject={"email": email}, occurred_at=at)
        assert env.post("/v1/events", [sub]).json()["accepted"] == 1
        assert env.post("/v1/permits", question).json()["permitted"] is True
        later = (start + timedelta(minutes=2 * i + 1)).strftime("%Y-%m-%dT%H:%M:%SZ")
        unsub = make_event("Unsubscribed", subject={"email": email}, occurred_at=later,
                           list="*", channel="*")
        assert env.post("/v1/events", [unsub]).json()["accepted"] == 1
        assert env.post("/v1/permits", question).json()["permitted"] is False, i


def test_the_access_log_holds_no_email_address(env: Env) -> None:
    env.post("/v1/permits", Q)
    env.post("/v1/subjects/export", {"controller": "cowrite", "subject": {"email": EMAIL}})
    env.get("/v1/permits", controller="cowrite", subject=EMAIL, purpose="service")
    log = env.server.log()
    assert "POST /v1/permits" in log
    assert "@example" not in log and EMAIL not in log


def test_serve_refuses_a_bad_schedule(initialised: Path) -> None:
    result = CliRunner().invoke(cli.main, ["--data", str(initialised), "serve",
                                           "--sweep-every", "daily"])
    assert result.exit_code == 2 and "--sweep-every" in result.output


def test_demo_now_is_before_the_server_clock() -> None:
    assert DEMO_NOW < NOW


# --- the outbox -----------------------------------------------------------------------------


@pytest.mark.slow
def test_the_outbox_lists_messages_owed_and_records_the_mailers_reports(env: Env) -> None:
    """GET /v1/outbox needs the notify scope and is the one place the address leaves the
    ledger; a delivery is recorded once (again: duplicate) and the message leaves the list."""
    mailer = create_token(env.server.data_dir, "mailer", "notify")
    assert env.get("/v1/outbox").status_code == 403  # the app's token has no notify scope
    listed = env.get("/v1/outbox", mailer)
    assert listed.status_code == 200, listed.text
    messages = listed.json()["messages"]
    # the demo's last sweep sent cowrite's deletion notices that nobody has reported on yet
    notices = [m for m in messages if m["kind"] == "deletion_notice" and m["contact"]]
    assert notices, messages[:3]
    first, second = notices[0], notices[-1]
    assert "@" in first["contact"] and first["clause"] and first["policy"] == "cowrite"
    only = env.get("/v1/outbox", mailer, kind="deletion_notice").json()["messages"]
    assert {m["kind"] for m in only} == {"deletion_notice"}
    assert env.get("/v1/outbox", mailer, kind="spam").status_code == 400

    done = env.post(f"/v1/outbox/{first['message_id']}/delivered", {}, mailer)
    assert done.status_code == 200, done.text
    assert done.json()["status"] == "accepted" and done.json()["final"] is True
    again = env.post(f"/v1/outbox/{first['message_id']}/delivered", {}, mailer)
    assert again.status_code == 200 and again.json()["status"] == "duplicate"
    failed = env.post(f"/v1/outbox/{second['message_id']}/failed",
                      {"reason": f"mailbox full for {second['contact']}"}, mailer)
    assert failed.status_code == 200, failed.text
    assert failed.json()["status"] == "accepted" and failed.json()["final"] is False
    left = {m["message_id"] for m in env.get("/v1/outbox", mailer).json()["messages"]}
    assert first["message_id"] not in left and second["message_id"] in left

    assert env.post("/v1/outbox/not-a-uuid/delivered", {}, mailer).status_code == 400
    unknown = "00000000-0000-4000-8000-000000000000"
    assert env.post(f"/v1/outbox/{unknown}/delivered", {}, mailer).status_code == 404
    assert env.post(f"/v1/outbox/{second['message_id']}/failed", {}, mailer).status_code == 400
    assert env.post(f"/v1/outbox/{second['message_id']}/failed", {"reason": "x", "extra": 1},
                    mailer).status_code == 400
    assert env.post(f"/v1/outbox/{second['message_id']}/delivered", {"at": "soon"},
                    mailer).status_code == 400
    assert env.post(f"/v1/outbox/{unknown}/delivered", {}).status_code == 403
    log = env.server.log()
    assert "/v1/outbox" in log
    assert first["contact"] not in log and second["contact"] not in log and "@" not in log
