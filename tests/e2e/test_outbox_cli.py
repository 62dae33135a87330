"""ledger outbox list|delivered|failed through the command line: exact output, one-line
errors (exit 2), and the contact address nowhere but in the listing."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

import cli
from tests.integration.test_outbox import ANNA, build_history

pytestmark = pytest.mark.slow  # each command opens the ledger and its projections (~1 s)


def run(*args: str):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(cli.main, list(args))


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    path = tmp_path_factory.mktemp("outbox-cli") / "d"
    return path, build_history(path)


@pytest.fixture
def data(history: tuple[Path, str], tmp_path: Path) -> tuple[str, str]:
    shutil.copytree(history[0], tmp_path / "d")
    return str(tmp_path / "d"), history[1]


def test_list_delivered_failed_exact_output(data: tuple[str, str]) -> None:
    path, notice_id = data
    listed = run("--data", path, "--now", "2026-06-28", "outbox", "list", "--json")
    assert listed.exit_code == 0, listed.output
    messages = json.loads(listed.output)
    notice = next(m for m in messages if m["kind"] == "deletion_notice")
    answer = next(m for m in messages if m["kind"] == "extract_ready")
    assert notice == {
        "message_id": notice_id, "kind": "deletion_notice", "controller": "cowrite",
        "subject": notice["subject"], "contact": ANNA, "contact_note": None,
        "due_at": "2026-06-27T00:00:00.000000Z", "erase_from": "2026-07-12T00:00:00.000000Z",
        "clause": notice["clause"], "policy": "cowrite", "attempts_failed": 0,
        "attempts_allowed": 4, "request_id": None}
    assert answer["contact"] == "bo@example.se" and answer["request_id"] == "rq-1"

    table = run("--data", path, "--now", "2026-06-28", "outbox", "list", "--kind", "deletion_notice")
    assert table.exit_code == 0
    id_width = len(notice_id)
    assert table.output.splitlines() == [
        "message_id".ljust(id_width) + "  kind             controller  subject            due_at      contact",
        "-" * id_width + "  ---------------  ----------  -----------------  ----------  " + "-" * len(ANNA),
        f"{notice_id}  deletion_notice  cowrite     {notice['subject'][:16]}…  2026-06-27  {ANNA}",
        "(1 row)"]

    failed = run("--data", path, "--now", "2026-06-29", "outbox", "failed", notice_id,
                 "--reason", f"550 <{ANNA}> mailbox full", "--at", "2026-06-28T12:00:00Z")
    assert failed.exit_code == 0, failed.output
    assert failed.output.startswith(f"deletion_notice {notice_id}: failed attempt at "
                                    "2026-06-28T12:00:00.000000Z recorded at position ")
    assert failed.output.endswith("; to be retried\n")
    again = run("--data", path, "--now", "2026-06-29", "outbox", "failed", notice_id,
                "--reason", f"550 <{ANNA}> mailbox full", "--at", "2026-06-28T12:00:00Z")
    assert again.output == (f"deletion_notice {notice_id}: this failed attempt is already "
                            "recorded (duplicate)\n")

    done = run("--data", path, "--now", "2026-06-30", "outbox", "delivered", notice_id, "--json")
    assert done.exit_code == 0, done.output
    report = json.loads(done.output)
    assert {k: report[k] for k in ("message_id", "kind", "report", "status", "at", "final")} == {
        "message_id": notice_id, "kind": "deletion_notice", "report": "delivered",
        "status": "accepted", "at": "2026-06-30T00:00:00.000000Z", "final": True}
    twice = run("--data", path, "--now", "2026-07-01", "outbox", "delivered", notice_id)
    assert twice.output == f"deletion_notice {notice_id}: this delivery is already recorded (duplicate)\n"
    after = run("--data", path, "--now", "2026-07-01", "outbox", "list", "--kind", "deletion_notice")
    assert after.output.splitlines()[-1] == "(0 rows)"
    # decisions show the erasure counted from the delivery (2026-06-30 + P14D)
    decisions = json.loads(run("--data", path, "--now", "2026-07-01", "decisions", "--json").output)
    assert any(d["rule"] == "notice_period" and d["due_at"] == "2026-07-14T00:00:00.000000Z"
               for d in decisions)


@pytest.mark.parametrize("args, line", [
    (["delivered", "00000000-0000-4000-8000-000000000000"],
     "Error: ID '00000000-0000-4000-8000-000000000000': no message of the outbox has this id"),
    (["delivered", "x" * 5000], "Error: ID: not a message id (a UUID such as 6f1c…-…)"),
    (["failed", "00000000-0000-4000-8000-000000000000", "--reason", "x" * 501],
     "Error: --reason: longer than 500 characters"),
    (["failed", "00000000-0000-4000-8000-000000000000", "--reason", "a\x00b"],
     "Error: --reason: control characters are not allowed"),
    (["delivered", "00000000-0000-4000-8000-000000000000", "--at", "yesterday"], None),
    (["list", "--kind", "spam"], None),
])
def test_hostile_input_is_one_line_exit_2(data: tuple[str, str], args: list[str],
                                          line: str | None) -> None:
    path, _ = data
    result = run("--data", path, "--now", "2026-07-01", "outbox", *args)
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ")
    if line is not None:
        assert lines[0] == line
    assert "x" * 100 not in result.output  # a hostile id is never echoed back


def test_a_delivery_before_the_notice_was_sent_is_refused(data: tuple[str, str]) -> None:
    path, notice_id = data
    result = run("--data", path, "--now", "2026-07-01", "outbox", "delivered", notice_id,
                 "--at", "2026-06-01")
    assert result.exit_code == 2
    assert result.output == ("Error: --at: 2026-06-01T00:00:00.000000Z is before the message was owed "
                             "(2026-06-27T00:00:00.000000Z)\n")


def test_the_address_is_never_in_duckdb_files_logs_or_dead_letters(
        data: tuple[str, str], caplog: pytest.LogCaptureFixture) -> None:
    path, notice_id = data
    caplog.set_level(logging.DEBUG)
    # a producer trying to publish an outbox report is rejected into the dead letters
    forged = json.dumps({"type": "NoticeDelivered", "event_id": "00000000-0000-4000-8000-00000000000f",
                         "controller": "cowrite", "occurred_at": "2026-06-28T00:00:00.000000Z",
                         "source": "web", "actor": "subject", "subject": {"email": ANNA},
                         "message_id": notice_id, "kind": "deletion_notice"})
    published = CliRunner().invoke(cli.main, ["--data", path, "--now", "2026-06-28", "publish", "-"],
                                   input=forged + "\n")
    assert "recorded by the ledger's outbox" in published.output
    assert run("--data", path, "--now", "2026-06-28", "outbox", "list").exit_code == 0
    assert run("--data", path, "--now", "2026-06-29", "outbox", "failed", notice_id, "--reason",
               f"bounce from {ANNA}").exit_code == 0
    assert run("--data", path, "--now", "2026-06-30", "outbox", "delivered", notice_id).exit_code == 0
    assert run("--data", path, "--now", "2026-06-30", "project").exit_code == 0
    needles = [ANNA.encode(), ANNA.lower().encode(), ANNA.encode("utf-16-le")]
    files = [p for p in Path(path).rglob("*") if p.is_file()]
    assert any(p.suffix == ".duckdb" for p in files)
    for p in files:
        content = p.read_bytes()
        assert not any(n in content for n in needles), p
    assert ANNA not in caplog.text and ANNA.lower() not in caplog.text
