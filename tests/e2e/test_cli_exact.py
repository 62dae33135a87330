"""Exact output of the main commands, as sqlite-utils tests its CLI: the whole stdout, the whole
stderr and the exit code, each compared to a literal.

The data directory is small and deterministic: fixed event ids, e-mails, occurred_at and
``--now``. Two things are not literal, and only these:

* pseudonyms are keyed by the controller secret each ``init`` draws at random, so the tests ask
  ``ledger subject id`` for them and substitute them (``$anna``, ``$bo``, ``$cecilia``); where
  a listing is ordered by subject (``ORDER BY controller, subject``) its lines are sorted here;
* the chain head hash of an intact log covers payloads sealed with random AES-GCM nonces, so
  it differs per run: ``HEAD_HEX`` replaces just that field (and the test checks the text and
  JSON heads agree). For the same reason the Merkle root of a digest is not literal: the
  tests read it (and the head) from the digest file `ledger audit digest` wrote.
"""

from __future__ import annotations

import json
import re
import shutil
import sqlite3
from importlib import resources
from pathlib import Path
from string import Template
from typing import Any

import pytest
from click.testing import CliRunner, Result

import cli
from tests.conftest import make_event

NOW = "2026-03-02"  # the ledger clock when the events are published
LATER = "2026-07-20"  # when retention and permits are asked about
ANNA, BO, CECILIA = "anna@example.se", "bo@example.se", "cecilia@example.se"
POLICY_HASH = "d0f03cd1244fa476bb444e386abf05e0fe601b64669d0fab0aad1010eaf97b82"  # cowrite.toml


def eid(n: int) -> str:
    return f"00000000-0000-4000-8000-{n:012d}"


def event(event_type: str, n: int, email: str, occurred_at: str, **body: Any) -> dict[str, Any]:
    return make_event(event_type, event_id=eid(n), subject={"email": email},
                      occurred_at=occurred_at, **body)


# Anna: registered, opted in, last active in January (due a deletion notice by July).
# Bo: asked for erasure (pseudonymised). Cecilia: objected to marketing, active in March.
BASE = [
    event("SubjectRegistered", 1, ANNA, "2025-06-01T10:00:00Z"),
    event("ConsentGiven", 2, ANNA, "2025-06-01T10:05:00Z"),
    event("LoggedIn", 3, ANNA, "2026-01-10T10:00:00Z"),
    event("SubjectRegistered", 4, BO, "2025-06-01T10:00:00Z"),
    event("RightsRequested", 5, BO, "2026-03-01T10:00:00Z", request_id="rq-1", right="erasure"),
    event("SubjectRegistered", 6, CECILIA, "2025-09-01T10:00:00Z"),
    event("ObjectionRaised", 7, CECILIA, "2026-03-01T10:00:00Z"),
]
# One line of each outcome: a duplicate, an accepted event, malformed JSON, and a conflict
# (event 3's id with other content).
MIXED = "".join(line + "\n" for line in [
    json.dumps(BASE[0]),
    json.dumps(event("LoggedIn", 8, CECILIA, "2026-03-02T08:00:00Z")),
    "{broken",
    json.dumps({**BASE[2], "source": "app"}),
])


def run(*args: str, input: str | None = None) -> Result:
    return CliRunner().invoke(cli.main, list(args), input=input, catch_exceptions=False)


def jsonl(events: list[dict[str, Any]]) -> str:
    return "".join(json.dumps(e) + "\n" for e in events)


def expect(result: Result, code: int, stdout: str, stderr: str = "", **names: str) -> None:
    """The exit code, the whole stdout and the whole stderr, with $names substituted."""
    got = (result.exit_code, result.stdout, result.stderr)
    assert got == (code, Template(stdout).substitute(names), Template(stderr).substitute(names))


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """init, then BASE and MIXED published at NOW (copied per test: tests tamper and sweep)."""
    path = tmp_path_factory.mktemp("exact") / "d"
    assert run("--data", str(path), "init").exit_code == 0
    published = run("--data", str(path), "--now", NOW, "publish", "-", input=jsonl(BASE))
    assert (published.exit_code, published.stdout) == (0, "accepted 7, duplicates 0, rejected 0\n")
    assert run("--data", str(path), "--now", NOW, "publish", "-", input=MIXED).exit_code == 1
    return path


@pytest.fixture(scope="module")
def base_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("exact-base") / "d"
    assert run("--data", str(path), "init").exit_code == 0
    assert run("--data", str(path), "--now", NOW, "publish", "-", input=jsonl(BASE)).exit_code == 0
    return path


@pytest.fixture
def base(base_template: Path, tmp_path: Path) -> str:
    """BASE only: for publishing MIXED."""
    path = tmp_path / "d"
    shutil.copytree(base_template, path)
    return str(path)


@pytest.fixture
def data(template: Path, tmp_path: Path) -> str:
    """BASE and MIXED: 8 events in the log, 2 dead letters."""
    path = tmp_path / "d"
    shutil.copytree(template, path)
    return str(path)


@pytest.fixture
def ids(data: str) -> dict[str, str]:
    """The pseudonyms in this data directory, from `ledger subject id`."""
    names = {"anna": ANNA, "bo": BO, "cecilia": CECILIA}
    found = {}
    for name, email in names.items():
        result = run("--data", data, "subject", "id", "--email", email, "--controller", "cowrite")
        assert result.exit_code == 0 and re.fullmatch(r"[0-9a-f]{64}\n", result.stdout)
        found[name] = result.stdout.strip()
    return found


# --- publish ------------------------------------------------------------------------------

def test_publish_text(base: str) -> None:
    expect(run("--data", base, "--now", NOW, "publish", "-", input=MIXED), 1,
           "accepted 1, duplicates 1, rejected 2 (1 conflict)\n",
           "  line 3: malformed JSON: Expecting property name enclosed in double quotes at column 2\n"
           "  line 4: event_id: conflicts with the event at position 3 (same id, different content)\n")


def test_publish_json(base: str) -> None:
    expect(run("--data", base, "--now", NOW, "publish", "-", "--json", input=MIXED), 1, """\
{
  "accepted": 1,
  "duplicates": 1,
  "rejected": 2,
  "conflicts": 1
}
""")


def test_publish_everything_again_is_all_duplicates(data: str) -> None:
    expect(run("--data", data, "--now", NOW, "publish", "-", input=jsonl(BASE)), 0,
           "accepted 0, duplicates 7, rejected 0\n")


def test_publish_everything_again_is_all_duplicates_json(data: str) -> None:
    expect(run("--data", data, "--now", NOW, "publish", "-", "--json", input=jsonl(BASE)), 0, """\
{
  "accepted": 0,
  "duplicates": 7,
  "rejected": 0,
  "conflicts": 0
}
""")


def test_publish_nothing(base: str) -> None:
    expect(run("--data", base, "--now", NOW, "publish", "-", input=""), 0,
           "accepted 0, duplicates 0, rejected 0\n")
    expect(run("--data", base, "--now", NOW, "publish", "-", "--json", input=""), 0, """\
{
  "accepted": 0,
  "duplicates": 0,
  "rejected": 0,
  "conflicts": 0
}
""")


def test_publish_a_file_names_it_in_the_dead_letters(base: str, tmp_path: Path) -> None:
    mixed = tmp_path / "mixed.jsonl"
    mixed.write_text(MIXED)
    expect(run("--data", base, "--now", NOW, "publish", str(mixed)), 1,
           "accepted 1, duplicates 1, rejected 2 (1 conflict)\n",
           "  line 3: malformed JSON: Expecting property name enclosed in double quotes at column 2\n"
           "  line 4: event_id: conflicts with the event at position 3 (same id, different content)\n")
    expect(run("--data", base, "dead-letters"), 0,
           "2026-03-02T00:00:00.000000Z  mixed.jsonl:3  malformed JSON: Expecting property name "
           "enclosed in double quotes at column 2\n"
           "2026-03-02T00:00:00.000000Z  mixed.jsonl:4  event_id: conflicts with the event at "
           "position 3 (same id, different content)\n")


# --- decisions ----------------------------------------------------------------------------

TABLE_HEAD = """\
controller  subject                                                           action        due_at                       rule
----------  ----------------------------------------------------------------  ------------  ---------------------------  -----------------
"""
TABLE_ROWS = [  # ordered by subject (a pseudonym) in the output: sorted before comparing
    "cowrite     $anna  notify        2026-06-26T10:00:00.000000Z  inactivity_notice",
    "cowrite     $cecilia  keep          2026-08-19T08:00:00.000000Z  active",
    "cowrite     $bo  pseudonymise  2026-03-01T10:00:00.000000Z  erasure_request",
]
COUNTS = "keep 1, notify 1, pseudonymise 1, erase 0, hold 0, pseudonymised 0, erased 0\n"


def by_subject(lines: list[str], ids: dict[str, str]) -> str:
    return "".join(line + "\n" for line in sorted(Template(line).substitute(ids) for line in lines))


def test_decisions_table(data: str, ids: dict[str, str]) -> None:
    expect(run("--data", data, "--now", LATER, "decisions"), 0,
           TABLE_HEAD + by_subject(TABLE_ROWS, ids) + "(3 rows)\n", COUNTS)


def test_decisions_action_filters_rows_not_counts(data: str, ids: dict[str, str]) -> None:
    expect(run("--data", data, "--now", LATER, "decisions", "--action", "notify"), 0, """\
controller  subject                                                           action  due_at                       rule
----------  ----------------------------------------------------------------  ------  ---------------------------  -----------------
cowrite     $anna  notify  2026-06-26T10:00:00.000000Z  inactivity_notice
(1 row)
""", COUNTS, **ids)
    # the columns are as wide as the rows shown: "rule" shrinks to "erasure_request"
    expect(run("--data", data, "--now", LATER, "decisions", "--action", "keep", "--action", "pseudonymise"), 0,
           "controller  subject                                                           action        due_at                       rule\n"
           "----------  ----------------------------------------------------------------  ------------  ---------------------------  ---------------\n"
           + by_subject(TABLE_ROWS[1:], ids) + "(2 rows)\n", COUNTS)
    expect(run("--data", data, "--now", LATER, "decisions", "--action", "erase"), 0, """\
controller  subject  action  due_at  rule
----------  -------  ------  ------  ----
(0 rows)
""", COUNTS)


DECISION_JSON = {
    "anna": """\
  {
    "subject": "$anna",
    "controller": "cowrite",
    "action": "notify",
    "due_at": "2026-06-26T10:00:00.000000Z",
    "rule": "inactivity_notice",
    "policy": "cowrite",
    "policy_hash": "$policy_hash",
    "evidence": [
      "00000000-0000-4000-8000-000000000003"
    ],
    "shred": []
  }""",
    "cecilia": """\
  {
    "subject": "$cecilia",
    "controller": "cowrite",
    "action": "keep",
    "due_at": "2026-08-19T08:00:00.000000Z",
    "rule": "active",
    "policy": "cowrite",
    "policy_hash": "$policy_hash",
    "evidence": [
      "00000000-0000-4000-8000-000000000008"
    ],
    "shred": []
  }""",
    "bo": """\
  {
    "subject": "$bo",
    "controller": "cowrite",
    "action": "pseudonymise",
    "due_at": "2026-03-01T10:00:00.000000Z",
    "rule": "erasure_request",
    "policy": "cowrite",
    "policy_hash": "$policy_hash",
    "evidence": [
      "00000000-0000-4000-8000-000000000005"
    ],
    "shred": []
  }""",
}


def test_decisions_json(data: str, ids: dict[str, str]) -> None:
    objects = ",\n".join(DECISION_JSON[name] for name in sorted(ids, key=ids.__getitem__))
    expect(run("--data", data, "--now", LATER, "decisions", "--json"), 0,
           "[\n" + objects + "\n]\n", policy_hash=POLICY_HASH, **ids)


def test_decisions_csv(data: str, ids: dict[str, str]) -> None:
    rows = [
        f"$anna,cowrite,notify,2026-06-26T10:00:00.000000Z,inactivity_notice,cowrite,{POLICY_HASH},{eid(3)}",
        f"$cecilia,cowrite,keep,2026-08-19T08:00:00.000000Z,active,cowrite,{POLICY_HASH},{eid(8)}",
        f"$bo,cowrite,pseudonymise,2026-03-01T10:00:00.000000Z,erasure_request,cowrite,{POLICY_HASH},{eid(5)}",
    ]
    expect(run("--data", data, "--now", LATER, "decisions", "--csv"), 0,
           "subject,controller,action,due_at,rule,policy,policy_hash,evidence\n" + by_subject(rows, ids))


def test_decisions_as_of_before_anything_was_recorded(data: str) -> None:
    expect(run("--data", data, "--now", LATER, "decisions", "--as-of", "2026-03-01"), 0, """\
controller  subject  action  due_at  rule
----------  -------  ------  ------  ----
(0 rows)
""", "keep 0, notify 0, pseudonymise 0, erase 0, hold 0, pseudonymised 0, erased 0\n")


def test_decisions_as_of_before_anything_was_recorded_json_and_csv(data: str) -> None:
    expect(run("--data", data, "--now", LATER, "decisions", "--as-of", "2026-03-01", "--json"), 0,
           "[]\n")
    expect(run("--data", data, "--now", LATER, "decisions", "--as-of", "2026-03-01", "--csv"), 0,
           "subject,controller,action,due_at,rule,policy,policy_hash,evidence\n")


def test_decisions_of_a_controller_without_subjects(data: str) -> None:
    expect(run("--data", data, "--now", LATER, "decisions", "--controller", "coegi"), 0, """\
controller  subject  action  due_at  rule
----------  -------  ------  ------  ----
(0 rows)
""", "keep 0, notify 0, pseudonymise 0, erase 0, hold 0, pseudonymised 0, erased 0\n")
    expect(run("--data", data, "--now", LATER, "decisions", "--controller", "coegi", "--json"), 0,
           "[]\n")


# cowrite.toml with a shorter inactivity period under its own name: Anna's notice falls due in
# March instead of June, Cecilia's in May instead of being kept.
STRICT_POLICY_HASH = "ab3eeca93d1fc4afc6a2c21530cbbef9456abab1873bcb839a0525f01c9005b6"
STRICT_ROWS = [
    "cowrite     $anna  notify        2026-03-27T10:00:00.000000Z  inactivity_notice",
    "cowrite     $cecilia  notify        2026-05-19T08:00:00.000000Z  inactivity_notice",
    "cowrite     $bo  pseudonymise  2026-03-01T10:00:00.000000Z  erasure_request",
]


@pytest.fixture
def strict_policy(tmp_path: Path) -> str:
    text = (resources.files("ledger.domain.retention.policies") / "cowrite.toml").read_text()
    assert 'name = "cowrite"\n' in text and 'inactive_after = "P6M"\n' in text
    path = tmp_path / "strict.toml"
    path.write_text(text.replace('name = "cowrite"', 'name = "cowrite-strict"')
                    .replace('inactive_after = "P6M"', 'inactive_after = "P3M"'))
    return str(path)


def test_decisions_with_another_policy(data: str, ids: dict[str, str], strict_policy: str) -> None:
    expect(run("--data", data, "--now", LATER, "decisions", "--controller", "cowrite",
               "--policy", strict_policy), 0,
           TABLE_HEAD + by_subject(STRICT_ROWS, ids) + "(3 rows)\n",
           "keep 0, notify 2, pseudonymise 1, erase 0, hold 0, pseudonymised 0, erased 0\n")
    strict = {
        "anna": DECISION_JSON["anna"].replace("2026-06-26", "2026-03-27"),
        "cecilia": DECISION_JSON["cecilia"].replace('"keep"', '"notify"')
                   .replace("2026-08-19", "2026-05-19").replace('"active"', '"inactivity_notice"'),
        "bo": DECISION_JSON["bo"],
    }
    objects = ",\n".join(strict[name] for name in sorted(ids, key=ids.__getitem__))
    expect(run("--data", data, "--now", LATER, "decisions", "--controller", "cowrite",
               "--policy", strict_policy, "--json"), 0,
           "[\n" + objects.replace('"policy": "cowrite"', '"policy": "cowrite-strict"') + "\n]\n",
           policy_hash=STRICT_POLICY_HASH, **ids)


# --- permits ------------------------------------------------------------------------------

def test_permits_yes_exits_0(data: str, ids: dict[str, str]) -> None:
    expect(run("--data", data, "--now", LATER, "permits", "--email", ANNA, "--controller", "cowrite",
               "newsletter"), 0,
           f"yes: opted in to the newsletter: ConsentGiven on 2025-06-01 ({eid(2)})\n")
    # by pseudonym: the one controller that knows it answers
    expect(run("--data", data, "--now", LATER, "permits", ids["anna"], "marketing"), 0,
           "yes: legitimate interest in marketing: no objection or opt-out recorded; relationship "
           f"since SubjectRegistered on 2025-06-01 ({eid(1)})\n")


def test_permits_no_exits_1(data: str) -> None:
    expect(run("--data", data, "--now", LATER, "permits", "--email", CECILIA, "--controller", "cowrite",
               "marketing"), 1,
           f"no: objection to marketing: ObjectionRaised on 2026-03-01 ({eid(7)})\n")
    expect(run("--data", data, "--now", LATER, "permits", "--email", BO, "--controller", "cowrite",
               "newsletter"), 1,
           "no: no newsletter subscription or consent recorded\n")


def test_permits_json(data: str, ids: dict[str, str]) -> None:
    expect(run("--data", data, "--now", LATER, "permits", "--email", ANNA, "--controller", "cowrite",
               "newsletter", "--json"), 0, """\
{
  "permitted": true,
  "reason": "opted in to the newsletter: ConsentGiven on 2025-06-01 (00000000-0000-4000-8000-000000000002)",
  "rule": "consent",
  "purpose": "newsletter",
  "basis": "consent",
  "channel": null,
  "evidence": {
    "event_id": "00000000-0000-4000-8000-000000000002",
    "type": "ConsentGiven",
    "at": "2025-06-01T10:05:00.000000Z",
    "position": 2
  },
  "controller": "cowrite",
  "subject": "$anna",
  "as_of": "2026-07-20T00:00:00.000000Z"
}
""", **ids)
    expect(run("--data", data, "--now", LATER, "permits", "--email", CECILIA, "--controller", "cowrite",
               "marketing", "--json"), 1, """\
{
  "permitted": false,
  "reason": "objection to marketing: ObjectionRaised on 2026-03-01 (00000000-0000-4000-8000-000000000007)",
  "rule": "legitimate_interest",
  "purpose": "marketing",
  "basis": "legitimate_interest",
  "channel": null,
  "evidence": {
    "event_id": "00000000-0000-4000-8000-000000000007",
    "type": "ObjectionRaised",
    "at": "2026-03-01T10:00:00.000000Z",
    "position": 7
  },
  "controller": "cowrite",
  "subject": "$cecilia",
  "as_of": "2026-07-20T00:00:00.000000Z"
}
""", **ids)


def test_permits_usage_error_exits_2(data: str) -> None:
    expect(run("--data", data, "permits", "newsletter"), 2, "",
           "Error: give SUBJECT PURPOSE, or PURPOSE with --email/--account and --controller\n")


def test_permits_on_a_channel(data: str, ids: dict[str, str]) -> None:
    expect(run("--data", data, "--now", LATER, "permits", "--email", ANNA, "--controller", "cowrite",
               "newsletter", "--channel", "sms"), 0,
           f"yes: opted in to the newsletter on sms: ConsentGiven on 2025-06-01 ({eid(2)})\n")
    expect(run("--data", data, "--now", LATER, "permits", "--email", ANNA, "--controller", "cowrite",
               "newsletter", "--channel", "sms", "--json"), 0, """\
{
  "permitted": true,
  "reason": "opted in to the newsletter on sms: ConsentGiven on 2025-06-01 (00000000-0000-4000-8000-000000000002)",
  "rule": "consent",
  "purpose": "newsletter",
  "basis": "consent",
  "channel": "sms",
  "evidence": {
    "event_id": "00000000-0000-4000-8000-000000000002",
    "type": "ConsentGiven",
    "at": "2025-06-01T10:05:00.000000Z",
    "position": 2
  },
  "controller": "cowrite",
  "subject": "$anna",
  "as_of": "2026-07-20T00:00:00.000000Z"
}
""", **ids)
    expect(run("--data", data, "--now", LATER, "permits", "--email", ANNA, "--controller", "cowrite",
               "newsletter", "--channel", "pigeon"), 2, "",
           "Error: --channel: unknown channel 'pigeon' (one of app, email, post, sms)\n")


def test_permits_without_evidence_json(data: str, ids: dict[str, str]) -> None:
    expect(run("--data", data, "--now", LATER, "permits", "--email", BO, "--controller", "cowrite",
               "newsletter", "--json"), 1, """\
{
  "permitted": false,
  "reason": "no newsletter subscription or consent recorded",
  "rule": "consent",
  "purpose": "newsletter",
  "basis": "consent",
  "channel": null,
  "evidence": null,
  "controller": "cowrite",
  "subject": "$bo",
  "as_of": "2026-07-20T00:00:00.000000Z"
}
""", **ids)


def test_permits_as_of(data: str, ids: dict[str, str]) -> None:
    # everything was recorded at NOW: known as of NOW, unknown the day before
    expect(run("--data", data, "--now", LATER, "permits", "--email", CECILIA, "--controller",
               "cowrite", "marketing", "--as-of", NOW), 1,
           f"no: objection to marketing: ObjectionRaised on 2026-03-01 ({eid(7)})\n")
    for output in ([], ["--json"]):
        expect(run("--data", data, "--now", LATER, "permits", "--email", ANNA, "--controller",
                   "cowrite", "newsletter", "--as-of", "2026-03-01", *output), 2, "",
               "Error: unknown subject ${anna16}… for controller 'cowrite': no events recorded as "
               "of 2026-03-01T00:00:00.000000Z\n", anna16=ids["anna"][:16])


def test_permits_of_an_unknown_account_exits_2(data: str) -> None:
    unknown = run("--data", data, "subject", "id", "--account", "nope", "--controller", "cowrite")
    assert unknown.exit_code == 0
    expect(run("--data", data, "--now", LATER, "permits", "--account", "nope", "--controller",
               "cowrite", "newsletter"), 2, "",
           f"Error: unknown subject {unknown.stdout[:16]}… for controller 'cowrite': no events "
           "recorded\n")


# --- audit verify -------------------------------------------------------------------------

# The only normalised fields: the head hash of an intact log (see the module docstring).
HEAD_TEXT = re.compile(r"(?<=; head )[0-9a-f]{16}(?=…$)", re.MULTILINE)
HEAD_JSON = re.compile(r'(?<="head_hash": ")[0-9a-f]{64}(?=")')


def test_audit_verify_an_intact_log(data: str) -> None:
    text = run("--data", data, "audit", "verify")
    as_json = run("--data", data, "audit", "verify", "--json")
    head = HEAD_JSON.search(as_json.stdout)
    assert head is not None and HEAD_TEXT.findall(text.stdout) == [head[0][:16]]
    assert (text.exit_code, HEAD_TEXT.sub("<head>", text.stdout), text.stderr) == \
        (0, "ok: 8 records, chain intact, every record decodes; head <head>…\n", "")
    assert (as_json.exit_code, HEAD_JSON.sub("<head>", as_json.stdout), as_json.stderr) == (0, """\
{
  "ok": true,
  "records": 8,
  "first_bad_position": null,
  "kind": null,
  "reason": null,
  "head_hash": "<head>",
  "decode_checked": true,
  "digest": null
}
""", "")


def test_audit_verify_an_intact_log_without_decoding(data: str) -> None:
    text = run("--data", data, "audit", "verify", "--no-decode")
    as_json = run("--data", data, "audit", "verify", "--no-decode", "--json")
    head = HEAD_JSON.search(as_json.stdout)
    assert head is not None and HEAD_TEXT.findall(text.stdout) == [head[0][:16]]
    assert (text.exit_code, HEAD_TEXT.sub("<head>", text.stdout), text.stderr) == \
        (0, "ok: 8 records, chain intact; head <head>…\n", "")
    assert (as_json.exit_code, HEAD_JSON.sub("<head>", as_json.stdout), as_json.stderr) == (0, """\
{
  "ok": true,
  "records": 8,
  "first_bad_position": null,
  "kind": null,
  "reason": null,
  "head_hash": "<head>",
  "decode_checked": false,
  "digest": null
}
""", "")


@pytest.fixture
def digest(data: str, tmp_path: Path) -> dict[str, Any]:
    """`audit digest` of the 8 records at NOW; its head and Merkle root are substituted."""
    path = tmp_path / "digest.json"
    expect(run("--data", data, "--now", NOW, "audit", "digest", "--out", str(path)), 0, "",
           f"digest of 8 records written to {path}\n")
    made = json.loads(path.read_text())
    assert (made["size"], made["created_at"], made["head_recorded_at"]) == (
        8, "2026-03-02T00:00:00.000000Z", "2026-03-02T00:00:00.000000Z")
    return {"path": str(path), "head": made["head_hash"], "root": made["merkle_root"],
            "head16": made["head_hash"][:16], "root16": made["merkle_root"][:16]}


DIGEST_JSON = """\
{
  "ok": $ok,
  "records": $records,
  "first_bad_position": $position,
  "kind": $kind,
  "reason": $reason,
  "head_hash": "$head",
  "decode_checked": true,
  "digest": {
    "size": 8,
    "merkle_root": "$root",
    "created_at": "2026-03-02T00:00:00.000000Z",
    "consistent": $consistent
  }
}
"""


def test_audit_verify_against_a_digest(data: str, digest: dict[str, Any]) -> None:
    expect(run("--data", data, "audit", "verify", "--digest", digest["path"]), 0,
           "ok: 8 records, chain intact, every record decodes; head $head16…\n"
           "  holds exactly the 8 records of the digest made 2026-03-02T00:00:00.000000Z "
           "(Merkle root $root16…)\n", **digest)
    expect(run("--data", data, "audit", "verify", "--digest", digest["path"], "--json"), 0,
           DIGEST_JSON, ok="true", records="8", position="null", kind="null", reason="null",
           consistent="true", **digest)


def test_audit_verify_a_digest_of_a_prefix_after_more_was_published(
        data: str, digest: dict[str, Any]) -> None:
    expect(run("--data", data, "--now", "2026-03-03", "publish", "-",
               input=jsonl([event("LoggedIn", 9, BO, "2026-03-03T08:00:00Z")])), 0,
           "accepted 1, duplicates 0, rejected 0\n")
    text = run("--data", data, "audit", "verify", "--digest", digest["path"])
    as_json = run("--data", data, "audit", "verify", "--digest", digest["path"], "--json")
    head = HEAD_JSON.search(as_json.stdout)
    assert head is not None and head[0] != digest["head"]  # the head of 9 records
    expect(text, 0, "ok: 9 records, chain intact, every record decodes; head $head16…\n"
           "  holds exactly the 8 records of the digest made 2026-03-02T00:00:00.000000Z "
           "(Merkle root $root16…)\n", head16=head[0][:16], root16=digest["root16"])
    expect(as_json, 0, DIGEST_JSON, ok="true", records="9", position="null", kind="null",
           reason="null", consistent="true", head=head[0], root=digest["root"])


def test_audit_verify_a_truncated_log_against_its_digest_exits_1(
        data: str, digest: dict[str, Any]) -> None:
    _tamper(data, "DELETE FROM stored_events WHERE rowid=8")
    reason = ("truncated: the log ends at position 7 but the digest of "
              "2026-03-02T00:00:00.000000Z covers 8 records")
    expect(run("--data", data, "audit", "verify", "--digest", digest["path"]), 1,
           f"FAILED at position 8: {reason}\n")
    as_json = run("--data", data, "audit", "verify", "--digest", digest["path"], "--json")
    head = HEAD_JSON.search(as_json.stdout)
    plain = HEAD_JSON.search(run("--data", data, "audit", "verify", "--json").stdout)
    assert head is not None and plain is not None and head[0] == plain[0] != digest["head"]
    expect(as_json, 1, DIGEST_JSON, ok="false", records="7", position="8", kind='"truncated"',
           reason=f'"{reason}"', consistent="false", head=head[0], root=digest["root"])


def test_audit_prove_out_text_and_json(data: str, digest: dict[str, Any], tmp_path: Path) -> None:
    proof = tmp_path / "proof.json"
    prove = ["--data", data, "audit", "prove", eid(5), "--digest", digest["path"]]
    expect(run(*prove, "--out", str(proof)), 0, "",
           f"inclusion proof of position 5 written to {proof}\n")
    written = json.loads(proof.read_text())
    expect(run(*prove, "--out", str(proof), "--force", "--json"), 0, f"""\
{{
  "written": "{proof}",
  "format": "consent-ledger/inclusion-proof/1",
  "event_id": "{eid(5)}",
  "position": 5,
  "leaf_index": 4,
  "tree_size": 8,
  "merkle_root": "$root"
}}
""", f"inclusion proof of position 5 written to {proof}\n", **digest)
    assert json.loads(proof.read_text()) == written  # --json changes what is printed, not the file
    printed = run(*prove, "--json")  # no --out: the proof itself, as without --json
    assert (printed.exit_code, printed.stderr, json.loads(printed.stdout)) == (0, "", written)


def test_audit_consistency_out_text_and_json(data: str, digest: dict[str, Any],
                                             tmp_path: Path) -> None:
    expect(run("--data", data, "--now", "2026-03-03", "publish", "-",
               input=jsonl([event("LoggedIn", 9, BO, "2026-03-03T08:00:00Z")])), 0,
           "accepted 1, duplicates 0, rejected 0\n")
    proof = tmp_path / "grown.json"
    consistency = ["--data", data, "audit", "consistency", "--digest", digest["path"]]
    expect(run(*consistency, "--out", str(proof)), 0, "",
           f"consistency proof 8 -> 9 written to {proof}\n")
    written = json.loads(proof.read_text())
    expect(run(*consistency, "--out", str(proof), "--force", "--json"), 0, f"""\
{{
  "written": "{proof}",
  "format": "consent-ledger/consistency-proof/1",
  "old_size": 8,
  "old_root": "$root",
  "new_size": 9,
  "new_root": "$new_root",
  "new_head_hash": "$new_head"
}}
""", f"consistency proof 8 -> 9 written to {proof}\n", new_root=written["new_root"],
           new_head=written["new_head_hash"], **digest)
    assert written["old_root"] == digest["root"]
    printed = run(*consistency, "--json")
    assert (printed.exit_code, printed.stderr, json.loads(printed.stdout)) == (0, "", written)


def _tamper(data: str, sql: str, *params: object) -> None:
    """Edits log.sqlite with plain SQL, as tests/integration/test_audit.py's Tamper does."""
    db = sqlite3.connect(Path(data) / "log.sqlite", isolation_level=None)
    try:
        db.execute(sql, params)
    finally:
        db.close()


def _state(data: str, position: int) -> bytes:
    db = sqlite3.connect(Path(data) / "log.sqlite")
    try:
        return bytes(db.execute("SELECT state FROM stored_events WHERE rowid=?", (position,)).fetchone()[0])
    finally:
        db.close()


def flip_last_byte(data: str, position: int) -> None:
    state = bytearray(_state(data, position))
    state[-1] ^= 1
    _tamper(data, "UPDATE stored_events SET state=? WHERE rowid=?", bytes(state), position)


def swap(data: str, a: int, b: int) -> None:
    sa, sb = _state(data, a), _state(data, b)
    _tamper(data, "UPDATE stored_events SET state=? WHERE rowid=?", sb, a)
    _tamper(data, "UPDATE stored_events SET state=? WHERE rowid=?", sa, b)


TAMPERED = {
    "altered": (lambda d: flip_last_byte(d, 3), 3,
                "altered: position 3 no longer hashes to the prev_hash that position 4 recorded: "
                "it was changed (or records between them removed)"),
    "missing": (lambda d: _tamper(d, "DELETE FROM stored_events WHERE rowid=5"), 5,
                "missing: position 5 is missing: the log goes from 4 to 6"),
    "reordered": (lambda d: swap(d, 4, 5), 4,
                  "reordered: position 4 chains to position 5, which comes after it: records were "
                  "reordered"),
}


@pytest.mark.parametrize("kind", list(TAMPERED))
def test_audit_verify_a_tampered_log_exits_1_naming_position_and_kind(data: str, kind: str) -> None:
    tamper, position, reason = TAMPERED[kind]
    tamper(data)
    expect(run("--data", data, "audit", "verify"), 1, f"FAILED at position {position}: {reason}\n")
    expect(run("--data", data, "audit", "verify", "--no-decode"), 1,
           f"FAILED at position {position}: {reason}\n")
    # "records" and "head_hash" describe the verified prefix before the first bad segment (one
    # segment here: none, and the genesis hash), not the records before the bad position.
    expect(run("--data", data, "audit", "verify", "--json"), 1, f"""\
{{
  "ok": false,
  "records": 0,
  "first_bad_position": {position},
  "kind": "{kind}",
  "reason": "{reason}",
  "head_hash": "{'0' * 64}",
  "decode_checked": true,
  "digest": null
}}
""")


# --- audit erasures -----------------------------------------------------------------------

def test_audit_erasures_clean(data: str) -> None:
    expect(run("--data", data, "audit", "erasures"), 0,
           "0 erasures, 0 pseudonymisations, 0 destroyed keys: 0 findings\n")
    expect(run("--data", data, "audit", "erasures", "--json"), 0, """\
{
  "findings": [],
  "summary": {
    "erasures": 0,
    "pseudonymisations": 0,
    "keys_destroyed": 0,
    "findings": 0,
    "ok": true
  }
}
""")


def test_audit_erasures_after_a_sweep(data: str) -> None:
    expect(run("--data", data, "--now", LATER, "sweep"), 0,
           "Swept at 2026-07-20T00:00:00.000000Z: keep 1, notify 1, pseudonymise 1, erase 0, hold 0, pseudonymised 0, erased 0\n"
           "  appended: DeletionNoticeSent 1, RetentionReviewed 1, RightsRequestClosed 1, "
           "SubjectPseudonymised 1; keys destroyed: 0; subjects sealed: 1; dead letters purged: 2\n")
    expect(run("--data", data, "audit", "erasures"), 0,
           "0 erasures, 1 pseudonymisation, 0 destroyed keys: 0 findings\n")


# --- dead letters -------------------------------------------------------------------------

def test_dead_letters_list(data: str) -> None:
    expect(run("--data", data, "dead-letters"), 0,
           "2026-03-02T00:00:00.000000Z  -:3  malformed JSON: Expecting property name enclosed "
           "in double quotes at column 2\n"
           "2026-03-02T00:00:00.000000Z  -:4  event_id: conflicts with the event at position 3 "
           "(same id, different content)\n")
    expect(run("--data", data, "dead-letters", "--limit", "1"), 0,
           "2026-03-02T00:00:00.000000Z  -:4  event_id: conflicts with the event at position 3 "
           "(same id, different content)\n")


def test_no_dead_letters_says_so(base: str) -> None:
    expect(run("--data", base, "dead-letters"), 0, "no dead letters\n")
    expect(run("--data", base, "dead-letters", "--decrypt"), 0, "no dead letters\n")
    expect(run("--data", base, "dead-letters", "--json"), 0, "[]\n")


def test_dead_letters_json(data: str, ids: dict[str, str]) -> None:
    expect(run("--data", data, "dead-letters", "--json"), 0, """\
[
  {
    "rejected_at": "2026-03-02T00:00:00.000000Z",
    "origin": "-",
    "line": 3,
    "reason": "malformed JSON: Expecting property name enclosed in double quotes at column 2",
    "sealed_with": {
      "secret": "dead-letters/2026-03"
    }
  },
  {
    "rejected_at": "2026-03-02T00:00:00.000000Z",
    "origin": "-",
    "line": 4,
    "reason": "event_id: conflicts with the event at position 3 (same id, different content)",
    "controller": "cowrite",
    "sealed_with": {
      "controller": "cowrite",
      "subject": "$anna",
      "category": "profile",
      "generation": 1
    }
  }
]
""", **ids)


# --- click usage errors: one line on stderr, exit 2 ---------------------------------------

USAGE_MISTAKES = [
    (["query", "--frobnicate", "select 1"],
     "Error: No such option '--frobnicate' (see 'ledger query --help')\n"),
    (["query"], "Error: Missing argument 'SQL' (see 'ledger query --help')\n"),
    (["dead-letters", "--limit", "x"],
     "Error: Invalid value for '--limit': 'x' is not a valid integer range "
     "(see 'ledger dead-letters --help')\n"),
    (["dead-letters", "--limit", "0"],
     "Error: Invalid value for '--limit': 0 is not in the range x>=1 "
     "(see 'ledger dead-letters --help')\n"),
    (["dead-letters", "purge"],
     "Error: Missing option '--before' (see 'ledger dead-letters purge --help')\n"),
    (["decisions", "--action", "nope"],
     "Error: Invalid value for '--action': 'nope' is not one of 'keep', 'notify', "
     "'pseudonymise', 'erase', 'hold', 'pseudonymised', 'erased' (see 'ledger decisions --help')\n"),
    (["audit", "prove"], "Error: Missing argument 'EVENT_ID' (see 'ledger audit prove --help')\n"),
    (["controller", "set-policy", "cowrite"],
     "Error: Missing argument 'POLICY' (see 'ledger controller set-policy --help')\n"),
    (["query", "--jsn", "select 1"], "Error: No such option '--jsn'; did you mean '--json' or "
     "'--csv'? (see 'ledger query --help')\n"),
    (["qery", "select 1"], "Error: No such command 'qery'; did you mean 'query'? (see 'ledger --help')\n"),
    (["frob"], "Error: No such command 'frob' (see 'ledger --help')\n"),
    (["audit", "frob"], "Error: No such command 'frob' (see 'ledger audit --help')\n"),
    (["--frob", "query", "select 1"], "Error: No such option '--frob' (see 'ledger --help')\n"),
    (["demo", "--subjects", "many"],
     "Error: Invalid value for '--subjects': 'many' is not a valid integer range "
     "(see 'ledger demo --help')\n"),
]


@pytest.mark.parametrize(("args", "stderr"), USAGE_MISTAKES, ids=[" ".join(a) for a, _ in USAGE_MISTAKES])
def test_a_usage_mistake_is_one_line(tmp_path: Path, args: list[str], stderr: str) -> None:
    result = run("--data", str(tmp_path / "d"), *args)
    expect(result, 2, "", stderr)
    assert result.exception is None or isinstance(result.exception, SystemExit)


@pytest.mark.parametrize(("option", "metavar", "value"), [
    ("--data", "DIR", "/tmp/ledger-data"), ("--log", "URL", "kafka://localhost:9092/t"),
    ("--now", "T", "2026-03-02"), ("--schema-registry", "URL", "http://localhost:8081"),
])
def test_a_global_option_after_the_command_gets_a_hint(tmp_path: Path, option: str, metavar: str,
                                                       value: str) -> None:
    for args, command in ([["query", option, value, "select 1"], "query"],
                          [["audit", "prove", option, value, eid(1)], "audit prove"],
                          [["dead-letters", "purge", f"{option}={value}"], "dead-letters purge"]):
        expect(run("--data", str(tmp_path / "d"), *args), 2, "",
               f"Error: {option} is a global option: put it before the command "
               f"(ledger {option} {metavar} {command} ...)\n")
