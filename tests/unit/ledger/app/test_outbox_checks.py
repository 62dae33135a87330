"""The outbox's input checks, without a ledger: ids, reasons, kinds (issue 11)."""

from __future__ import annotations

import pytest

from ledger.app.outbox import OutboxMessage, check_kind, check_message_id, check_reason
from ledger.domain.errors import UsageError

UUID = "6f1c2a3b-4d5e-4f60-8a7b-9c0d1e2f3a4b"


def test_a_message_id_is_a_uuid_in_its_canonical_form() -> None:
    assert check_message_id(UUID.upper()) == UUID


@pytest.mark.parametrize("bad", ["", "x" * 36, "x" * 100_000, UUID[:-1], UUID + "0",
                                 "{" + UUID[1:-1] + "}", None, 42, ["a"], "\x00" * 36])
def test_a_malformed_id_is_a_usage_error_that_never_echoes_it(bad: object) -> None:
    with pytest.raises(UsageError) as e:
        check_message_id(bad)
    assert e.value.parameter == "message_id" and e.value.exit_code == 2
    assert "x" * 36 not in str(e.value)


@pytest.mark.parametrize("bad, why", [
    ("", "give the mailer's reason"), ("   ", "give the mailer's reason"), (None, "give"),
    ("x" * 501, "longer than 500"), ("a\nb", "control characters"), ("a\u2028b", "control"),
    ("\x1b[2J", "control characters"),
])
def test_a_bad_reason_is_refused(bad: object, why: str) -> None:
    with pytest.raises(UsageError, match=why):
        check_reason(bad)


def test_an_address_in_a_reason_is_replaced() -> None:
    assert check_reason("550 <anna.svensson@example.se>: no such user, cc bo@x.se") == (
        "550 <<address>>: no such user, cc <address>")
    assert check_reason("x" * 500) == "x" * 500


def test_kinds() -> None:
    assert check_kind(None) is None and check_kind("extract_ready") == "extract_ready"
    with pytest.raises(UsageError, match="must be one of deletion_notice"):
        check_kind("spam")


def test_a_message_never_shows_its_address_in_its_repr() -> None:
    m = OutboxMessage(UUID, "deletion_notice", "cowrite", "s" * 64, "anna@example.se", None, 0,
                      None, None, "cowrite", 0, 4, None)
    assert "anna@example.se" not in repr(m) and m.as_dict()["contact"] == "anna@example.se"
