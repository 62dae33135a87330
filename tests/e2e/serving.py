"""A real ``ledger serve`` in a subprocess on a free loopback port, for the HTTP tests."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
from click.testing import CliRunner

import cli

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def create_token(data_dir: Path, name: str, scopes: str) -> str:
    result = CliRunner().invoke(cli.main, ["--data", str(data_dir), "token", "create", name,
                                           "--scope", scopes])
    assert result.exit_code == 0, result.output
    return result.output.strip()


class Server:
    """``ledger serve`` on ``data_dir``; its stderr (the access log) goes to ``log_path``."""

    def __init__(self, data_dir: Path, now: str | None = None, extra: tuple[str, ...] = ()) -> None:
        self.data_dir = data_dir
        self.now = now
        self.extra = extra
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = data_dir.parent / f"serve-{self.port}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60.0) -> Server:
        args = [sys.executable, "-c", "import cli; cli.main()", "--data", str(self.data_dir)]
        if self.now:
            args += ["--now", self.now]
        args += ["serve", "--port", str(self.port), *self.extra]
        env = {**os.environ, "PYTHONPATH": str(ROOT), "LEDGER_HTTP_BODY_TIMEOUT": "2"}
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(args, cwd=ROOT, stdout=log, stderr=log, env=env)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"ledger serve exited: {self.log_path.read_text()}")
            try:
                if httpx.get(f"{self.url}/v1/health", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise AssertionError("ledger serve did not answer in time")

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def copy_data(source: Path, target: Path) -> Path:
    shutil.copytree(source, target)
    return target


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def post_json(client: httpx.Client, path: str, body: Any, token: str) -> httpx.Response:
    return client.post(path, json=body, headers=auth(token))
