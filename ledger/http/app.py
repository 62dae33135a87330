"""The HTTP API of ``ledger serve`` (FastAPI): parses requests, calls ``LedgerService``, answers
JSON. Errors are ``{"error": "..."}``; no message quotes a natural identifier."""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Callable
from typing import Any, Final

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ledger.app.outbox import MessageClosed, UnknownMessage
from ledger.app.permits import PermitAnswer, PermitQuestion, UnknownSubject
from ledger.app.serving import LedgerService
from ledger.app.tokens import TokenStore
from ledger.domain.errors import ClockError, InvalidEvent, LedgerError, UsageError
from ledger.domain.subjects import SubjectSelector
from ledger.domain.timeutil import parse_timestamp

MAX_EVENTS: Final = 10_000
MAX_BODY: Final = 16 * 1024 * 1024
MAX_SMALL_BODY: Final = 1024 * 1024  # permits, export, sweep bodies
MAX_QUESTIONS: Final = 1_000
BODY_TIMEOUT: Final = 10.0  # seconds a client may take between two chunks of its body
BODY_TIMEOUT_ENV: Final = "LEDGER_HTTP_BODY_TIMEOUT"  # overrides it (seconds)
MAX_DEPTH: Final = 32  # nesting of a JSON body


class ApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.appended = Counter("ledger_events_appended", "events appended to the log",
                                registry=self.registry)
        self.duplicates = Counter("ledger_events_duplicate", "events already in the log",
                                  registry=self.registry)
        self.rejected = Counter("ledger_events_rejected", "events rejected (incl. conflicts)",
                                registry=self.registry)
        self.lag = Gauge("ledger_projection_lag", "log records the projections have not seen",
                         registry=self.registry)
        self.requests = Counter("ledger_http_requests", "HTTP requests",
                                ["method", "route", "status"], registry=self.registry)
        self.cache_hits = Gauge("ledger_facts_cache_hits", "permits answers from cached facts",
                                registry=self.registry)
        self.cache_misses = Gauge("ledger_facts_cache_misses",
                                  "permits answers that read the subject's facts",
                                  registry=self.registry)
        self.latency = Histogram("ledger_http_request_seconds", "HTTP request latency",
                                 ["route"], registry=self.registry)


class AccessLog:
    """The access log and the request metrics, as plain ASGI middleware (Starlette's
    ``BaseHTTPMiddleware`` costs a task and a stream per request: a third of a small answer)."""

    def __init__(self, app: ASGIApp, metrics: Metrics, access_log: Callable[[str], None]) -> None:
        self.app = app
        self.metrics = metrics
        self.access_log = access_log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500
        answered = False

        async def watch(message: Message) -> None:
            nonlocal status, answered
            if message["type"] == "http.response.start":
                status, answered = int(message["status"]), True
            await send(message)

        try:
            await self.app(scope, receive, watch)
        except Exception as e:  # noqa: BLE001 - the last line of defence: no traceback to a client
            self.access_log(f"error {type(e).__name__}")
            if not answered:
                await error(500, "internal error")(scope, receive, send)
            status = 500
        route = scope.get("route")
        name = getattr(route, "path", "unmatched")
        elapsed = time.perf_counter() - started
        method = str(scope.get("method", ""))
        self.metrics.requests.labels(method, name, str(status)).inc()
        self.metrics.latency.labels(name).observe(elapsed)
        # The path only, never the query string: no subject value reaches the log.
        self.access_log(f"{method} {str(scope.get('path', ''))[:200]} {status} "
                        f"{elapsed * 1000:.1f}ms")


def json_response(value: Any) -> Response:
    """JSON encoded once, by the C encoder (FastAPI's encoder walks every value of a
    1,000-answer batch first)."""
    return Response(json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode(),
                    media_type="application/json")


# --- parsing --------------------------------------------------------------------------------


def body_timeout() -> float:
    try:
        return max(0.1, float(os.environ.get(BODY_TIMEOUT_ENV, BODY_TIMEOUT)))
    except ValueError:
        return BODY_TIMEOUT


async def read_body(request: Request, limit: int) -> bytes:
    """The body, at most ``limit`` bytes (else 413), each chunk within BODY_TIMEOUT (else 408)."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise ApiError(400, "content-length is not a number")
        if int(declared) > limit:
            raise ApiError(413, f"the body is larger than {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    stream = request.stream().__aiter__()
    while True:
        try:
            chunk = await asyncio.wait_for(stream.__anext__(), body_timeout())
        except StopAsyncIteration:
            break
        except TimeoutError:
            raise ApiError(408, "the body did not arrive in time") from None
        size += len(chunk)
        if size > limit:
            raise ApiError(413, f"the body is larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _depth_ok(value: Any, depth: int = 0) -> bool:
    if depth > MAX_DEPTH:
        return False
    if isinstance(value, dict):
        return all(_depth_ok(v, depth + 1) for v in value.values())
    if isinstance(value, list):
        return all(_depth_ok(v, depth + 1) for v in value)
    return True


def parse_json(body: bytes) -> Any:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise ApiError(400, "the body is not UTF-8") from None
    try:
        value = json.loads(text)
    except RecursionError:
        raise ApiError(400, "the body is nested too deeply") from None
    except ValueError as e:
        raise ApiError(400, f"the body is not JSON ({type(e).__name__} at position "
                       f"{getattr(e, 'pos', '?')})") from None
    if not _depth_ok(value):
        raise ApiError(400, f"the body is nested deeper than {MAX_DEPTH} levels")
    return value


def media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


def require_json(request: Request) -> None:
    if media_type(request) != "application/json":
        raise ApiError(415, "send Content-Type: application/json")


def _text(value: Any, name: str, *, required: bool = True) -> str | None:
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value or len(value) > 512:
        raise ApiError(400, f"{name}: expected a non-empty string")
    return value


def subject_of(raw: Any, controller: str) -> SubjectSelector:
    if not isinstance(raw, dict) or len(raw) != 1:
        raise ApiError(400, 'subject: expected exactly one of {"email"}, {"account"} or {"id"}')
    (kind, value), = raw.items()
    text = _text(value, f"subject.{kind}") if kind in ("email", "account", "id") else None
    if kind == "email":
        return SubjectSelector(email_address=text, controller=controller)
    if kind == "account":
        return SubjectSelector(account_id=text, controller=controller)
    if kind == "id":
        return SubjectSelector(subject_id=text, controller=controller)
    raise ApiError(400, 'subject: expected exactly one of {"email"}, {"account"} or {"id"}')


def as_of_of(raw: Any, name: str = "as_of") -> int | None:
    if raw is None:
        return None
    if not isinstance(raw, str) or len(raw) > 64:
        raise ApiError(400, f"{name}: expected an ISO-8601 timestamp")
    try:
        return parse_timestamp(raw)
    except ValueError:
        raise ApiError(400, f"{name}: expected an ISO-8601 timestamp") from None


QUESTION_KEYS: Final = frozenset({"controller", "purpose", "channel", "subject", "as_of"})


# --- the app --------------------------------------------------------------------------------


def create_app(service: LedgerService, tokens: TokenStore,
               access_log: Callable[[str], None] = print) -> FastAPI:
    metrics = Metrics()
    app = FastAPI(title="consent-ledger", version="1",
                  description="The consent and activity ledger's HTTP API (ledger serve).")

    def authorise(request: Request, scope: str | None) -> None:
        if scope is None:
            return
        header = request.headers.get("authorization", "")
        kind, _, token = header.partition(" ")
        if kind.lower() != "bearer" or not token.strip():
            raise ApiError(401, "send Authorization: Bearer <token>")
        found = tokens.authenticate(token.strip())
        if found is None:
            raise ApiError(401, "unknown token")
        if scope not in found.scopes:
            raise ApiError(403, f"the token lacks the {scope!r} scope")

    app.add_middleware(AccessLog, metrics=metrics, access_log=access_log)

    @app.exception_handler(ApiError)
    async def api_error(_request: Request, exc: ApiError) -> JSONResponse:
        return error(exc.status, exc.message)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return error(exc.status_code, str(exc.detail))

    @app.exception_handler(RequestValidationError)
    async def validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        return error(400, f"{where}: {first.get('msg', 'invalid')}")

    async def call(work: Callable[[], Any]) -> Any:
        try:
            return await run_in_threadpool(work)
        except ClockError as e:
            raise ApiError(409, str(e)) from None
        except MessageClosed as e:
            raise ApiError(409, str(e)) from None
        except (UsageError, InvalidEvent) as e:
            status = 404 if isinstance(e, (UnknownSubject, UnknownMessage)) else 400
            raise ApiError(status, str(e)) from None
        except LedgerError as e:
            raise ApiError(500, str(e)) from None

    # --- endpoints ----------------------------------------------------------------------
    @app.get("/v1/health")
    async def health() -> dict[str, Any]:
        h = await call(service.health)
        return dict(h.as_dict())

    @app.post("/v1/events")
    async def events(request: Request) -> dict[str, Any]:
        authorise(request, "publish")
        kind = media_type(request)
        if kind not in ("application/json", "application/x-ndjson"):
            raise ApiError(415, "send Content-Type: application/json or application/x-ndjson")
        body = await read_body(request, MAX_BODY)
        items: list[Any]
        if kind == "application/json":
            value = parse_json(body)
            if not isinstance(value, list):
                raise ApiError(400, "expected a JSON array of events")
            items = value
        else:
            try:
                body.decode("utf-8")
            except UnicodeDecodeError:
                raise ApiError(400, "the body is not UTF-8") from None
            items = [line for line in body.split(b"\n") if line.strip()]
        if len(items) > MAX_EVENTS:
            raise ApiError(413, f"at most {MAX_EVENTS} events per request")
        if not items:
            return {"accepted": 0, "duplicates": 0, "rejected": 0, "results": []}
        results = await call(lambda: service.publish(items))
        out = []
        counts = {"accepted": 0, "duplicate": 0, "rejected": 0}
        for r in results:
            entry: dict[str, Any] = {"index": r.number - 1, "event_id": r.event_id,
                                     "status": r.status}
            if r.reason is not None:
                entry["reason"] = r.reason
            if r.position is not None:
                entry["position"] = r.position
            counts["rejected" if r.status == "conflict" else r.status] += 1
            out.append(entry)
        metrics.appended.inc(counts["accepted"])
        metrics.duplicates.inc(counts["duplicate"])
        metrics.rejected.inc(counts["rejected"])
        return {"accepted": counts["accepted"], "duplicates": counts["duplicate"],
                "rejected": counts["rejected"], "results": out}

    def question_of(raw: Any) -> PermitQuestion:
        """A question from its JSON (an ApiError names what is wrong)."""
        if not isinstance(raw, dict):
            raise ApiError(400, "a question is a JSON object")
        extra = set(raw) - QUESTION_KEYS
        if extra:
            raise ApiError(400, f"unknown field {sorted(extra)[0][:40]!r}")
        controller = _text(raw.get("controller"), "controller")
        purpose = _text(raw.get("purpose"), "purpose")
        channel = _text(raw.get("channel"), "channel", required=False)
        assert controller is not None and purpose is not None
        return PermitQuestion(purpose, subject_of(raw.get("subject"), controller), channel,
                              as_of_of(raw.get("as_of")))

    def rendered(result: PermitAnswer | UsageError, policies: dict[str, dict[str, str]]
                 ) -> dict[str, Any]:
        if isinstance(result, UsageError):
            raise ApiError(404 if isinstance(result, UnknownSubject) else 400,
                           str(result))
        if result.controller not in policies:
            policies[result.controller] = service.policy_of(result.controller)
        d = result.as_dict()
        evidence = d["evidence"]
        return {"permitted": d["permitted"], "reason": d["reason"],
                "controller": d["controller"], "subject": d["subject"],
                "purpose": d["purpose"], "channel": d["channel"], "as_of": d["as_of"],
                "evidence": None if evidence is None else
                {"event_id": evidence["event_id"], "type": evidence["type"],
                 "at": evidence["at"]},
                "policy": policies[result.controller]}

    def answer_all(raw: list[Any]) -> list[dict[str, Any]]:
        """Every question answered in order (in a worker thread): the valid ones in one batch,
        a question that fails is an answer with "error" and "status"."""
        answers: list[dict[str, Any] | None] = [None] * len(raw)
        valid: list[tuple[int, PermitQuestion]] = []
        for i, q in enumerate(raw):
            try:
                valid.append((i, question_of(q)))
            except ApiError as e:
                answers[i] = {"error": e.message, "status": e.status}
        try:
            results = service.permits_many([q for _, q in valid]) if valid else []
        except ClockError as e:
            raise ApiError(409, str(e)) from None
        except LedgerError as e:  # e.g. the projections cannot be read: no answer at all
            raise ApiError(500, str(e)) from None
        policies: dict[str, dict[str, str]] = {}
        for (i, _), result in zip(valid, results, strict=True):
            try:
                answers[i] = rendered(result, policies)
            except ApiError as e:
                answers[i] = {"error": e.message, "status": e.status}
        return [a for a in answers if a is not None]

    def answer(raw: Any) -> dict[str, Any]:
        """One question answered; its failure is the response's status."""
        question = question_of(raw)
        try:
            (result,) = service.permits_many([question])
        except ClockError as e:
            raise ApiError(409, str(e)) from None
        except LedgerError as e:
            raise ApiError(500, str(e)) from None
        return rendered(result, {})

    @app.post("/v1/permits", response_model=None)
    async def permits_post(request: Request) -> Response:
        authorise(request, "permits")
        require_json(request)
        value = parse_json(await read_body(request, MAX_BODY))
        if isinstance(value, dict) and "questions" in value:
            questions = value["questions"]
            if set(value) != {"questions"} or not isinstance(questions, list):
                raise ApiError(400, 'a batch is {"questions": [...]}')
            if len(questions) > MAX_QUESTIONS:
                raise ApiError(413, f"at most {MAX_QUESTIONS} questions per request")
            return json_response({"answers": await run_in_threadpool(answer_all, questions)})
        return json_response(await run_in_threadpool(answer, value))

    @app.get("/v1/permits", response_model=None)
    async def permits_get(request: Request, controller: str, subject: str, purpose: str,
                          channel: str | None = None) -> Response:
        authorise(request, "permits")
        question = {"controller": controller, "purpose": purpose, "subject": {"id": subject}}
        if channel is not None:
            question["channel"] = channel
        return json_response(await run_in_threadpool(answer, question))

    @app.post("/v1/subjects/export")
    async def export(request: Request) -> dict[str, Any]:
        authorise(request, "export")
        require_json(request)
        value = parse_json(await read_body(request, MAX_SMALL_BODY))
        if not isinstance(value, dict) or set(value) - {"controller", "subject",
                                                         "include_pseudonymised"}:
            raise ApiError(400, 'expected {"controller", "subject", "include_pseudonymised"?}')
        controller = _text(value.get("controller"), "controller")
        assert controller is not None
        who = subject_of(value.get("subject"), controller)
        include = value.get("include_pseudonymised", False)
        if not isinstance(include, bool):
            raise ApiError(400, "include_pseudonymised: expected true or false")
        return dict(await call(lambda: service.export_subject(
            who, include_pseudonymised=include)))

    @app.get("/v1/decisions")
    async def decisions(request: Request, controller: str | None = None,
                        action: str | None = None, limit: int | None = None
                        ) -> dict[str, Any]:
        authorise(request, "decisions")
        if limit is not None and limit < 0:
            raise ApiError(400, "limit: expected a number >= 0")
        actions = [action] if action else []
        rows = await call(lambda: service.decisions(controller, actions, limit))
        return {"decisions": rows}

    @app.post("/v1/sweep")
    async def sweep(request: Request) -> dict[str, Any]:
        authorise(request, "sweep")
        require_json(request)
        value = parse_json(await read_body(request, MAX_SMALL_BODY))
        if not isinstance(value, dict) or set(value) - {"dry_run"} or \
                not isinstance(value.get("dry_run", False), bool):
            raise ApiError(400, 'expected {"dry_run": true or false}')
        report = await call(lambda: service.sweep(dry_run=bool(value.get("dry_run", False))))
        return dict(report.as_dict())

    @app.get("/v1/outbox")
    async def outbox_list(request: Request, kind: str | None = None) -> dict[str, Any]:
        """Messages owed to people, with the contact address: it leaves the ledger only here."""
        authorise(request, "notify")
        return {"messages": await call(lambda: service.outbox(kind))}

    async def report_body(request: Request, allowed: set[str]) -> dict[str, Any]:
        body = await read_body(request, MAX_SMALL_BODY)
        if not body.strip():
            return {}
        require_json(request)
        value = parse_json(body)
        if not isinstance(value, dict) or set(value) - allowed:
            raise ApiError(400, f"expected an object with {', '.join(sorted(allowed))}")
        return value

    @app.post("/v1/outbox/{message_id}/delivered")
    async def outbox_delivered(request: Request, message_id: str) -> dict[str, Any]:
        authorise(request, "notify")
        at = as_of_of((await report_body(request, {"at"})).get("at"), "at")
        return dict(await call(lambda: service.outbox_delivered(message_id, at)))

    @app.post("/v1/outbox/{message_id}/failed")
    async def outbox_failed(request: Request, message_id: str) -> dict[str, Any]:
        authorise(request, "notify")
        value = await report_body(request, {"reason", "at"})
        reason = value.get("reason")
        if not isinstance(reason, str):
            raise ApiError(400, 'reason: expected {"reason": "..."}')
        at = as_of_of(value.get("at"), "at")
        return dict(await call(lambda: service.outbox_failed(message_id, reason, at)))

    @app.get("/metrics")
    async def prometheus() -> Response:
        h = await call(service.health)
        metrics.lag.set(max(0, h.log_position - h.projected_position))
        metrics.cache_hits.set(service.cache_hits)
        metrics.cache_misses.set(service.cache_misses)
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/v1/trivial", include_in_schema=False)
    async def trivial() -> dict[str, Any]:
        """The framework's floor, for bench/bench_serve.py's same-run ratio."""
        return {"ok": True}

    return app
