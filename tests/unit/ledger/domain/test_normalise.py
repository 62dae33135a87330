"""Issue 9 row 8: natural identifiers are normalised before hashing (SPEC §7a): Unicode NFC,
whitespace and zero-width characters trimmed, e-mail addresses case-folded; account ids NFC and
trimmed, case kept. The same person gets one pseudonym however the address was typed."""

from __future__ import annotations

import json
import unicodedata
from pathlib import Path

import pytest
from click.testing import CliRunner

import cli
from ledger.app.service import Ledger
from ledger.domain.pseudonyms import InvalidIdentifier, normalise, pseudonym
from tests.conftest import make_event

NFC = unicodedata.normalize("NFC", "åsa@example.se")
NFD = unicodedata.normalize("NFD", "åsa@example.se")
assert NFC != NFD

# (id, kind, as typed, normalised)
ROW08 = [
    ("NFC", "email", NFC, NFC),
    ("NFD", "email", NFD, NFC),
    ("upper-case NFD", "email", unicodedata.normalize("NFD", "ÅSA@EXAMPLE.SE"), NFC),
    ("trailing ZWSP", "email", NFC + "\u200b", NFC),
    ("leading ZWSP", "email", "\u200b" + NFC, NFC),
    ("BOM and word joiner", "email", "\ufeff" + NFC + "\u2060", NFC),
    ("ZWNJ and ZWJ at the ends", "email", "\u200c" + NFC + "\u200d", NFC),
    ("NBSP", "email", "\u00a0" + NFC + "\u00a0", NFC),
    ("tabs and newline", "email", "\t" + NFC + "\t\n", NFC),
    ("mixed trim", "email", " \u200b\u00a0 " + NFD + " \ufeff\t", NFC),
    ("upper case", "email", "Anna.Svensson@Example.SE", "anna.svensson@example.se"),
    ("sharp s case-folded", "email", "Straße@example.de", "strasse@example.de"),
    ("capital sharp s", "email", "STRAẞE@example.de", "strasse@example.de"),
    ("Turkish dotted I (no locale folding)", "email", "İlker@example.com", "i\u0307lker@example.com"),
    ("account NFC", "account", unicodedata.normalize("NFD", "Åsa-42"), "Åsa-42"),
    ("account trimmed, case kept", "account", "\u200b CW-000042\u00a0", "CW-000042"),
]


@pytest.mark.parametrize(("kind", "typed", "expected"), [r[1:] for r in ROW08], ids=[r[0] for r in ROW08])
def test_row08_normalise_table(kind: str, typed: str, expected: str) -> None:
    assert normalise(kind, typed) == expected


def test_row08_same_person_same_pseudonym() -> None:
    secret = bytes(range(32))
    spellings = [NFC, NFD, NFC + "\u200b", "\u200b" + NFC, " ÅSA@example.se\u00a0",
                 unicodedata.normalize("NFD", "Åsa@Example.se") + "\ufeff"]
    assert len({pseudonym(secret, "email", s) for s in spellings}) == 1


def test_row08_ascii_pseudonyms_are_unchanged() -> None:
    """Pseudonyms computed before normalisation changed (lower -> casefold, NFC) stay the same
    for ASCII addresses and account ids: existing logs keep their subjects."""
    secret = bytes(range(32))
    assert pseudonym(secret, "email", "Anna.Svensson@example.se") == (
        "89fef2a896fc51c15ace67565edda25240ef1bbbd962bb1d33167b393782eaae")
    assert pseudonym(secret, "email", "  ERIK@Example.SE ") == (
        "d31c3b17e18560581595d894bfd4c84293cedc42f4ef312ebc02e6a45da3185b")
    assert pseudonym(secret, "account", "cw-000042") == (
        "da85d88c8740eb0ce103e46545af61216122a0ba8259dbe4c986a2ffd2cb1d41")
    assert pseudonym(secret, "email", NFC) == (  # already NFC: unchanged too
        "ad9bf6fc0ad7ba982c41f6013b71ad53974ebb20efdf3eb9c408563616936dbe")


@pytest.mark.parametrize("typed", ["an\u200bna@example.se", "anna@exa\ufeffmple.se", "cw-\u2060000042",
                                   "anna\x1b@example.se", "anna\u202e@example.se", "\u200b \u200b", ""])
def test_row08_invisible_or_control_characters_inside_are_refused(typed: str) -> None:
    kind = "account" if typed.startswith("cw") else "email"
    with pytest.raises(InvalidIdentifier) as caught:
        normalise(kind, typed)
    assert typed.strip("\u200b ") not in str(caught.value) or not typed.strip("\u200b ")


def run(*args: str, input: str | None = None):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(cli.main, list(args), input=input, catch_exceptions=False)


def test_row08_cli_subject_id_gives_one_pseudonym(tmp_path: Path) -> None:
    data = str(tmp_path / "d")
    assert run("--data", data, "init").exit_code == 0
    ids = set()
    for typed in (NFC, NFD, NFC + "\u200b", "\u00a0ÅSA@example.se"):
        result = run("--data", data, "subject", "id", "--email", typed, "--controller", "cowrite")
        assert result.exit_code == 0, result.output
        ids.add(result.output.strip())
    assert len(ids) == 1
    bad = run("--data", data, "subject", "id", "--email", "an\u200bna@example.se", "--controller", "cowrite")
    assert bad.exit_code == 2 and "zero-width" in bad.output and "an\u200bna" not in bad.output


def test_row08_published_events_of_one_person_land_under_one_subject(ledger: Ledger) -> None:
    spellings = [NFC, NFD, NFC + "\u200b", "\u200b" + NFC, "ÅSA@EXAMPLE.SE", "\u00a0" + NFD + "\t"]
    lines = [json.dumps(make_event(subject={"email": s}), ensure_ascii=False).encode() for s in spellings]
    lines.append(json.dumps(make_event("SubjectRegistered", subject={"email": NFD},
                                       account_ref=unicodedata.normalize("NFD", "Åsa-42") + "\u200b")).encode())
    report = ledger.publish(lines)
    assert (report.accepted, report.rejected) == (len(lines), 0), report.rejects
    subjects = {e.subject for _, e in ledger.events()}
    assert subjects == {ledger.subject_id("cowrite", email=NFC)}
    refs = [e.body["account_ref"] for _, e in ledger.events() if e.type == "SubjectRegistered"]
    assert refs == [pseudonym(ledger._secrets["cowrite"], "account", "Åsa-42")]
    inner = json.dumps(make_event(subject={"email": "an\u200bna@example.se"})).encode()
    rejected = ledger.publish([inner])
    assert rejected.rejected == 1 and rejected.rejects[0].reason.startswith("subject.email: ")
