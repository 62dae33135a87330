from __future__ import annotations

from pathlib import Path

import pytest

from ledger.domain.errors import ConfigError
from ledger.domain.retention.policy import builtin_policies, load_policy, parse_policy

VALID = """
name = "acme"
inactive_after = "P2Y"
[erasure_request]
action = "erase"
"""


def test_the_seed_policies_ship_and_encode_the_seeds() -> None:
    assert builtin_policies() == ["coegi", "cowrite"]
    cowrite, coegi = load_policy("cowrite"), load_policy("coegi")
    assert (str(cowrite.inactive_after), str(cowrite.notice_before)) == ("P6M", "P14D")
    assert (cowrite.erasure_action, str(cowrite.pseudonymise_for)) == ("pseudonymise", "P60D")
    assert not cowrite.keep_without_relationship
    assert (str(coegi.inactive_after), coegi.notice_before, str(coegi.review_every)) == ("P3Y", None, "P1Y")
    for policy in (cowrite, coegi):
        (hold,) = policy.legal_holds
        assert (hold.categories, str(hold.keep_for), hold.counted_from) == (("bookkeeping",), "P7Y", "end_of_calendar_year")


def test_a_policy_file_by_path_and_its_content_hash(tmp_path: Path) -> None:
    path = tmp_path / "acme.toml"
    path.write_text(VALID)
    policy = load_policy(str(path))
    assert policy.name == "acme" and len(policy.content_hash) == 64
    # Comments and layout do not change the hash; content does.
    path.write_text("# a comment\n" + VALID)
    assert load_policy(str(path)).content_hash == policy.content_hash
    path.write_text(VALID.replace("P2Y", "P3Y"))
    assert load_policy(str(path)).content_hash != policy.content_hash


@pytest.mark.parametrize(("text", "message"), [
    ("name = ", "not valid TOML"),
    ('inactive_after = "P1Y"', "name: missing"),
    ('name = "x"', "inactive_after: missing"),
    ('name = "x"\ninactive_after = "3 years"', "inactive_after: expected an ISO-8601 duration"),
    ('name = "x"\ninactive_after = 3', "inactive_after: expected str"),
    ('name = "x"\ninactive_after = "P1Y"\nretain = 1', "retain: unknown key"),
    ('name = "x"\ninactive_after = "P1Y"\nactivity = ["Teleported"]', "activity: unknown event type"),
    ('name = "x"\ninactive_after = "P1Y"\n[erasure_request]\naction = "burn"', "erasure_request.action: must be one of"),
    ('name = "x"\ninactive_after = "P1Y"\n[erasure_request]\naction = "pseudonymise"', "pseudonymise_for: missing"),
    ('name = "x"\ninactive_after = "P1Y"\n[legal_holds.tax]\ncategories = ["secrets"]\nkeep_for = "P1Y"', "categories: unknown key category"),
    ('name = "x"\ninactive_after = "P1Y"\n[legal_holds.tax]\ncategories = ["bookkeeping"]', "legal_holds.tax: keep_for: missing"),
    ('name = "x"\ninactive_after = "P1Y"\n[purposes]\nspam = "because"', "purposes.spam: must be one of"),
    ('name = "x"\ninactive_after = "P1Y"\nkeep_without_relationship = "no"', "keep_without_relationship: expected bool"),
])
def test_invalid_policies_name_the_key_and_the_problem(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_policy(text, "bad.toml")


def test_unknown_policy_names_are_refused() -> None:
    with pytest.raises(ConfigError, match="unknown policy 'gdpr-lite'"):
        load_policy("gdpr-lite")


def test_clauses_are_quoted_wording_outside_the_content_hash() -> None:
    """The shipped policies quote their seed text per rule; adding the quotations left the
    content hashes the existing sweep events recorded unchanged (issue 13 §4)."""
    cowrite, coegi = load_policy("cowrite"), load_policy("coegi")
    assert cowrite.content_hash == "d0f03cd1244fa476bb444e386abf05e0fe601b64669d0fab0aad1010eaf97b82"
    assert coegi.content_hash == "1a82d302b036fa6e0ebc36171a860d8c28a691ee28c816e67c58a217d0e0fada"
    assert "6 månader" in cowrite.clauses["inactivity"].text
    assert "två veckor" in cowrite.clauses["notice"].text
    assert "3 års inaktivitet" in coegi.clauses["inactivity"].text
    assert "written for this ledger" in cowrite.clauses["legal_holds.bookkeeping"].source
    base = 'name = "p"\ninactive_after = "P1Y"\n'
    plain = parse_policy(base, "p.toml")
    quoted = parse_policy(base + '[clauses.inactivity]\ntext = "Raderas efter ett år."\nsource = "x"\n', "p.toml")
    assert quoted.content_hash == plain.content_hash and quoted.clauses["inactivity"].text == "Raderas efter ett år."


@pytest.mark.parametrize(("clauses", "message"), [
    ('[clauses.sometimes]\ntext = "x"', "clauses.sometimes: unknown rule"),
    ('[clauses]\ninactivity = "x"', "clauses.inactivity: expected a table"),
    ('[clauses.inactivity]\nsource = "x"', "clauses.inactivity: text: missing"),
    ('[clauses.inactivity]\ntext = "   "', "text must be 1 to 2000 characters"),
    (f'[clauses.inactivity]\ntext = "{"a" * 2001}"', "text must be 1 to 2000 characters"),
    ('[clauses.legal_holds.tax]\ntext = "x"', "clauses.legal_holds.tax: no such legal hold"),
])
def test_malformed_clauses_are_refused(clauses: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_policy('name = "p"\ninactive_after = "P1Y"\n' + clauses + "\n", "p.toml")
