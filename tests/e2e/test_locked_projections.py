"""While another process holds the projections file (a follower, a server), a reader's
``ledger permits`` fails with a one-line error and exit 2: never 1, which means "not
permitted"."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

from click.testing import CliRunner

import cli
from tests.conftest import DEMO_NOW

HOLD = ("import duckdb, sys, time\n"
        "con = duckdb.connect(sys.argv[1])\n"
        "print('held', flush=True)\n"
        "time.sleep(60)\n")


def test_a_locked_projections_file_is_exit_2(demo_data: Path, tmp_path: Path) -> None:
    data = tmp_path / "ledger-data"
    shutil.copytree(demo_data, data)
    projections = next(data.glob("*.duckdb"))
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(projections)],
                              stdout=subprocess.PIPE)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == b"held"
        started = time.monotonic()
        result = CliRunner().invoke(cli.main, ["--data", str(data), "--now", DEMO_NOW,
                                               "permits", "0" * 64, "service"])
        assert result.exit_code == 2, result.output
        assert "locked" in result.output and len(result.output.strip().splitlines()) == 1
        assert time.monotonic() - started < 30
    finally:
        holder.kill()
        holder.wait(10)
