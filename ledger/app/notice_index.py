"""The write side's view of the notice registry: which notices the log holds, read from the
log's record types (decoding only NoticePublished records) and caught up incrementally. Light
on purpose: the ledger facade imports it, so it must not load the read side (DuckDB)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ledger.app.opened import OpenLedger
from ledger.domain.events import Event
from ledger.domain.notices import NoticeKey
from ledger.domain.timeutil import format_micros

NOTICE_TYPE = "NoticePublished"


@dataclass(frozen=True, slots=True)
class PublishedNotice:
    key: NoticeKey
    sha256: str
    published_at: int
    event_id: str
    position: int | None = None
    title: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"controller": self.key.controller, "notice_id": self.key.notice_id,
                "version": self.key.version, "language": self.key.language,
                "title": self.title, "sha256": self.sha256,
                "published_at": format_micros(self.published_at), "event_id": self.event_id,
                "position": self.position}


class NoticeIndex:
    """(controller, notice_id, version) -> language -> the published notice, from the log.
    ``refresh`` reads only the records appended since the last call."""

    def __init__(self) -> None:
        self._next = 1
        self._by_version: dict[tuple[str, str, str], dict[str, PublishedNotice]] = {}

    def refresh(self, opened: OpenLedger) -> NoticeIndex:
        log = opened.log
        if log.partitioned:  # a Kafka topic has no global positions: read it whole each time
            self._next, self._by_version = 1, {}
        for record in log.read(self._next):
            self._next = record.position + 1
            if record.event_type != NOTICE_TYPE:
                continue
            e = opened.codec.decode(record.payload)
            notice = _published(e, record.position)
            key = (notice.key.controller, notice.key.notice_id, notice.key.version)
            self._by_version.setdefault(key, {}).setdefault(notice.key.language, notice)
        return self

    def languages(self, controller: str, notice_id: str, version: str) -> dict[str, PublishedNotice]:
        return self._by_version.get((controller, notice_id, version), {})

    def get(self, key: NoticeKey) -> PublishedNotice | None:
        return self.languages(key.controller, key.notice_id, key.version).get(key.language)

    def snapshot(self) -> dict[tuple[str, str, str], dict[str, str]]:
        """(controller, notice_id, version) -> language -> sha256: what a consent is checked
        against (picklable, for the publishing workers)."""
        return {k: {lang: n.sha256 for lang, n in v.items()} for k, v in self._by_version.items()}


def _published(e: Event, position: int | None) -> PublishedNotice:
    b = e.body
    return PublishedNotice(NoticeKey(e.controller, b["notice_id"], b["version"], b["language"]),
                           b["sha256"], b["published_at"], e.event_id, position, b["title"])
