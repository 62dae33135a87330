"""The facade's rights methods take a SubjectSelector: every way of naming one person gets the
same answer, and a pseudonym alone is resolved to the one controller that knows it."""

from __future__ import annotations

import pytest

from ledger import Ledger, SubjectSelector
from ledger.app.permits import UnknownSubject
from ledger.domain.errors import UnknownController
from tests.conftest import ANNA, make_event


@pytest.fixture
def registered(ledger: Ledger, anna: str) -> str:
    ledger.record(make_event("SubjectRegistered", subject={"account": "acct-7"}, pii=...))
    ledger.record(make_event("SubjectRegistered", occurred_at="2026-03-02T09:30:00Z"))
    return anna


def test_every_way_of_naming_anna_gets_one_answer(ledger: Ledger, registered: str) -> None:
    by_email = ledger.permits("service", SubjectSelector.email("cowrite", ANNA))
    by_pseudonym = ledger.permits("service", SubjectSelector.pseudonym(registered))
    assert by_email.permitted and by_email == by_pseudonym
    assert by_pseudonym.controller == "cowrite"
    by_account = ledger.permits("service", SubjectSelector.account("cowrite", "acct-7"))
    assert by_account.subject != registered  # another identifier, another pseudonym


def test_export_of_a_pseudonym_alone_finds_its_controller(ledger: Ledger, registered: str) -> None:
    alone = ledger.export_subject(SubjectSelector.pseudonym(registered))
    named = ledger.export_subject(SubjectSelector.email("cowrite", ANNA))
    assert (alone["controller"], alone["subject"]) == ("cowrite", registered)
    assert alone["personal_data"] == named["personal_data"]


def test_unknown_people_and_controllers(ledger: Ledger, registered: str) -> None:
    with pytest.raises(UnknownSubject):
        ledger.export_subject(SubjectSelector.pseudonym("f" * 64))
    with pytest.raises(UnknownController):
        ledger.permits("service", SubjectSelector.pseudonym(registered, "acme"))
