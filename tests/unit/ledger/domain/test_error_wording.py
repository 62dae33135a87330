"""Library errors name their input by its domain name (``log``, ``into``), never by a CLI flag;
the CLI's one error printer (``cli.cli_message``) puts its flag back, so the command line
reads exactly as it always did."""

from __future__ import annotations

import pickle
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner

import cli
from ledger import bootstrap
from ledger.adapters.confluent import RegistrySchemaIds
from ledger.adapters.files import check_target, write_private_file
from ledger.adapters.kafka_log import KafkaSettings
from ledger.adapters.sqlite_scan import connect
from ledger.config import Settings, load_config
from ledger.contracts.schemas import default_registry
from ledger.domain.chain_check import DigestMismatch
from ledger.domain.clock import ledger_clock
from ledger.domain.errors import LedgerError, TargetExists, UsageError
from ledger.domain.subjects import SubjectSelector
from projections.engine.workers import Worker
from projections.store.sandbox import check_replay_target

SUPPORTED = "(use 'embedded' or kafka://host:port/topic)"


def raised(call: Callable[[], object]) -> LedgerError:
    with pytest.raises(LedgerError) as caught:
        call()
    return caught.value


def cases(tmp: Path) -> list[tuple[Callable[[], object], str, str]]:
    """(call, its message in Python, its message on the command line)."""
    existing = tmp / "exists.json"
    existing.write_text("{}")
    link = tmp / "link.json"
    link.symlink_to(existing)
    data, live = tmp / "data", tmp / "data" / "projections.duckdb"
    data.mkdir()
    return [
        (lambda: bootstrap.backend(Settings(tmp, "ftp://x")),
         f"log: unsupported log 'ftp://x' {SUPPORTED}", f"--log: unsupported log 'ftp://x' {SUPPORTED}"),
        (lambda: bootstrap.open_kafka_log(Settings(tmp)),
         "log: needs a Kafka log, kafka://host:port/topic (or LEDGER_LOG)",
         "this command needs --log kafka://host:port/topic (or LEDGER_LOG)"),
        (lambda: KafkaSettings.parse("kafka://h:x/t"),
         "log 'kafka://h:x/t': bad broker address 'h:x' (expected kafka://host:port/topic)",
         "--log 'kafka://h:x/t': bad broker address 'h:x' (expected kafka://host:port/topic)"),
        (lambda: RegistrySchemaIds("ftp://r", "t", default_registry()),
         "schema_registry: expected an http(s) URL, got 'ftp://r'",
         "--schema-registry: expected an http(s) URL, got 'ftp://r'"),
        (lambda: write_private_file(existing, "x"),
         f"out: {existing} exists (pass force=True to replace it)",
         f"--out: {existing} exists (use --force to replace it)"),
        (lambda: write_private_file(existing, "x", option="--html"),  # the older spelling
         f"html: {existing} exists (pass force=True to replace it)",
         f"--html: {existing} exists (use --force to replace it)"),
        (lambda: check_target(link, True, "html"),
         f"html: {link} is a symbolic link; refusing to write through it (remove it or choose "
         "another file)",
         f"--html: {link} is a symbolic link; refusing to write through it (remove it or choose "
         "another file)"),
        (lambda: load_config(tmp),
         f"data_dir: no ledger in {tmp}: create it first (Ledger.init)",
         f"no ledger in {tmp}: run `ledger init` (or `ledger --data DIR init`)"),
        (lambda: connect(tmp / "log.sqlite"),
         f"data_dir: no event log at {tmp / 'log.sqlite'}: is it the ledger's data directory?",
         f"no event log at {tmp / 'log.sqlite'}: is --data the ledger's data directory?"),
        (lambda: Worker.parse("2/2"),
         "worker: expected I/N with 0 <= I < N, e.g. 0/2, got '2/2'",
         "--worker: expected I/N with 0 <= I < N, e.g. 0/2, got '2/2'"),
        (lambda: check_replay_target(live, data, live, force=True),
         "into: that is the live projections file; choose another file",
         "--into: that is the live projections file; choose another file"),
        (lambda: check_replay_target(existing, data, live, force=False),
         f"into: {existing} exists (pass force=True to replace it)",
         f"--into: {existing} exists (use --force to replace it)"),
        (lambda: ledger_clock("yesterday"),
         "now: not an ISO-8601 timestamp (e.g. 2026-03-01T09:30:00Z): 'yesterday'",
         "--now: not an ISO-8601 timestamp (e.g. 2026-03-01T09:30:00Z): 'yesterday'"),
        (lambda: SubjectSelector(),
         "name the subject: a pseudonym, or an e-mail address or account id with its controller",
         "give a SUBJECT pseudonym, or --email/--account with --controller"),
        (lambda: SubjectSelector(email_address="anna@example.se"),
         "an e-mail address or account id needs its controller (the pseudonym is per controller)",
         "--email/--account need --controller (the pseudonym is per controller)"),
    ]


def test_python_messages_name_no_flag_and_the_cli_keeps_its_own(tmp_path: Path) -> None:
    for call, python, command_line in cases(tmp_path):
        e = raised(call)
        assert (str(e), cli.cli_message(e)) == (python, command_line)
        assert "--" not in str(e)


def test_an_error_keeps_its_parameter_across_processes(tmp_path: Path) -> None:
    for error in (UsageError("bad", parameter="log", value="x"), TargetExists(tmp_path, "into")):
        again = pickle.loads(pickle.dumps(error))
        assert (type(again), str(again), cli.cli_message(again)) == (
            type(error), str(error), cli.cli_message(error))


def test_the_command_line_prints_the_flag(tmp_path: Path) -> None:
    runner = CliRunner()
    data = str(tmp_path / "d")
    assert runner.invoke(cli.main, ["--data", data, "init"]).exit_code == 0
    result = runner.invoke(cli.main, ["--data", data, "--log", "ftp://x", "publish", "-"], input="")
    assert (result.exit_code, result.stderr) == (
        2, f"Error: --log: unsupported log 'ftp://x' {SUPPORTED}\n")
    result = runner.invoke(cli.main, ["--data", str(tmp_path / "none"), "controller", "list"])
    assert (result.exit_code, result.stderr) == (
        2, f"Error: no ledger in {tmp_path / 'none'}: run `ledger init` (or `ledger --data DIR "
           "init`)\n")


def test_a_digest_mismatch_points_python_at_verifying_and_the_cli_at_its_command() -> None:
    e = DigestMismatch("the log no longer matches the digest")
    assert str(e) == "the log no longer matches the digest: verify the log against the digest to find where"
    assert cli.cli_message(e) == "the log no longer matches the digest: run `ledger audit verify --digest`"
