"""The pure notice checks: hostile notice files and the hash a consent is recorded with."""

from __future__ import annotations

import hashlib
import re

import pytest

from ledger.domain.errors import InvalidEvent
from ledger.domain.notices import (
    MAX_NOTICE_BYTES,
    InvalidNotice,
    NoticeKey,
    checked_text,
    consent_notice_sha256,
    notice_event_id,
    notice_key,
    notice_title,
    text_sha256,
)

TEXT = "Genom att klicka på ”Skicka” samtycker du till nyhetsbrev.\n"
SHA = hashlib.sha256(TEXT.encode()).hexdigest()
PUBLISHED = {("cowrite", "nl", "1"): {"sv": SHA, "en": "e" * 64}}


def consent(**kw: object) -> dict[str, object]:
    return {"notice_id": "nl", "notice_version": "1", "notice_sha256": None, "language": "sv",
            **kw}


def test_the_hash_is_over_the_exact_utf8_bytes() -> None:
    assert checked_text(TEXT.encode()) == TEXT
    assert text_sha256(TEXT) == SHA


@pytest.mark.parametrize(("data", "reason"), [
    (b"x" * (MAX_NOTICE_BYTES + 1), "over the 256 KiB limit"),
    (b"Hej \xff\xfe d\xe5", "not UTF-8 (byte 4)"),
    (b"\xef\xbb\xbfHej", "byte order mark"),
    (b" \n\t ", "empty"),
    (b"Hej\x00d\xc3\xa5", "control character (U+0000"),
    ("Hej \u202e då".encode(), "control character (U+202E"),
    (b"Hej\x1b[31m", "control character (U+001B"),
])
def test_hostile_notice_files_are_refused_with_the_reason(data: bytes, reason: str) -> None:
    with pytest.raises(InvalidNotice, match=re.escape(reason)) as e:
        checked_text(data)
    assert e.value.exit_code == 2


def test_tab_lf_and_cr_are_text() -> None:
    assert checked_text(b"a\tb\r\nc\n") == "a\tb\r\nc\n"


@pytest.mark.parametrize(("notice_id", "version", "language", "parameter"), [
    ("", "1", "sv", "notice_id"), ("a b", "1", "sv", "notice_id"), ("x" * 129, "1", "sv", "notice_id"),
    ("nl", "1\n", "sv", "version"), ("nl", "../1", "sv", "version"),
    ("nl", "1", "svenska", "language"), ("nl", "1", "SV", "language"),
])
def test_ids_versions_and_languages_are_checked(notice_id: str, version: str, language: str,
                                               parameter: str) -> None:
    with pytest.raises(InvalidNotice) as e:
        notice_key("cowrite", notice_id, version, language)
    assert e.value.parameter == parameter


def test_titles_are_one_short_line() -> None:
    assert notice_title("Nyhetsbrev") == "Nyhetsbrev"
    assert notice_title(None) is None
    for bad in ("", "a\nb", "x" * 201, "a\x07"):
        with pytest.raises(InvalidNotice):
            notice_title(bad)


def test_the_event_id_is_derived_from_the_notice() -> None:
    key = NoticeKey("cowrite", "nl", "1", "sv")
    assert notice_event_id(key) == notice_event_id(NoticeKey("cowrite", "nl", "1", "sv"))
    assert notice_event_id(key) != notice_event_id(NoticeKey("cowrite", "nl", "1", "en"))
    assert notice_event_id(key) != notice_event_id(NoticeKey("coegi", "nl", "1", "sv"))


def test_a_published_notice_fills_the_hash() -> None:
    assert consent_notice_sha256("cowrite", consent(), PUBLISHED) == SHA
    assert consent_notice_sha256("cowrite", consent(notice_sha256=SHA), PUBLISHED) == SHA


def test_a_mismatching_hash_is_a_conflict() -> None:
    with pytest.raises(InvalidEvent, match="conflict") as e:
        consent_notice_sha256("cowrite", consent(notice_sha256="0" * 64), PUBLISHED)
    assert e.value.field == "notice_sha256"
    # the English text's hash is not the Swedish text's
    with pytest.raises(InvalidEvent, match="conflict"):
        consent_notice_sha256("cowrite", consent(notice_sha256="e" * 64), PUBLISHED)


def test_an_unpublished_notice_is_accepted_as_sent() -> None:
    for body in (consent(notice_id="other"), consent(notice_version="2"),
                 consent(language="de"), consent(notice_sha256="0" * 64, language="de")):
        assert consent_notice_sha256("cowrite", body, PUBLISHED) == body["notice_sha256"]
    assert consent_notice_sha256("coegi", consent(), PUBLISHED) is None  # another controller's


def test_without_a_language_the_hash_must_be_one_of_the_languages() -> None:
    assert consent_notice_sha256("cowrite", consent(language=None, notice_sha256="e" * 64),
                                 PUBLISHED) == "e" * 64
    assert consent_notice_sha256("cowrite", consent(language=None), PUBLISHED) is None  # ambiguous
    with pytest.raises(InvalidEvent):
        consent_notice_sha256("cowrite", consent(language=None, notice_sha256="0" * 64), PUBLISHED)
