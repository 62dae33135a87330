"""Issue 12 §8: progress that tells the truth. Off a terminal a line on stderr every few
seconds (none for a quick command); the demo's total is its days; a bar completes when the work
does (a replay as of T reads fewer records than the log holds)."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

import cli


def test_off_a_terminal_progress_is_a_line_every_few_seconds(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    with cli.rate_bar(10, "Replaying") as update:
        update(4)  # within the first seconds: nothing
    assert capsys.readouterr().err == ""
    monkeypatch.setattr(cli, "PROGRESS_LINE_SECONDS", 0.0)
    with cli.rate_bar(10, "Replaying") as update:
        update(4)
        update(3)
    lines = capsys.readouterr().err.splitlines()
    assert [re.sub(r"\(.*\)", "(rate)", line) for line in lines] == [
        "Replaying: 4 of 10 events (rate)", "Replaying: 7 of 10 events (rate)"]


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_bar_reaches_its_end_when_the_work_completes(monkeypatch: pytest.MonkeyPatch) -> None:
    screen = Terminal()
    monkeypatch.setattr(cli.sys, "stderr", screen)
    with cli.rate_bar(10, "Replaying") as update:
        update(6)  # a replay as of T: only 6 of the log's 10 records were recorded by T
    assert "10/10" in screen.getvalue()
    screen = Terminal()
    monkeypatch.setattr(cli.sys, "stderr", screen)
    with pytest.raises(RuntimeError), cli.rate_bar(10, "Replaying") as update:
        update(6)
        raise RuntimeError("failed: the bar must not claim completion")
    assert "10/10" not in screen.getvalue()


@pytest.mark.slow  # a demo run; the line format is checked in the fast tier above
def test_the_demo_counts_its_days(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(cli, "PROGRESS_LINE_SECONDS", 0.0)
    result = CliRunner().invoke(cli.main, ["--data", str(tmp_path / "d"), "--now", "2026-11-01",
                                           "demo", "--subjects", "2", "--years", "1",
                                           "--sweeps", "end"])
    assert result.exit_code == 0, result.output
    days = re.findall(r"^Publishing history: ([\d,]+) of 366 days", result.stderr, re.M)
    assert days and days[-1] == "366", result.stderr
