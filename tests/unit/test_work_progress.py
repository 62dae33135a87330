"""cli.work_progress: a long command is never silent on stderr, whether or not it is a tty."""

from __future__ import annotations

import io

import pytest

import cli


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_off_a_terminal_it_prints_whole_lines(monkeypatch: pytest.MonkeyPatch) -> None:
    err = io.StringIO()
    monkeypatch.setattr(cli.sys, "stderr", err)
    with cli.work_progress("Re-deciding sweeps", every=0.0) as update:
        for done in (10, 20, 40):
            update(done, 40)
    lines = err.getvalue().splitlines()
    assert lines and all(line.startswith("Re-deciding sweeps: ") for line in lines)
    assert "\r" not in err.getvalue() and "40 of 40 (100%" in lines[-1]


def test_on_a_terminal_it_draws_one_bar_and_ends_the_line(monkeypatch: pytest.MonkeyPatch) -> None:
    err = _Tty()
    monkeypatch.setattr(cli.sys, "stderr", err)
    with cli.work_progress("Re-deciding sweeps") as update:
        update(40, 40)
    out = err.getvalue()
    assert out.startswith("\rRe-deciding sweeps [") and "100%" in out and out.endswith("\n")


def test_a_short_run_off_a_terminal_prints_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    err = io.StringIO()
    monkeypatch.setattr(cli.sys, "stderr", err)
    with cli.work_progress("Re-deciding sweeps") as update:
        update(1, 2)
        update(2, 2)
    assert err.getvalue() == ""
