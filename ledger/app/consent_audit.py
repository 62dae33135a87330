"""``ledger audit consents`` (SPEC §7b): can every consent be shown to rest on a text?

For each ``ConsentGiven`` (as known at T with ``--as-of``) the evidence is checked against the
notice registry (the ``notices`` table): the notice and version it names are published (in its
language, when it names one), its ``notice_sha256`` is the published text's hash, the notice
was published no later than the consent was given (event time), and the consent records the
user's action (``ui_action``) and the language shown. A consent failing any check is
unverifiable; each reason is listed. A consent naming a notice published only later is the
flag the registry leaves on a consent it accepted unpublished (producers may publish late).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ledger.app.opened import OpenLedger
from ledger.domain.timeutil import format_micros, to_micros
from projections.store.opener import open_read_model

_CONSENTS = """
WITH consent AS (
    SELECT position, event_id, controller, subject, occurred_at,
           json_extract_string(body, '$.purpose') AS purpose,
           json_extract_string(body, '$.notice_id') AS notice_id,
           json_extract_string(body, '$.notice_version') AS notice_version,
           json_extract_string(body, '$.notice_sha256') AS notice_sha256,
           json_extract_string(body, '$.language') AS language,
           json_extract_string(body, '$.ui_action') AS ui_action
    FROM events WHERE type = 'ConsentGiven'
)
SELECT c.position, c.event_id, c.controller, c.subject, c.occurred_at, c.purpose,
       c.notice_id, c.notice_version, c.notice_sha256, c.language, c.ui_action,
       count(n.sha256) AS versions,
       list(n.language ORDER BY n.position) FILTER (WHERE n.sha256 IS NOT NULL) AS languages,
       list(n.sha256 ORDER BY n.position) FILTER (WHERE n.sha256 IS NOT NULL) AS hashes,
       list(n.published_at ORDER BY n.position) FILTER (WHERE n.sha256 IS NOT NULL) AS published
FROM consent c LEFT JOIN notices n
  ON n.controller = c.controller AND n.notice_id = c.notice_id AND n.version = c.notice_version
GROUP BY ALL ORDER BY c.position
"""


@dataclass(frozen=True, slots=True)
class UnverifiableConsent:
    controller: str
    subject: str
    event_id: str
    position: int
    given_at: int
    purpose: str
    notice_id: str
    notice_version: str
    reasons: tuple[str, ...]

    def line(self) -> str:
        return (f"{self.controller} {self.subject} {self.purpose} "
                f"({self.notice_id} v{self.notice_version}, position {self.position}): "
                + "; ".join(self.reasons))

    def as_dict(self) -> dict[str, Any]:
        return {"controller": self.controller, "subject": self.subject,
                "event_id": self.event_id, "position": self.position,
                "given_at": format_micros(self.given_at), "purpose": self.purpose,
                "notice_id": self.notice_id, "notice_version": self.notice_version,
                "reasons": list(self.reasons)}


@dataclass
class ConsentAudit:
    as_of: int | None
    consents: int = 0
    verified: int = 0
    findings: list[UnverifiableConsent] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.findings

    def summary(self) -> dict[str, Any]:
        return {"as_of": None if self.as_of is None else format_micros(self.as_of),
                "consents": self.consents, "verified": self.verified,
                "unverifiable": len(self.findings), "ok": self.ok}

    def as_dict(self) -> dict[str, Any]:
        return {"unverifiable": [f.as_dict() for f in self.findings], "summary": self.summary()}


def audit_consents(opened: OpenLedger, *, as_of: int | None = None) -> ConsentAudit:
    result = ConsentAudit(as_of)
    with open_read_model(opened, as_of=as_of) as con:
        rows = con.execute(_CONSENTS).fetchall()
    for (position, event_id, controller, subject, occurred_at, purpose, notice_id, version,
         sha, language, ui_action, versions, languages, hashes, published) in rows:
        given_at = to_micros(occurred_at)
        reasons = _reasons(given_at, sha, language, ui_action, versions,
                           languages or [], hashes or [], published or [])
        result.consents += 1
        if reasons:
            result.findings.append(UnverifiableConsent(
                controller, subject, event_id, position, given_at, purpose, notice_id, version,
                tuple(reasons)))
        else:
            result.verified += 1
    return result


def _reasons(given_at: int, sha: str | None, language: str | None, ui_action: str | None,
             versions: int, languages: list[str], hashes: list[str],
             published: list[Any]) -> list[str]:
    reasons: list[str] = []
    if not ui_action:
        reasons.append("no ui_action recorded")
    if not language:
        reasons.append("no language recorded")
    if not versions:
        reasons.append("notice version not published")
        return reasons
    candidates = [(lang, h, to_micros(p)) for lang, h, p in zip(languages, hashes, published,
                                                                strict=True)
                  if not language or lang == language]
    if not candidates:
        reasons.append(f"notice version not published in language {language[:35]!r}"
                       if language else "notice version not published")
        return reasons
    if sha is None:
        reasons.append("no notice_sha256 recorded (the notice was not published when the "
                       "consent was recorded)")
        matching = candidates
    else:
        matching = [c for c in candidates if c[1] == sha]
        if not matching:
            reasons.append("notice_sha256 does not match the published text")
            return reasons
    if all(p > given_at for _, _, p in matching):
        first = min(p for _, _, p in matching)
        reasons.append(f"notice published {format_micros(first)}, after the consent was given")
    return reasons
