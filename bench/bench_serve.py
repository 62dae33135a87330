"""``ledger serve`` benchmark (issue 11): a real server in a subprocess, a Python load
generator (httpx, threads) on the same machine. Each figure comes with a same-run reference:

- permits, one question per request over 16 keep-alive connections, next to the same
  framework's trivial JSON endpoint (``/v1/trivial``) with the same clients: answers/s, p50,
  p99 and the ratio;
- permits in batches of 1,000 questions: answers/s;
- POST /v1/events, 8 clients x batches of 500 demo events, next to ``ledger publish`` of the
  same events into a fresh data directory: events/s and the ratio.

    .venv/bin/python bench/bench_serve.py [--subjects 500] [--seconds 10] [--events 20000]
"""

from __future__ import annotations

import argparse
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


def pct(values: list[float], p: float) -> float:
    return values[min(len(values) - 1, int(len(values) * p))] * 1000 if values else float("nan")


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(60)
    except subprocess.TimeoutExpired:  # requests still in flight after a client timed out
        proc.kill()
        proc.wait(60)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--subjects", type=int, default=500)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--events", type=int, default=20_000)
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

            def trivial(client: httpx.Client, _rng: random.Random) -> int:
                client.get("/v1/trivial").raise_for_status()
                return 1

            def one(client: httpx.Client, rng: random.Random) -> int:
                c, s = rng.choice(subjects)
                client.post("/v1/permits", json={"controller": c, "purpose": "service",
                                                 "subject": {"id": s}}).raise_for_status()
                return 1

            def batch(client: httpx.Client, rng: random.Random) -> int:
                qs = [{"controller": c, "purpose": "service", "subject": {"id": s}}
                      for c, s in (rng.choice(subjects) for _ in range(1000))]
                client.post("/v1/permits", json={"questions": qs}).raise_for_status()
                return 1000

            n_t, lat_t = load(url, token, 16, args.seconds, trivial)
            n_p, lat_p = load(url, token, 16, args.seconds, one)
            n_b, _ = load(url, token, 2, args.seconds, batch)
            rate_t, rate_p, rate_b = n_t / args.seconds, n_p / args.seconds, n_b / args.seconds
            print(f"trivial JSON endpoint, 16 connections: {rate_t:,.0f} req/s "
                  f"(p50 {pct(lat_t, .5):.1f} ms, p99 {pct(lat_t, .99):.1f} ms)")
            print(f"permits, 1 question/request, 16 connections: {rate_p:,.1f} answers/s "
                  f"(p50 {pct(lat_p, .5):.1f} ms, p99 {pct(lat_p, .99):.1f} ms); "
                  f"ratio to trivial {rate_p / rate_t:.4f}")
            print(f"permits, batches of 1,000 questions, 2 connections: {rate_b:,.0f} answers/s")
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
        print(f"POST /v1/events, 8 clients x 500: {len(events) / api_s:,.0f} events/s; "
              f"`ledger publish` (process start included): {len(events) / cli_s:,.0f} events/s; "
              f"ratio {cli_s / api_s:.2f}")
        print(f"(cores: {os.cpu_count()}, load generator on the same machine)")


if __name__ == "__main__":
    main()
