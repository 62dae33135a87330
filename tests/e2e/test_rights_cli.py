"""``ledger permits`` and ``ledger subject export`` through click's CliRunner: exit codes,
--json, one-line errors, the extract's file permissions."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

import cli
from tests.conftest import ANNA, make_event

NOW = "2026-03-05T12:00:00Z"


def run(*args: str, input: str | None = None) -> Result:
    return CliRunner().invoke(cli.main, list(args), input=input, catch_exceptions=False)


@pytest.fixture
def data(tmp_path: Path) -> str:
    path = str(tmp_path / "d")
    assert run("--data", path, "init").exit_code == 0
    events = [
        make_event("SubjectRegistered", occurred_at="2026-01-10T09:00:00Z"),
        make_event("NewsletterSubscribed", occurred_at="2026-01-11T09:00:00Z"),
        make_event("Unsubscribed", occurred_at="2026-02-01T09:00:00Z", list="*", channel="sms"),
    ]
    lines = "".join(json.dumps(e) + "\n" for e in events)
    assert run("--data", path, "--now", NOW, "publish", "-", input=lines).exit_code == 0
    return path


@pytest.fixture
def anna(data: str) -> str:
    result = run("--data", data, "subject", "id", "--email", ANNA, "--controller", "cowrite")
    return result.stdout.strip()


def permits(data: str, *args: str) -> Result:
    return run("--data", data, "--now", NOW, "permits", *args)


def test_permitted_exits_0_with_the_deciding_event(data: str, anna: str) -> None:
    result = permits(data, anna, "newsletter", "--channel", "email")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("yes: opted in to the newsletter on email: "
                                    "NewsletterSubscribed on 2026-01-11")
    as_json = json.loads(permits(data, anna, "newsletter", "--channel", "email", "--json").stdout)
    assert as_json["permitted"] is True and as_json["controller"] == "cowrite"
    assert as_json["evidence"]["type"] == "NewsletterSubscribed"
    assert {"permitted", "reason", "rule", "purpose", "basis", "channel", "subject",
            "as_of"} <= as_json.keys()


def test_not_permitted_exits_1(data: str) -> None:
    result = permits(data, "--email", ANNA, "--controller", "cowrite", "marketing",
                     "--channel", "sms", "--json")
    assert result.exit_code == 1
    body = json.loads(result.stdout)
    assert body["permitted"] is False and "Unsubscribed on 2026-02-01" in body["reason"]
    plain = permits(data, "--email", ANNA, "--controller", "cowrite", "marketing",
                    "--channel", "sms")
    assert plain.exit_code == 1 and plain.stdout.startswith("no: unsubscribed from marketing on sms")


def test_as_of_before_the_events_were_recorded(data: str, anna: str) -> None:
    result = permits(data, anna, "service", "--as-of", "2026-03-01", "--json")
    assert result.exit_code == 2  # nothing was known about anna on 2026-03-01
    assert "unknown subject" in result.stderr
    later = permits(data, anna, "service", "--as-of", "2026-03-06", "--json")
    assert later.exit_code == 0 and json.loads(later.stdout)["as_of"].startswith("2026-03-06")


@pytest.mark.parametrize(("args", "message"), [
    (("f" * 64, "service"), "unknown subject"),
    (("--email", "nobody@example.se", "--controller", "cowrite", "service"), "unknown subject"),
    (("--email", ANNA, "--controller", "cowrite", "teleportation"),
     "unknown purpose 'teleportation' for policy 'cowrite'"),
    (("--email", ANNA, "--controller", "cowrite", "marketing", "--channel", "pigeon"),
     "--channel: unknown channel"),
    (("--email", ANNA, "service"), "need --controller"),
    (("--email", ANNA, "--controller", "acme", "service"), "unknown controller"),
    (("service",), "give SUBJECT PURPOSE"),
    (("--email", ANNA, "--controller", "cowrite", "service", "--as-of", "yesterday"),
     "--as-of: not an ISO-8601 timestamp"),
])
def test_usage_errors_exit_2_with_one_line(data: str, args: tuple[str, ...], message: str) -> None:
    result = permits(data, *args)
    assert result.exit_code == 2
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.output


# --- subject export ------------------------------------------------------------------------


def test_export_to_stdout(data: str, anna: str) -> None:
    result = run("--data", data, "--now", NOW, "subject", "export", "--email", ANNA,
                 "--controller", "cowrite")
    assert result.exit_code == 0, result.output
    extract = json.loads(result.stdout)
    assert extract["subject"] == anna
    assert extract["personal_data"]["current"]["name"] == "Anna Svensson"
    by_id = run("--data", data, "--now", NOW, "subject", "export", "--subject", anna,
                "--controller", "cowrite", "--json")
    assert json.loads(by_id.stdout)["personal_data"] == extract["personal_data"]


def test_export_out_file_is_private(data: str, tmp_path: Path) -> None:
    out = tmp_path / "extract.json"
    out.write_text("old")
    out.chmod(0o644)  # an existing file is replaced (with --force) by a new private one
    refused = run("--data", data, "--now", NOW, "subject", "export", "--email", ANNA,
                  "--controller", "cowrite", "--out", str(out))
    assert refused.exit_code == 2 and "--force" in refused.stderr and out.read_text() == "old"
    result = run("--data", data, "--now", NOW, "subject", "export", "--email", ANNA,
                 "--controller", "cowrite", "--out", str(out), "--force")
    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert json.loads(out.read_text())["personal_data"]["current"]["name"] == "Anna Svensson"


@pytest.mark.parametrize("inside", ["extract.json", "sub/../extract.json"])
def test_export_refuses_a_file_inside_the_data_directory(data: str, inside: str) -> None:
    target = Path(data) / inside
    result = run("--data", data, "--now", NOW, "subject", "export", "--email", ANNA,
                 "--controller", "cowrite", "--out", str(target))
    assert result.exit_code == 2
    assert "inside the data directory" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (Path(data) / "extract.json").exists()


def test_export_errors_exit_2(data: str) -> None:
    unknown = run("--data", data, "--now", NOW, "subject", "export", "--email",
                  "nobody@example.se", "--controller", "cowrite")
    assert unknown.exit_code == 2 and "unknown subject" in unknown.stderr
    neither = run("--data", data, "subject", "export", "--controller", "cowrite")
    assert neither.exit_code == 2 and "give a SUBJECT pseudonym" in neither.stderr
