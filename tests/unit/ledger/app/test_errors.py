"""Library errors speak domain terms; the CLI adds its flags."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from ledger.app.decisions import decisions_at
from ledger.app.permits import resolve_subject
from ledger.app.service import Ledger
from ledger.domain.errors import LedgerError, UnknownController, UsageError
from ledger.domain.subjects import SubjectSelector
from tests.conftest import ANNA


def test_unknown_controller_is_a_usage_error_named_by_the_controller() -> None:
    e = UnknownController("acme")
    assert isinstance(e, UsageError) and isinstance(e, LedgerError) and e.exit_code == 2
    assert (e.name, str(e)) == ("acme", "unknown controller 'acme'")
    assert str(UnknownController("x" * 100)) == f"unknown controller {'x' * 40!r}"  # shortened


CALLS: dict[str, Callable[[Ledger], Any]] = {
    "subject_id": lambda ledger: ledger.subject_id("acme", email=ANNA),
    "permits": lambda ledger: ledger.permits("service", SubjectSelector.email("acme", ANNA)),
    "resolve_subject": lambda ledger: resolve_subject(ledger, None, email=ANNA,  # type: ignore[arg-type]
                                                      controller="acme"),
    "export_subject": lambda ledger: ledger.export_subject(SubjectSelector.email("acme", ANNA)),
    "decisions": lambda ledger: decisions_at(ledger, controller="acme"),
}


@pytest.mark.parametrize("call", CALLS)
def test_every_library_entry_point_raises_unknown_controller_without_a_cli_flag(
        ledger: Ledger, call: str) -> None:
    with pytest.raises(UnknownController) as raised:
        CALLS[call](ledger)
    assert raised.value.name == "acme" and str(raised.value) == "unknown controller 'acme'"
