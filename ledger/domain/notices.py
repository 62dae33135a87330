"""Notices (privacy texts) as the ledger registers them: pure checks and the text's hash.

A notice is the text a person was shown when they consented. It is not personal data: it is
the controller's own text, stored in the clear in a ``NoticePublished`` event. A published
(notice_id, version, language) never changes: a changed text is a new version.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from ledger.domain.errors import InvalidEvent, UsageError

MAX_NOTICE_BYTES: Final = 256 << 10  # a long privacy notice is a few tens of KiB
MAX_TITLE: Final = 200
NOTICE_NAMESPACE: Final = uuid.UUID("1b7e3c0a-6f0e-4a53-9c8e-5d2b7a94f310")
_TOKEN: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}")
_LANGUAGE: Final = re.compile(r"[a-z]{2,3}(?:-[A-Za-z0-9]{2,8}){0,3}")  # BCP 47, simply
# Control characters a text may not hold: C0 except TAB, LF and CR, DEL, C1, bidi overrides.
_CONTROL: Final = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


class InvalidNotice(UsageError):
    """A notice that cannot be published as given (exit 2); the message names the field."""


@dataclass(frozen=True, slots=True)
class NoticeKey:
    controller: str
    notice_id: str
    version: str
    language: str

    def label(self) -> str:
        return f"{self.notice_id} version {self.version} ({self.language})"


def notice_key(controller: str, notice_id: str, version: str, language: str) -> NoticeKey:
    """The checked identity of a notice: ids and versions are plain tokens, the language a
    BCP 47 tag (``sv``, ``en-GB``)."""
    for field, value in (("notice_id", notice_id), ("version", version)):
        if not _TOKEN.fullmatch(value):
            raise InvalidNotice("expected 1-128 letters, digits and _ . : - (starting with a "
                                "letter or digit)", parameter=field)
    if not _LANGUAGE.fullmatch(language):
        raise InvalidNotice("expected a BCP 47 language tag such as sv or en-GB",
                            parameter="language")
    return NoticeKey(controller, notice_id, version, language)


def checked_text(data: bytes) -> str:
    """The text of a notice file: UTF-8 (a BOM is refused: it would be part of the hash),
    at most 256 KiB, not blank, no control characters other than TAB, LF and CR."""
    if len(data) > MAX_NOTICE_BYTES:
        raise InvalidNotice(f"notice text is {len(data):,} bytes, over the "
                            f"{MAX_NOTICE_BYTES >> 10} KiB limit")
    if data.startswith(b"\xef\xbb\xbf"):
        raise InvalidNotice("notice text starts with a byte order mark; save it as UTF-8 "
                            "without BOM")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise InvalidNotice(f"notice text is not UTF-8 (byte {e.start})") from None
    if not text.strip():
        raise InvalidNotice("notice text is empty")
    bad = _CONTROL.search(text)
    if bad is not None:
        raise InvalidNotice(f"notice text contains a control character (U+{ord(bad[0]):04X} "
                            f"at character {bad.start()})")
    return text


def notice_title(title: str | None) -> str | None:
    if title is None:
        return None
    if not title.strip() or len(title) > MAX_TITLE or _CONTROL.search(title) or "\n" in title:
        raise InvalidNotice(f"expected one line of 1-{MAX_TITLE} characters", parameter="title")
    return title


def text_sha256(text: str) -> str:
    """The hash a consent's ``notice_sha256`` names: hex SHA-256 of the text's UTF-8 bytes."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def notice_event_id(key: NoticeKey) -> str:
    """A NoticePublished's id, derived from what it publishes: publishing twice is idempotent."""
    return str(uuid.uuid5(NOTICE_NAMESPACE, "|".join(
        (key.controller, key.notice_id, key.version, key.language))))


# (controller, notice_id, version) -> language -> sha256 of the published text.
PublishedHashes = Mapping[tuple[str, str, str], Mapping[str, str]]


def consent_notice_sha256(controller: str, body: Mapping[str, Any],
                          published: PublishedHashes) -> str | None:
    """The ``notice_sha256`` a ConsentGiven is recorded with: the published text's hash when
    the consent names a published notice (a mismatching hash from the producer is refused:
    the consent would claim a text the registry does not hold); what the producer sent when
    the notice is not (yet) published - accepted, and flagged by ``ledger audit consents``."""
    given: str | None = body.get("notice_sha256")
    languages = published.get((controller, body["notice_id"], body["notice_version"]))
    if not languages:
        return given
    language = body.get("language")
    if language is not None:
        expected = languages.get(language)
        if expected is None:
            return given  # not published in that language
        candidates = {expected}
    else:
        candidates = set(languages.values())
    if given is not None:
        if given not in candidates:
            raise InvalidEvent("conflict: does not match the published text of the notice "
                               "and version named", "notice_sha256")
        return given
    return next(iter(candidates)) if len(candidates) == 1 else None
