"""SubjectSelector: a person named by pseudonym, or by e-mail address or account id with its
controller; anything else is an InvalidSubject in domain words."""

from __future__ import annotations

import dataclasses

import pytest

from ledger import SubjectSelector
from ledger.domain.errors import InvalidSubject, UsageError

ANNA = "anna@example.se"
PID = "ab" * 32


def test_named_constructors() -> None:
    assert SubjectSelector.pseudonym(PID) == SubjectSelector(subject_id=PID)
    assert SubjectSelector.pseudonym(PID, "cowrite").controller == "cowrite"
    assert SubjectSelector.email("cowrite", ANNA) == SubjectSelector(
        email_address=ANNA, controller="cowrite")
    assert SubjectSelector.account("coegi", "acct-1") == SubjectSelector(
        account_id="acct-1", controller="coegi")


def test_it_is_a_frozen_value() -> None:
    who = SubjectSelector.email("cowrite", ANNA)
    with pytest.raises(dataclasses.FrozenInstanceError):
        who.controller = "coegi"  # type: ignore[misc]
    assert {who, SubjectSelector.email("cowrite", ANNA)} == {who}
    assert who.for_controller("coegi") == SubjectSelector.email("coegi", ANNA)


@pytest.mark.parametrize(("fields", "problem", "words"), [
    ({}, "none", "name the subject: a pseudonym, or an e-mail address or account id"),
    ({"subject_id": PID, "email_address": ANNA, "controller": "cowrite"}, "both", "not both"),
    ({"email_address": ANNA}, "no-controller", "needs its controller"),
    ({"account_id": "a1"}, "no-controller", "needs its controller"),
    ({"email_address": ANNA, "account_id": "a1", "controller": "cowrite"}, "email-and-account",
     "give exactly one of an e-mail address or an account id"),
    ({"subject_id": ""}, "malformed", "subject_id must be a non-empty string"),
    ({"subject_id": PID, "controller": 7}, "malformed", "controller must be a non-empty string"),
])
def test_invalid_combinations_are_domain_errors(fields: dict[str, object], problem: str,
                                                words: str) -> None:
    with pytest.raises(InvalidSubject) as raised:
        SubjectSelector(**fields)  # type: ignore[arg-type]
    e = raised.value
    assert isinstance(e, UsageError) and e.exit_code == 2 and e.problem == problem
    assert words in str(e) and "--" not in str(e)


def test_repr_shows_no_natural_identifier() -> None:
    assert ANNA not in repr(SubjectSelector.email("cowrite", ANNA))
    assert "acct-1" not in repr(SubjectSelector.account("cowrite", "acct-1"))
    assert repr(SubjectSelector.pseudonym(PID)) == f"SubjectSelector.pseudonym({PID[:16] + '…'!r}, controller=None)"
