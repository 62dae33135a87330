"""The notice registry (SPEC §7b): ``ledger notice publish|list|show`` and the lookup a
consent is checked against.

Record first: a notice exists once its ``NoticePublished`` is in the log; nothing else holds
it. The write side finds notices by reading the log's record types (``NoticeIndex``, caught
up incrementally, decoding only NoticePublished records); the read side has the ``notices``
projection table for list and show. A published (notice, version, language) never changes,
so a consent checked against an index that is a moment old can only miss a notice published
in that moment: it is then accepted as naming an unpublished notice, which
``ledger audit consents`` flags, never wrongly rejected.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ledger.app.notice_index import NOTICE_TYPE, NoticeIndex, PublishedNotice
from ledger.app.opened import OpenLedger
from ledger.app.sweep import CONTROLLER_WIDE, SOURCE
from ledger.domain.errors import LedgerError, UnknownController, UsageError
from ledger.domain.events import Event
from ledger.domain.notices import (
    checked_text,
    notice_event_id,
    notice_key,
    notice_title,
    text_sha256,
)
from ledger.domain.timeutil import format_micros, to_micros
from projections.store.opener import open_read_model

ACTOR = "system:notice-registry"


class NoticeConflict(LedgerError):
    """A notice version already published with another text (exit 1): publish a new version."""


class NoticeNotFound(UsageError):
    """No such notice in the registry (exit 2)."""


@dataclass(frozen=True, slots=True)
class PublishOutcome:
    notice: PublishedNotice
    status: str  # "published" or "already published"


def publish_notice(opened: OpenLedger, index: NoticeIndex, *, controller: str, notice_id: str,
                   version: str, language: str, data: bytes,
                   title: str | None = None, at: int | None = None) -> PublishOutcome:
    """Publishes a notice text (the file's bytes): the ledger computes its hash. Publishing
    the same text again is a no-op; another text under a published version is refused.
    ``at``: the publication time (default the ledger clock), for back-filled histories."""
    if controller not in opened.config.controllers:
        raise UnknownController(controller)
    key = notice_key(controller, notice_id, version, language)
    text = checked_text(data)
    checked_title = notice_title(title)
    sha = text_sha256(text)
    with opened.writer_lock:  # the check and the append see the same log
        existing = index.refresh(opened).get(key)
        if existing is not None:
            if existing.sha256 != sha:
                raise NoticeConflict(
                    f"notice {key.label()} is already published with another text "
                    f"(sha256 {existing.sha256[:12]}…, position {existing.position}): "
                    "publish it as a new version")
            return PublishOutcome(existing, "already published")
        now = opened.clock.now() if at is None else at
        event = Event(NOTICE_TYPE, notice_event_id(key), controller, CONTROLLER_WIDE, now, now,
                      SOURCE, ACTOR, {"notice_id": notice_id, "version": version,
                                      "language": language, "title": checked_title,
                                      "text": text, "sha256": sha, "published_at": now})
        outcome = opened.append_events([event])[0]
    notice = PublishedNotice(key, sha, now, event.event_id, outcome.position, checked_title)
    return PublishOutcome(notice, "published" if outcome.status == "accepted" else "already published")


# --- the read side ------------------------------------------------------------------------

_COLUMNS = ("controller", "notice_id", "version", "language", "title", "sha256",
            "published_at", "event_id", "position")


def list_notices(opened: OpenLedger, controller: str | None = None) -> list[dict[str, Any]]:
    """Every published notice (without its text), oldest first."""
    if controller is not None and controller not in opened.config.controllers:
        raise UnknownController(controller)
    with open_read_model(opened) as con:
        rows = con.execute(
            f"SELECT {', '.join(_COLUMNS)} FROM notices WHERE $1 IS NULL OR controller = $1 "
            "ORDER BY controller, notice_id, published_at, version, language",
            [controller]).fetchall()
    return [_row(dict(zip(_COLUMNS, r, strict=True))) for r in rows]


def show_notice(opened: OpenLedger, notice_id: str, *, controller: str | None = None,
                version: str | None = None, language: str | None = None) -> list[dict[str, Any]]:
    """The versions of a notice with their texts (one version with ``version``)."""
    with open_read_model(opened) as con:
        rows = con.execute(
            f"SELECT {', '.join(_COLUMNS)}, text FROM notices WHERE notice_id = $1 "
            "AND ($2 IS NULL OR controller = $2) AND ($3 IS NULL OR version = $3) "
            "AND ($4 IS NULL OR language = $4) ORDER BY controller, published_at, language",
            [notice_id, controller, version, language]).fetchall()
    if not rows:
        what = f"notice {notice_id[:128]!r}" + (f" version {version[:128]!r}" if version else "")
        raise NoticeNotFound(f"{what} is not published")
    return [_row(dict(zip((*_COLUMNS, "text"), r, strict=True))) for r in rows]


def notice_text(opened: OpenLedger, controller: str, notice_id: str, version: str,
                   language: str | None = None) -> tuple[str, str] | None:
    """(text, sha256) of a published notice, or None: for the subject report. Without a
    language, the first published language of that version."""
    with open_read_model(opened) as con:
        row = con.execute(
            "SELECT text, sha256 FROM notices WHERE controller = $1 AND notice_id = $2 "
            "AND version = $3 AND ($4 IS NULL OR language = $4) ORDER BY position LIMIT 1",
            [controller, notice_id, version, language]).fetchone()
    return None if row is None else (str(row[0]), str(row[1]))


def notice_texts(opened: OpenLedger, controller: str) -> dict[tuple[str, str], str]:
    """(notice id, version) -> text of every notice the controller published, in one read:
    the subject report's lookup. Of several languages of one version, the first published."""
    with open_read_model(opened) as con:
        rows = con.execute("SELECT notice_id, version, text FROM notices WHERE controller = $1 "
                           "ORDER BY position DESC", [controller]).fetchall()
    return {(str(n), str(v)): str(t) for n, v, t in rows}  # the earliest position wins


def _row(r: dict[str, Any]) -> dict[str, Any]:
    if isinstance(r["published_at"], datetime):
        r["published_at"] = format_micros(to_micros(r["published_at"]))
    return r


def _iso(micros: int) -> str:
    return format_micros(micros)
