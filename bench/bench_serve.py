"""``ledger serve`` benchmark (issue 11): a real server in a subprocess, a load generator on
the same machine. httpx in threads cannot offer 3,000 requests/s on two cores, so the request
figures come from a small asyncio keep-alive HTTP/1.1 client (raw sockets, no pipelining; its
ceiling is the trivial endpoint's figure). Each figure comes with a same-run reference:

- permits, one question per request over 16 keep-alive connections, next to the same
  framework's trivial JSON endpoint (``/v1/trivial``) with the same clients: answers/s, p50,
  p99 and the ratio;
- permits in batches of 1,000 questions: answers/s;
- permits at a fixed arrival rate (open loop, 1,000 requests/s offered by default): p50, p99,
  latency counted from each request's scheduled start;
- POST /v1/events, 8 clients x batches of 500 demo events, next to ``ledger publish`` of the
  same events into a fresh data directory: events/s and the ratio;
- with ``--rss-subjects N``: the server's peak RSS (VmHWM) serving a synthetic N-subject read
  model (built directly in DuckDB, as bench_decisions.py does) after answering questions.

    .venv/bin/python bench/bench_serve.py [--subjects 500] [--seconds 10] [--events 20000]
        [--rate 1000] [--rss-subjects 1000000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ledger.demo.history import generate_history

NOW = "2026-11-01T00:00:00Z"
LEDGER = [sys.executable, "-c", "import cli; cli.main()"]


def ledger(*args: str, stdin: bytes | None = None) -> str:
    out = subprocess.run([*LEDGER, *args], cwd=ROOT, input=stdin, capture_output=True, check=True)
    return out.stdout.decode()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start(data: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    proc = subprocess.Popen([*LEDGER, "--data", str(data), "--now", NOW, "serve", "--port",
                             str(port)], cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            if httpx.get(f"{url}/v1/health", timeout=2).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            time.sleep(0.1)
    raise SystemExit("the server did not start")


def load(url: str, token: str, clients: int, seconds: float,
         request: Any) -> tuple[int, list[float]]:
    """``clients`` threads, each with a keep-alive connection, for ``seconds``; returns the
    number of answers and the latencies."""
    latencies: list[float] = []
    count = [0]
    lock = threading.Lock()
    stop = time.perf_counter() + seconds

    def run(seed: int) -> None:
        rng = random.Random(seed)
        mine: list[float] = []
        n = 0
        with httpx.Client(base_url=url, timeout=60,
                          headers={"Authorization": f"Bearer {token}"}) as client:
            while time.perf_counter() < stop:
                t = time.perf_counter()
                n += request(client, rng)
                mine.append(time.perf_counter() - t)
        with lock:
            latencies.extend(mine)
            count[0] += n

    threads = [threading.Thread(target=run, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return count[0], sorted(latencies)


# --- the asyncio load generator ------------------------------------------------------------


def raw_request(method: str, path: str, token: str, body: Any = None) -> bytes:
    data = b"" if body is None else json.dumps(body).encode()
    head = (f"{method} {path} HTTP/1.1\r\nHost: bench\r\nAuthorization: Bearer {token}\r\n"
            f"Content-Length: {len(data)}\r\n")
    if body is not None:
        head += "Content-Type: application/json\r\n"
    return (head + "\r\n").encode() + data


class Connection:
    """One keep-alive HTTP/1.1 connection: a request, then its response, then the next."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, url: str) -> Connection:
        host, port = url.removeprefix("http://").split(":")
        reader, writer = await asyncio.open_connection(host, int(port), limit=1 << 24)
        return cls(reader, writer)

    async def ask(self, request: bytes) -> int:
        self.writer.write(request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        at = head.lower().find(b"content-length:")
        length = int(head[at + 15:head.index(b"\r\n", at)]) if at >= 0 else 0
        await self.reader.readexactly(length)
        if status != 200:
            raise SystemExit(f"status {status} from the server")
        return status

    def close(self) -> None:
        self.writer.close()


def closed_loop(url: str, clients: int, seconds: float, requests: list[bytes]
                ) -> tuple[int, list[float]]:
    """``clients`` connections each sending its next request when the last one is answered,
    for ``seconds``: the number of answers and the latencies."""

    async def run() -> tuple[int, list[float]]:
        conns = [await Connection.open(url) for _ in range(clients)]
        latencies: list[float] = []
        stop = time.perf_counter() + seconds

        async def client(conn: Connection, seed: int) -> None:
            rng = random.Random(seed)
            while time.perf_counter() < stop:
                t = time.perf_counter()
                await conn.ask(rng.choice(requests))
                latencies.append(time.perf_counter() - t)

        await asyncio.gather(*(client(c, i) for i, c in enumerate(conns)))
        for c in conns:
            c.close()
        return len(latencies), sorted(latencies)

    return asyncio.run(run())


def open_loop(url: str, clients: int, rate: float, seconds: float, requests: list[bytes]
              ) -> list[float]:
    """Requests at a fixed arrival rate over at most ``clients`` connections; each latency is
    counted from the request's scheduled start (no coordinated omission)."""

    async def run() -> list[float]:
        idle: asyncio.Queue[Connection] = asyncio.Queue()
        for _ in range(clients):
            idle.put_nowait(await Connection.open(url))
        latencies: list[float] = []
        rng = random.Random(1)

        async def one(scheduled: float, request: bytes) -> None:
            conn = await idle.get()
            await conn.ask(request)
            latencies.append(time.perf_counter() - scheduled)
            idle.put_nowait(conn)

        tasks = []
        start = time.perf_counter()
        for i in range(int(rate * seconds)):
            scheduled = start + i / rate
            delay = scheduled - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.ensure_future(one(scheduled, rng.choice(requests))))
        await asyncio.gather(*tasks)
        while not idle.empty():
            idle.get_nowait().close()
        return sorted(latencies)

    return asyncio.run(run())


def server_status(proc: subprocess.Popen[bytes], field: str) -> int:
    """A /proc/PID/status field in KiB (VmHWM: peak RSS, VmRSS: now)."""
    for line in Path(f"/proc/{proc.pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def pct(values: list[float], p: float) -> float:
    return values[min(len(values) - 1, int(len(values) * p))] * 1000 if values else float("nan")


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(60)
    except subprocess.TimeoutExpired:  # requests still in flight after a client timed out
        proc.kill()
        proc.wait(60)


def rss(data: Path, subjects: int) -> None:
    """The server's peak RSS on a synthetic ``subjects``-subject read model."""
    sys.path.insert(0, str(ROOT / "bench"))
    import duckdb
    from bench_decisions import SYNTHESIS
    from eventsourcing.persistence import Tracking

    from ledger.contracts.schemas import default_registry
    from projections.store.duckdb_store import DuckDBStore

    ledger("--data", str(data), "init")
    token = ledger("--data", str(data), "token", "create", "bench", "--scope", "permits").strip()
    path = data / "projections.duckdb"
    t = time.perf_counter()
    store = DuckDBStore(path, default_registry())  # the real schema
    store.insert_tracking(Tracking("embedded", 4 * subjects), 0)  # the (empty) log is "projected"
    store.close()
    con = duckdb.connect(str(path))
    for statement in SYNTHESIS.replace("$n", str(subjects)).split(";"):
        if statement.strip():
            con.execute(statement)
    sample = [(str(c), str(s)) for c, s in con.execute(
        "SELECT controller, subject FROM activity_clock USING SAMPLE 20000 ROWS").fetchall()]
    con.execute("CHECKPOINT")
    con.close()
    print(f"synthesised a {subjects:,}-subject read model in {time.perf_counter() - t:.0f} s "
          f"({path.stat().st_size / 2**20:,.0f} MiB)")
    proc, url = start(data)
    try:
        started = server_status(proc, "VmHWM")
        questions = [{"controller": c, "purpose": "service", "subject": {"id": s}}
                     for c, s in sample]
        t = time.perf_counter()
        with httpx.Client(base_url=url, timeout=600,
                          headers={"Authorization": f"Bearer {token}"}) as client:
            for i in range(0, len(questions), 1000):
                client.post("/v1/permits", json={"questions": questions[i:i + 1000]}
                            ).raise_for_status()
        asked = time.perf_counter() - t
        peak = server_status(proc, "VmHWM")
        print(f"RSS with a {subjects:,}-subject read model: peak {peak / 1024:,.0f} MiB after "
              f"{len(questions):,} questions about distinct subjects ({len(questions) / asked:,.0f}"
              f" answers/s uncached), {started / 1024:,.0f} MiB once started (target <= 1,024 "
              f"MiB: {'met' if peak <= 1024 * 1024 else 'MISSED'})")
    finally:
        stop(proc)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--subjects", type=int, default=500)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--events", type=int, default=20_000)
    ap.add_argument("--rate", type=float, default=1000.0)
    ap.add_argument("--rss-subjects", type=int, default=0)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-serve-") as tmp:
        data = Path(tmp) / "demo"
        ledger("--data", str(data), "--now", NOW, "demo", "--subjects", str(args.subjects),
               "--seed", "7", "--json")
        token = ledger("--data", str(data), "token", "create", "bench", "--scope",
                       "permits,publish,decisions").strip()
        proc, url = start(data)
        try:
            rows = httpx.get(f"{url}/v1/decisions", headers={"Authorization": f"Bearer {token}"},
                             timeout=120).json()["decisions"]
            subjects = [(r["controller"], r["subject"]) for r in rows]

            trivial = [raw_request("GET", "/v1/trivial", token)]
            one = [raw_request("POST", "/v1/permits", token,
                               {"controller": c, "purpose": "service", "subject": {"id": s}})
                   for c, s in subjects]
            rng = random.Random(3)
            batch = [raw_request("POST", "/v1/permits", token, {"questions": [
                {"controller": c, "purpose": "service", "subject": {"id": s}}
                for c, s in (rng.choice(subjects) for _ in range(1000))]}) for _ in range(20)]
            closed_loop(url, 16, 1.0, one)  # warm up: the first answers fill the caches
            n_t, lat_t = closed_loop(url, 16, args.seconds, trivial)
            n_p, lat_p = closed_loop(url, 16, args.seconds, one)
            n_b, _ = closed_loop(url, 2, args.seconds, batch)
            lat_o = open_loop(url, 16, args.rate, args.seconds, one)
            rate_t, rate_p = n_t / args.seconds, n_p / args.seconds
            rate_b = n_b * 1000 / args.seconds
            print(f"trivial JSON endpoint, 16 connections: {rate_t:,.0f} req/s "
                  f"(p50 {pct(lat_t, .5):.1f} ms, p99 {pct(lat_t, .99):.1f} ms): the load "
                  "generator's ceiling with this framework")
            print(f"permits, 1 question/request, 16 connections: {rate_p:,.0f} answers/s "
                  f"(target >= 3,000: {'met' if rate_p >= 3000 else 'MISSED'}; "
                  f"p50 {pct(lat_p, .5):.1f} ms, p99 {pct(lat_p, .99):.1f} ms); ratio to trivial "
                  f"{rate_p / rate_t:.2f} (target >= 0.5: "
                  f"{'met' if rate_p >= 0.5 * rate_t else 'MISSED'})")
            p99 = pct(lat_o, .99)
            print(f"permits, open loop at {args.rate:,.0f} requests/s offered: "
                  f"{len(lat_o):,} answers, p50 {pct(lat_o, .5):.1f} ms, p99 {p99:.1f} ms "
                  f"(target <= 25 ms: {'met' if p99 <= 25 else 'MISSED'})")
            print(f"permits, batches of 1,000 questions, 2 connections: {rate_b:,.0f} answers/s "
                  f"(target >= 100,000: {'met' if rate_b >= 100_000 else 'MISSED'}); "
                  f"ratio to one question per request {rate_b / rate_p:.1f}")
            metrics = httpx.get(f"{url}/metrics", timeout=30).text
            hits = [ln for ln in metrics.splitlines() if ln.startswith("ledger_facts_cache")]
            print("  facts cache: " + ", ".join(hits))
        finally:
            stop(proc)

        # publishing: the same demo events through the API and through `ledger publish`
        events: list[dict[str, Any]] = []
        for day in generate_history(max(100, args.events // 25), 99):
            events.extend(day.events)
            if len(events) >= args.events:
                break
        events = events[: args.events]
        lines = "".join(json.dumps(e) + "\n" for e in events).encode()
        cli_dir = Path(tmp) / "cli"
        ledger("--data", str(cli_dir), "init")
        t = time.perf_counter()
        ledger("--data", str(cli_dir), "--now", NOW, "publish", "-", "--json", stdin=lines)
        cli_s = time.perf_counter() - t
        api_dir = Path(tmp) / "api"
        ledger("--data", str(api_dir), "init")
        token = ledger("--data", str(api_dir), "token", "create", "bench", "--scope",
                       "publish").strip()
        proc, url = start(api_dir)
        try:
            batches = [events[i:i + 500] for i in range(0, len(events), 500)]
            todo = list(range(len(batches)))
            lock = threading.Lock()

            def post() -> None:
                with httpx.Client(base_url=url, timeout=300,
                                  headers={"Authorization": f"Bearer {token}"}) as client:
                    while True:
                        with lock:
                            if not todo:
                                return
                            i = todo.pop()
                        r = client.post("/v1/events", json=batches[i])
                        r.raise_for_status()
                        assert r.json()["accepted"] == len(batches[i])

            t = time.perf_counter()
            threads = [threading.Thread(target=post) for _ in range(8)]
            for th in threads:
                th.start()
            for th in threads:
                th.join()
            api_s = time.perf_counter() - t
        finally:
            stop(proc)
        api_rate = len(events) / api_s
        print(f"POST /v1/events, 8 clients x 500: {api_rate:,.0f} events/s (target >= 15,000: "
              f"{'met' if api_rate >= 15_000 else 'MISSED'}); `ledger publish` (process start "
              f"included): {len(events) / cli_s:,.0f} events/s; ratio {cli_s / api_s:.2f} "
              f"(target >= 0.8: {'met' if cli_s / api_s >= 0.8 else 'MISSED'})")
        if args.rss_subjects:
            rss(Path(tmp) / "rss", args.rss_subjects)
        print(f"(cores: {os.cpu_count()}, load generator on the same machine)")


if __name__ == "__main__":
    main()
