"""Issue 11 (outbox): the notice period counts from the notice's delivery; a notice that
finally fails counts from its last attempt; silence after a failure never blocks erasure."""

from __future__ import annotations

from dataclasses import replace

import pytest

from ledger.domain.errors import ConfigError
from ledger.domain.retention.policy import Duration, load_policy, parse_policy
from ledger.domain.retention.rules import SubjectFacts, decide, notice_counts_from, rule_chain
from ledger.domain.timeutil import format_micros, parse_timestamp

# The content hash of the shipped cowrite policy before it carried clauses.
HASH_BEFORE_CLAUSES = "d0f03cd1244fa476bb444e386abf05e0fe601b64669d0fab0aad1010eaf97b82"
COWRITE = load_policy("cowrite")  # P6M inactivity, P14D notice, 3 retries a day apart


def t(text: str) -> int:
    return parse_timestamp(text)


def day(micros: int | None) -> str | None:
    return None if micros is None else format_micros(micros)[:10]


# Last login 2026-01-10: erasure due 2026-07-10; the notice went out 2026-06-27.
NOTICED = SubjectFacts("cowrite", "s", t("2025-01-01"), registered=True,
                       last_activity_at=t("2026-01-10"), last_activity_event="login",
                       notice_at=t("2026-06-27"), notice_event="notice")


def test_the_shipped_policy_names_retries_and_the_clause_without_changing_its_hash() -> None:
    assert COWRITE.notice_retries == 3 and COWRITE.notice_retry_every == Duration(days=1)
    assert "två veckor före radering" in (COWRITE.clause("deletion_notice") or "")
    # the clauses are wording, not a rule: the content hash is what it was before them
    assert COWRITE.content_hash == HASH_BEFORE_CLAUSES


def test_clauses_do_not_enter_the_content_hash_but_retries_do() -> None:
    base = 'name = "p"\ninactive_after = "P6M"\nnotice_before = "P14D"\n'
    plain = parse_policy(base, "p.toml")
    worded = parse_policy(base + '[clauses.notice]\ntext = "Du meddelas."\n', "p.toml")
    retried = parse_policy(base + "notice_retries = 5\n", "p.toml")
    assert plain.content_hash == worded.content_hash != retried.content_hash
    assert worded.clause("deletion_notice") == "Du meddelas." and retried.notice_retries == 5


@pytest.mark.parametrize("extra, message", [
    ("notice_retries = -1\n", "notice_retries: must be 0 to 100"),
    ("notice_retries = 101\n", "notice_retries: must be 0 to 100"),
    ('notice_retries = "3"\n', "notice_retries: expected int"),
    ('notice_retry_every = "P0D"\n', "notice_retry_every: must be longer than nothing"),
    ('notice_retry_every = "soon"\n', "notice_retry_every: expected an ISO-8601 duration"),
    ('[clauses.spam]\ntext = "x"\n', "clauses.spam: unknown rule"),
    ('[clauses.notice]\ntext = 3\n', "clauses.notice: text: expected str"),
    (f'[clauses.notice]\ntext = "{"x" * 2001}"\n', "1 to 2000 characters"),
])
def test_bad_retry_and_clause_settings_are_refused(extra: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_policy('name = "p"\ninactive_after = "P6M"\n' + extra, "p.toml")


def test_a_notice_nobody_reported_on_counts_from_sending() -> None:
    assert notice_counts_from(NOTICED, COWRITE) == t("2026-06-27")
    d = decide(NOTICED, COWRITE, t("2026-07-11"))
    assert (d.action, day(d.due_at)) == ("erase", "2026-07-11")


def test_erasure_counts_from_the_delivery() -> None:
    delivered = replace(NOTICED, notice_delivered_at=t("2026-07-01"))
    assert day(decide(delivered, COWRITE, t("2026-07-14")).due_at) == "2026-07-15"
    assert decide(delivered, COWRITE, t("2026-07-14")).action == "keep"
    assert decide(delivered, COWRITE, t("2026-07-15")).action == "erase"
    # a delivery reported earlier than the notice itself is read as the notice's time
    early = replace(NOTICED, notice_delivered_at=t("2026-06-01"))
    assert notice_counts_from(early, COWRITE) == t("2026-06-27")


def test_a_final_failure_counts_from_the_last_attempt() -> None:
    failing = replace(NOTICED, notice_failures=4, notice_last_failed_at=t("2026-07-05"))
    assert notice_counts_from(failing, COWRITE) == t("2026-07-05")
    d = decide(failing, COWRITE, t("2026-07-19"))
    assert (d.action, day(d.due_at)) == ("erase", "2026-07-19")


def test_silence_after_a_failure_counts_the_retries_left_and_never_blocks_for_ever() -> None:
    once = replace(NOTICED, notice_failures=1, notice_last_failed_at=t("2026-06-27"))
    # three retries left, a day apart: the last would have failed 2026-06-30
    assert day(notice_counts_from(once, COWRITE)) == "2026-06-30"
    assert decide(once, COWRITE, t("2026-07-14")).action == "erase"
    no_retries = replace(COWRITE, notice_retries=0)
    assert notice_counts_from(once, no_retries) == t("2026-06-27")


def test_the_rule_chain_says_what_the_outbox_knows() -> None:
    chain = "\n".join(rule_chain(replace(NOTICED, notice_delivered_at=t("2026-07-01")), COWRITE,
                                 t("2026-07-02")))
    assert "delivered 2026-07-01" in chain and "no earlier than 2026-07-15" in chain
    chain = "\n".join(rule_chain(replace(NOTICED, notice_failures=4,
                                         notice_last_failed_at=t("2026-07-05")), COWRITE,
                                 t("2026-07-06")))
    assert "finally failed after 4 attempts" in chain
    assert "no delivery reported" in "\n".join(rule_chain(NOTICED, COWRITE, t("2026-07-02")))
