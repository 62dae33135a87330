"""The command line through click's CliRunner: exit codes, one-line errors, --json."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

import cli
from tests.conftest import make_event


def run(*args: str, input: str | bytes | None = None, env: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(cli.main, list(args), input=input, env=env, catch_exceptions=False)


@pytest.fixture
def data(tmp_path: Path) -> str:
    path = str(tmp_path / "d")
    assert run("--data", path, "init").exit_code == 0
    return path


def jsonl(*events: dict) -> str:
    return "".join(json.dumps(e, ensure_ascii=False) + "\n" for e in events)


def test_init_creates_a_private_master_key_and_is_idempotent(tmp_path: Path) -> None:
    path = tmp_path / "d"
    result = run("--data", str(path), "init", "--json")
    assert result.exit_code == 0 and json.loads(result.output) == {"data_dir": str(path), "created": True}
    assert stat.S_IMODE((path / "master.key").stat().st_mode) == 0o600
    assert stat.S_IMODE(path.stat().st_mode) == 0o700
    again = run("--data", str(path), "init")
    assert again.exit_code == 0 and "Already initialised" in again.output
    listed = run("--data", str(path), "controller", "list", "--json")
    assert [c["controller"] for c in json.loads(listed.output)] == ["coegi", "cowrite"]


def test_publish_counts_and_exit_codes(data: str, tmp_path: Path) -> None:
    good = jsonl(make_event(), make_event("ConsentGiven"))
    result = run("--data", data, "--now", "2026-03-05", "publish", "-", "--json", input=good)
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == {"accepted": 2, "duplicates": 0, "rejected": 0, "conflicts": 0}
    again = run("--data", data, "--now", "2026-03-05", "publish", "-", "--json", input=good)
    assert json.loads(again.output) == {"accepted": 0, "duplicates": 2, "rejected": 0, "conflicts": 0}
    path = tmp_path / "mixed.jsonl"
    path.write_text(good + "{broken\n" + jsonl(make_event()))
    mixed = run("--data", data, "--now", "2026-03-05", "publish", str(path))
    assert mixed.exit_code == 1
    assert "accepted 1, duplicates 2, rejected 1" in mixed.output
    assert "line 3: malformed JSON" in mixed.output
    letters = run("--data", data, "dead-letters", "--json")
    assert [(e["origin"], e["line"]) for e in json.loads(letters.output)] == [("mixed.jsonl", 3)]


def test_subject_id_matches_the_published_pseudonym(data: str) -> None:
    run("--data", data, "--now", "2026-03-05", "publish", "-", input=jsonl(make_event()))
    pid = run("--data", data, "subject", "id", "--email", " ANNA.Svensson@example.se ",
              "--controller", "cowrite").output.strip()
    assert len(pid) == 64
    from ledger.app.service import Ledger

    with Ledger.open(data) as ledger:
        assert [e.subject for _, e in ledger.events()] == [pid]


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (("publish", "-"), 2, "no ledger in"),
        (("--now", "yesterday", "publish", "-"), 2, "--now: not an ISO-8601"),
        (("--log", "ftp://x", "publish", "-"), 2, "unsupported log"),
        (("subject", "id", "--controller", "acme", "--email", "a@example.se"), 2, "unknown controller"),
        (("subject", "id", "--controller", "cowrite"), 2, "exactly one of"),
        (("controller", "add", "Bad Name!"), 2, "invalid controller name"),
    ],
)
def test_errors_are_one_line_without_traceback(data: str, tmp_path: Path, args: tuple[str, ...],
                                                code: int, message: str) -> None:
    target = str(tmp_path / "missing") if args[0] == "publish" else data
    result = CliRunner().invoke(cli.main, ["--data", target, *args], input="")
    assert result.exit_code == code, result.output
    assert message in result.output
    assert "Traceback" not in result.output
    assert len([line for line in result.output.splitlines() if line.startswith("Error")]) == 1


@pytest.mark.parametrize("args", [
    ("subject", "id", "--controller", "acme", "--email", "a@example.se"),
    ("subject", "export", "--controller", "acme", "--email", "a@example.se"),
    ("permits", "--controller", "acme", "--email", "a@example.se", "service"),
    ("decisions", "--controller", "acme"),
    ("sweep", "--controller", "acme", "--dry-run"),
    ("explain", "--controller", "acme", "--email", "a@example.se"),
    ("audit", "report", "--controller", "acme", "--email", "a@example.se", "--html", "{tmp}/r.html"),
])
def test_an_unknown_controller_names_the_flag(data: str, tmp_path: Path, args: tuple[str, ...]) -> None:
    argv = [a.format(tmp=tmp_path) for a in args]
    result = CliRunner().invoke(cli.main, ["--data", data, *argv])
    assert (result.exit_code, result.output) == (2, "Error: --controller: unknown controller 'acme'\n")


def test_clock_behind_the_log_is_a_usage_error(data: str) -> None:
    run("--data", data, "--now", "2026-03-05", "publish", "-", input=jsonl(make_event()))
    result = CliRunner().invoke(cli.main, ["--data", data, "--now", "2026-03-04", "publish", "-"],
                                input=jsonl(make_event()))
    assert result.exit_code == 2 and "behind the log" in result.output


def test_environment_settings_are_used(data: str) -> None:
    result = run("publish", "-", "--json", input=jsonl(make_event()),
                 env={"LEDGER_DATA": data, "LEDGER_NOW": "2026-03-05T00:00:00Z"})
    assert result.exit_code == 0 and json.loads(result.output)["accepted"] == 1


def test_master_key_from_the_environment(tmp_path: Path) -> None:
    key = os.urandom(32).hex()
    path = str(tmp_path / "d")
    assert run("--data", path, "init", env={"LEDGER_MASTER_KEY": key}).exit_code == 0
    assert not (tmp_path / "d" / "master.key").exists()
    ok = run("--data", path, "--now", "2026-03-05", "publish", "-", input=jsonl(make_event()),
             env={"LEDGER_MASTER_KEY": key})
    assert ok.exit_code == 0
    wrong = CliRunner().invoke(cli.main, ["--data", path, "publish", "-"], input="",
                               env={"LEDGER_MASTER_KEY": os.urandom(32).hex()})
    assert wrong.exit_code == 2 and "wrong master key" in wrong.output
    bad = CliRunner().invoke(cli.main, ["--data", path, "publish", "-"], input="",
                             env={"LEDGER_MASTER_KEY": "short"})
    assert bad.exit_code == 2 and "LEDGER_MASTER_KEY: the master key must be 32 bytes" in bad.output


def test_a_readable_master_key_file_is_refused(data: str) -> None:
    os.chmod(Path(data) / "master.key", 0o644)
    result = CliRunner().invoke(cli.main, ["--data", data, "publish", "-"], input="")
    assert result.exit_code == 2 and "readable by others" in result.output


def test_schemas_check_passes(data: str) -> None:
    result = run("schemas", "check", "--json")
    assert result.exit_code == 0
    pairs = {(r["type"], r["writer_version"], r["reader_version"]) for r in json.loads(result.output)}
    assert ("NewsletterSubscribed", 1, 2) in pairs


def _commands(group: click.Group, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found = []
    for name, command in group.commands.items():
        found.append((*prefix, name))
        if isinstance(command, click.Group):
            found.extend(_commands(command, (*prefix, name)))
    return found


@pytest.mark.parametrize("path", _commands(cli.main), ids=" ".join)
def test_every_command_has_help(path: tuple[str, ...]) -> None:
    result = run(*path, "--help")
    assert result.exit_code == 0
    command = cli.main
    for name in path:
        command = command.commands[name]  # type: ignore[attr-defined]
    assert command.help, f"{' '.join(path)} has no help text"
