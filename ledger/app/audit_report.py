"""``ledger audit report``: one subject, for an auditor, as a self-contained HTML page — the
timeline as an inline SVG chart with the subject's status strip, consents with their evidence
and notice text, each retention rule in plain words with the policy's own clause and the
worked dates, rights requests, every sweep event with its justification, and the provenance
(when, by which version, against which log and checkpoint, under which policy file).

No personal data: nothing is decrypted. The page is built from pseudonyms and body fields only
(the projections never hold ``pii``), so it is safe for pseudonymised and erased subjects
alike. No JavaScript and no external resources: it opens the same way offline in ten years."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from html import escape
from pathlib import Path
from typing import Any

from ledger.app.audit_decisions import DecisionAudit, audit
from ledger.app.auditing import Auditor, ChainStatus
from ledger.app.decisions import controller_policies, projections_as_of, subject_facts
from ledger.app.explain import explain
from ledger.app.opened import OpenLedger
from ledger.app.sweep_checkpoints import CitedCheckpoint, latest_checkpoint
from ledger.domain.errors import LedgerError
from ledger.domain.retention.policy import Duration, Policy
from ledger.domain.retention.rules import SubjectFacts
from ledger.domain.timeutil import (
    day_of_iso,
    format_day,
    format_micros,
    from_micros,
    parse_timestamp,
    to_micros,
)
from ledger.domain.vocabulary import RELATIONSHIP_STARTS
from projections.engine.fold import LIFTING_OUTCOMES
from projections.store.subject_queries import table_rows

CONSENT_TYPES = ("ConsentGiven", "ConsentWithdrawn", "ObjectionRaised", "NewsletterSubscribed",
                 "Unsubscribed")
# Colours by kind of event: consent green, withdrawals red, sweep actions warm, rest blue/grey.
COLOURS = {
    "ConsentGiven": "#2e7d32", "NewsletterSubscribed": "#66bb6a", "ConsentWithdrawn": "#c62828",
    "ObjectionRaised": "#ad1457", "Unsubscribed": "#e57373", "DeletionNoticeSent": "#ef6c00",
    "SubjectPseudonymised": "#6a1b9a", "SubjectErased": "#3e2723", "RightsRequested": "#455a64",
    "RightsRequestClosed": "#78909c", "InvoiceUsageRecorded": "#00838f", "DataShared": "#f9a825",
}
DEFAULT_COLOUR = "#1565c0"


@dataclass(frozen=True, slots=True)
class SubjectReport:
    controller: str
    subject: str
    as_of: int
    explained: Mapping[str, Any]  # projections.explain.explain's result
    consents: list[dict[str, Any]]  # consent_state rows
    subscriptions: list[dict[str, Any]]
    status: str  # pseudonymisation_status: active, restricted, pseudonymised, erased
    sweeps: DecisionAudit
    chain: ChainStatus | None
    position: int = 0  # the last log position the report shows
    checkpoint: CitedCheckpoint | None = None  # the latest signed checkpoint covering it
    checkpoint_matches: bool | None = None  # the log's first size records are the checkpoint's
    policy: Policy | None = None  # the controller's policy the decision was taken under
    facts: SubjectFacts | None = None  # what the decision rests on
    status_row: Mapping[str, Any] | None = None  # pseudonymisation_status (since, reason)
    rights: tuple[Mapping[str, Any], ...] = ()  # rights_requests rows
    generated_at: int = 0  # wall clock, µs
    merkle_root: str | None = None  # of the whole log, when the chain was checked

    def summary(self) -> dict[str, Any]:
        s = self.sweeps.summary()
        cited = None if self.checkpoint is None else (
            self.checkpoint.as_dict() | {"consistent": self.checkpoint_matches})
        return {"controller": self.controller, "subject": self.subject,
                "as_of": format_micros(self.as_of), "status": self.status,
                "events": len(self.explained["timeline"]), "position": self.position,
                "sweep_events": s["events"], "sweep_events_justified": s["justified"],
                "chain": None if self.chain is None else {
                    "ok": self.chain.ok, "records": self.chain.records,
                    "head_hash": self.chain.head_hash, "detail": self.chain.detail},
                "checkpoint": cited, "merkle_root": self.merkle_root,
                "generated_at": format_micros(self.generated_at),
                "policy": None if self.policy is None else {
                    "name": self.policy.name, "content_hash": self.policy.content_hash,
                    "file_sha256": self.policy.file_sha256},
                "rights_requests": len(self.rights)}


def build(ledger: OpenLedger, controller: str, subject: str, as_of: int | None = None,
          policy_paths: Sequence[str] = (), chain: ChainStatus | None = None) -> SubjectReport:
    policy = controller_policies(ledger, controller)[controller]
    with projections_as_of(ledger, as_of) as (con, now):
        explained = explain(ledger, con, controller, subject, policy, now)
        consents = table_rows(con, "consent_state", controller, subject)
        subscriptions = table_rows(con, "subscriptions", controller, subject)
        status = table_rows(con, "pseudonymisation_status", controller, subject)
        facts = subject_facts(con, policy, controller, subject)
        rights = table_rows(con, "rights_requests", controller, subject)
    sweeps = audit(ledger, as_of, policy_paths, subject=(controller, subject))
    position = max((int(e["position"]) for e in explained["timeline"]), default=0)
    return SubjectReport(controller, subject, now, explained, consents, subscriptions,
                         status[0]["status"] if status else "active", sweeps, chain, position,
                         latest_checkpoint(ledger.settings, position), policy=policy,
                         facts=facts[0] if facts else None, status_row=status[0] if status else None,
                         rights=tuple(sorted(rights, key=lambda r: (r["received_at"], r["request_id"]))),
                         generated_at=time.time_ns() // 1000)


def check_chain(report: SubjectReport, auditor: Auditor) -> SubjectReport:
    """The report with its chain verified, against the checkpoint it cites if any."""
    cited = None if report.checkpoint is None else report.checkpoint.checkpoint.checkpoint
    result = auditor.verify(cited)
    # The Merkle root of the log as checked (a digest refuses a broken chain: then none).
    root = auditor.digest(report.generated_at).merkle_root.hex() if result.ok else None
    return dataclasses.replace(report, chain=ChainStatus.of(result),
                               checkpoint_matches=result.digest_matches, merkle_root=root)


# --- rendering ---------------------------------------------------------------------------------


def _e(value: Any) -> str:
    return escape("" if value is None else str(value))


def _ticks(lo: int, hi: int) -> list[tuple[int, str]]:
    """Calendar ticks: years over a long span, months over a short one."""
    from datetime import UTC, datetime

    start, end = from_micros(lo), from_micros(hi)
    span_years = (hi - lo) / (365.25 * 86_400e6)
    step = 12 if span_years > 3 else (3 if span_years > 1 else 1)
    y, m = start.year, ((start.month - 1) // step) * step + 1
    out = []
    while (y, m) <= (end.year, end.month):
        t = to_micros(datetime(y, m, 1, tzinfo=UTC))
        if lo <= t <= hi:
            out.append((t, f"{y}" if step == 12 else f"{y}-{m:02d}"))
        m += step
        if m > 12:
            y, m = y + (m - 1) // 12, (m - 1) % 12 + 1
    return out


def timeline_svg(timeline: Sequence[Mapping[str, Any]], as_of: int,
                 verdicts: Mapping[str, bool], width: int = 1100,
                 statuses: Sequence[tuple[int, str]] = ()) -> str:
    """Events by type (one lane each) over event time, under a strip of the subject's status
    (active, restricted, pseudonymised, erased); a hollow diamond marks when a late event was
    recorded, a red ring an unjustified sweep event, a dashed line the as-of time."""
    types = list(dict.fromkeys(e["type"] for e in timeline))
    left, right, lane = 190, 30, 30
    strip = 26 if statuses else 0
    top = 24 + strip
    height = top + lane * max(1, len(types)) + 44
    times = [as_of, *(parse_timestamp(e[k]) for e in timeline
                      for k in ("occurred_at", "recorded_at"))]
    lo, hi = min(times), max(times)
    pad = max((hi - lo) // 40, 86_400_000_000)
    lo, hi = lo - pad, hi + pad

    def x(t: int) -> float:
        return left + (width - left - right) * (t - lo) / (hi - lo)

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}" role="img" aria-label="Timeline of the subject\'s events">',
             f'<rect x="0" y="0" width="{width}" height="{height}" fill="#fff"/>']
    axis_y = top + lane * len(types) + 6
    for t, label in _ticks(lo, hi):
        parts.append(f'<line x1="{x(t):.1f}" y1="{top - 8}" x2="{x(t):.1f}" y2="{axis_y}" stroke="#e0e0e0"/>'
                     f'<text x="{x(t):.1f}" y="{axis_y + 16}" font-size="11" text-anchor="middle" '
                     f'fill="#555">{_e(label)}</text>')
    for n, (since, status) in enumerate(statuses):
        until = statuses[n + 1][0] if n + 1 < len(statuses) else max(as_of, since)
        x0, x1 = x(since), max(x(until), x(since) + 2)
        colour = STATUS_COLOURS.get(status, DEFAULT_COLOUR)
        sy = 24 - 6
        parts.append(f'<rect x="{x0:.1f}" y="{sy}" width="{x1 - x0:.1f}" height="18" fill="{colour}" '
                     f'fill-opacity="0.9"><title>{_e(f"{status} from {format_day(since)}")}</title></rect>')
        if x1 - x0 > 9 * len(status):  # the name only where it fits whole
            parts.append(f'<text x="{x0 + 5:.1f}" y="{sy + 13}" font-size="11" fill="#fff">{_e(status)}</text>')
    if statuses:
        parts.append(f'<text x="{left - 10}" y="{24 + 7}" font-size="12" text-anchor="end" '
                     'font-weight="600" fill="#222">status</text>')
    for i, t in enumerate(types):
        y = top + lane * i + lane / 2
        parts.append(f'<line x1="{left}" y1="{y}" x2="{width - right}" y2="{y}" stroke="#f0f0f0"/>'
                     f'<text x="{left - 10}" y="{y + 4}" font-size="12" text-anchor="end" '
                     f'fill="#222">{_e(t)}</text>')
    for e in timeline:
        y = top + lane * types.index(e["type"]) + lane / 2
        occurred, recorded = parse_timestamp(e["occurred_at"]), parse_timestamp(e["recorded_at"])
        colour = COLOURS.get(e["type"], DEFAULT_COLOUR)
        tip = (f'{e["type"]} — occurred {e["occurred_at"][:19]}, recorded {e["recorded_at"][:19]}, '
               f'position {e["position"]}, event {e["event_id"]}')
        if recorded - occurred > 86_400_000_000:  # known more than a day after it happened
            rx = x(recorded)
            parts.append(f'<line x1="{x(occurred):.1f}" y1="{y}" x2="{rx:.1f}" y2="{y}" stroke="{colour}" '
                         f'stroke-dasharray="3 2"/><path d="M{rx:.1f} {y - 5} L{rx + 5:.1f} {y} '
                         f'L{rx:.1f} {y + 5} L{rx - 5:.1f} {y} Z" fill="#fff" stroke="{colour}">'
                         f'<title>{_e("recorded " + e["recorded_at"][:19])}</title></path>')
        parts.append(f'<circle cx="{x(occurred):.1f}" cy="{y}" r="6" fill="{colour}" fill-opacity="0.85">'
                     f'<title>{_e(tip)}</title></circle>')
        if verdicts.get(e["event_id"]) is False:
            parts.append(f'<circle cx="{x(occurred):.1f}" cy="{y}" r="10" fill="none" stroke="#d50000" '
                         'stroke-width="2.5"/>')
    ax = x(as_of)
    parts.append(f'<line x1="{ax:.1f}" y1="{top - 14 - strip}" x2="{ax:.1f}" y2="{axis_y}" stroke="#d50000" '
                 f'stroke-dasharray="6 4"/><text x="{ax - 4:.1f}" y="{top - 12 - strip}" font-size="11" '
                 f'text-anchor="end" fill="#d50000">as of {_e(format_day(as_of))}</text>')
    parts.append("</svg>")
    return "".join(parts)


CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1b1b1b;margin:24px 32px;background:#fafafa;max-width:1180px}
h1{font-size:22px;margin:0 0 4px} h2{font-size:17px;margin:28px 0 8px;border-bottom:2px solid #e3e3e3;padding-bottom:4px}
h3{font-size:14px;margin:16px 0 6px}
/* Words never break in the middle: long ids and hashes are cut short instead (whole on hover). */
*{word-break:normal;overflow-wrap:normal;hyphens:manual}
.muted{color:#666} .small{font-size:12px;margin:2px 0 6px}
code,.mono{font-family:ui-monospace,"DejaVu Sans Mono",monospace;font-size:12px;white-space:nowrap}
.cards{display:flex;gap:12px;flex-wrap:wrap;margin:14px 0}
.card{background:#fff;border:1px solid #ddd;border-radius:8px;padding:10px 14px;min-width:170px}
.card b{display:block;font-size:18px;white-space:nowrap} .card .plain{display:block;font-size:12px;color:#444}
.ok{color:#1b5e20} .bad{color:#b71c1c}
.scroll{overflow-x:auto}
table{border-collapse:collapse;background:#fff;font-size:12.5px;min-width:60%}
th,td{border:1px solid #e0e0e0;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#f3f3f3;white-space:nowrap}
td.nowrap,td.nowrap *{white-space:nowrap}
tr.detail td{background:#fcfcfc;border-top:none;font-size:12px}
.badge{display:inline-block;padding:1px 7px;border-radius:10px;font-size:11px;font-weight:600;color:#fff;white-space:nowrap}
.badge.ok{background:#2e7d32} .badge.bad{background:#c62828}
.chart{background:#fff;border:1px solid #ddd;border-radius:8px;padding:8px;overflow-x:auto}
ol.rules li{margin:2px 0} .legend span{margin-right:14px;white-space:nowrap}
ol.plain-rules{padding-left:22px} ol.plain-rules>li{background:#fff;border:1px solid #e3e3e3;border-radius:8px;padding:8px 12px;margin:8px 0}
ol.plain-rules p{margin:3px 0}
blockquote{margin:6px 0;padding:4px 12px;border-left:4px solid #90a4ae;background:#f5f7f8;font-style:italic}
blockquote.notice{font-style:normal;white-space:pre-line;max-width:900px}
p.worked{margin:3px 0;padding:3px 10px;background:#eef6ee;border-radius:4px;display:inline-block}
p.worked+p.worked{display:block;width:fit-content}
details summary{cursor:default;color:#444}
footer{margin-top:30px;font-size:12px;color:#666}
"""


NOWRAP = ' class="nowrap"'


def _table(columns: Sequence[str], rows: Sequence[Sequence[str]], empty: str,
           wrap: Sequence[int] = (), details: Sequence[str] | None = None) -> str:
    """A table whose cells never wrap, except the columns in ``wrap`` (sentences, which wrap
    between words); ``details`` adds a full-width row under each row."""
    if not rows:
        return f'<p class="muted">{_e(empty)}</p>'
    head = ("" if not any(columns) else
            "<thead><tr>" + "".join(f"<th>{_e(c)}</th>" for c in columns) + "</tr></thead>")
    body = []
    for n, r in enumerate(rows):
        cells = "".join(f"<td{'' if i in wrap else NOWRAP}>{cell}</td>" for i, cell in enumerate(r))
        body.append(f"<tr>{cells}</tr>")
        if details is not None and details[n]:
            body.append(f'<tr class="detail"><td colspan="{len(columns)}">{details[n]}</td></tr>')
    return f'<div class="scroll"><table>{head}<tbody>{"".join(body)}</tbody></table></div>'


def _id(event_id: str, keep: int = 13) -> str:
    """An id, short in the cell and whole on hover (the tables stay readable, nothing wraps)."""
    cut = event_id if len(event_id) <= keep else event_id[:keep] + "…"
    return f'<span class="mono" title="{_e(event_id)}">{_e(cut)}</span>'


def _value(v: Any) -> str:
    """A body value for a cell: a long unbroken token (a hash, an id, a list of ids) is cut
    short with the whole value on hover, so it neither wraps mid-word nor widens the table."""
    text = json.dumps(v, ensure_ascii=False) if isinstance(v, list | dict) else str(v)
    if len(text) > 24 and max(len(w) for w in text.split()) > 24:
        return f'<span class="mono" title="{_e(text)}">{_e(text[:14])}…</span>'
    return _e(text)


def _fields(body: Mapping[str, Any]) -> str:
    return "; ".join(f"{_e(k)}={_value(v)}" for k, v in body.items() if v not in (None, "", []))


def checkpoint_html(r: SubjectReport) -> str:
    cited = r.checkpoint
    if cited is None:
        return (f'<p class="muted">No signed checkpoint covers this report (log position '
                f'{r.position:,}): none is configured (<code>[audit] checkpoint_key</code> in '
                'ledger.toml) or the sweep has not signed one since.</p>')
    c = cited.as_dict()
    match = {True: ('ok', 'the log still holds exactly these records'),
             False: ('bad', 'the log NO LONGER matches it'),
             None: ('muted', 'not compared with the log')}[r.checkpoint_matches]
    rows = [["origin", _e(c["origin"])], ["tree size", f'{_e(c["size"])} records (covers position '
                                                      f'{r.position:,})'],
            ["root hash", f'<span class="mono">{_e(c["root"])}</span>'],
            ["signed by", _e(", ".join(k.label for k in cited.checkpoint.verified)) +
             " (signature verified with the configured key)"],
            ["file", f'<span class="mono">{_e(c["file"])}</span>'],
            ["against the log", f'<span class="{match[0]}">{_e(match[1])}</span>']]
    return _table(["", ""], rows, "")


# --- plain words: rules, worked dates, notices, rights, status ---------------------------------

# (controller, notice_id, notice_version) -> the notice's published text, or None when the
# notice registry does not hold it. The seam the notice registry (issue 13 §1) plugs into.
NoticeLookup = Callable[[str, str, str | None], str | None]
MAX_NOTICE_CHARS = 4000  # a notice is a page; the rest is cut, with a note


def no_registry(controller: str, notice_id: str, version: str | None) -> str | None:
    """The lookup while no notice registry is wired in: no text is known."""
    return None


STATUS_COLOURS = {"active": "#2e7d32", "restricted": "#f9a825", "pseudonymised": "#6a1b9a",
                  "erased": "#3e2723"}
ACTIVITY_WORDS = {"SubjectRegistered": "sign-up", "LoggedIn": "login", "ServiceUsed": "use of the service",
                  "InvoiceUsageRecorded": "invoiced use", "NewsletterSubscribed": "newsletter sign-up",
                  "ConsentGiven": "consent given", "PersonalDataUpdated": "profile update",
                  "DataShared": "data shared"}
RULE_WORDS = {
    "active": "nothing is due yet", "inactivity_notice": "a deletion notice is due",
    "notice_period": "the notice period is running", "inactivity": "inactive past the retention period",
    "no_relationship": "no relationship was established", "erasure_request": "the person asked for erasure",
    "pseudonymised": "pseudonymised, waiting for the erasure date", "erased": "already erased",
    "legal_hold": "erased; held data is kept until its legal hold ends",
    "legal_hold_ended": "the legal hold on kept data has ended",
    "erased_residue": "data recorded after the erasure is erased again",
}


def plain_duration(d: Duration) -> str:
    """P6M -> "6 months", P1Y6M -> "1 year 6 months"."""
    parts = [f"{n} {unit}{'' if n == 1 else 's'}"
             for n, unit in ((d.years, "year"), (d.months, "month"), (d.days, "day")) if n]
    return " ".join(parts) or "0 days"


def _body_time(value: Any) -> int | None:
    """A time a body field recorded (µs, or as the projections print it), None if unreadable."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    try:
        return parse_timestamp(value) if isinstance(value, str) else None
    except (ValueError, LedgerError):
        return None


def _day(t: int | None) -> str:
    return "—" if t is None else format_day(t)


def _clause(policy: Policy, rule: str) -> str:
    c = policy.clauses.get(rule)
    if c is None:
        return '<p class="muted small">The policy file quotes no clause of its own for this rule.</p>'
    return (f'<blockquote lang="sv">“{_e(c.text)}”</blockquote>'
            f'<p class="muted small">Quoted from the policy file: {_e(c.source)}</p>')


def _worked(*lines: str) -> str:
    return "".join(f'<p class="worked">{line}</p>' for line in lines)


def rules_html(policy: Policy, facts: SubjectFacts | None,
               timeline: Sequence[Mapping[str, Any]] = ()) -> str:
    """Each rule of the policy in plain English, its own (Swedish) clause and, for this
    subject, the dates worked out: start + period = date."""
    items: list[str] = []
    f = facts

    def item(title: str, english: str, rule: str, worked: str) -> None:
        items.append(f'<li><b>{_e(title)}</b><p>{_e(english)}</p>{_clause(policy, rule)}{worked}</li>')

    counted = ", ".join(dict.fromkeys(ACTIVITY_WORDS.get(t, t) for t in sorted(policy.activity)))
    inactive = plain_duration(policy.inactive_after)
    worked = ""
    start = None if f is None else (f.last_activity_at if f.last_activity_at is not None else f.first_seen_at)
    if f is not None and start is not None:
        what = "last activity" if f.last_activity_at is not None else "first seen"
        worked = _worked(f"{what} <b>{_day(start)}</b> + {_e(inactive)} = erasure due "
                         f"<b>{_day(policy.inactive_after.add(start))}</b>")
    item("Inactivity", f"Personal data is erased once the person has been inactive for {inactive}. "
         f"Counted as activity: {counted}.", "inactivity", worked)

    if policy.notice_before is not None:
        notice = plain_duration(policy.notice_before)
        lines = []
        if f is not None and start is not None:
            due = policy.inactive_after.add(start)
            lines.append(f"erasure due <b>{_day(due)}</b> &minus; {_e(notice)} = notice due "
                         f"<b>{_day(policy.notice_before.subtract(due))}</b>")
            if f.notice_at is not None and f.notice_at > start:
                lines.append(f"notice sent <b>{_day(f.notice_at)}</b> + {_e(notice)} = earliest erasure "
                             f"<b>{_day(policy.notice_before.add(f.notice_at))}</b>")
            elif f.notice_at is not None:
                lines.append(f"a notice sent {_day(f.notice_at)} no longer counts: the person was active after it")
            else:
                lines.append("no deletion notice sent")
        item("Notice before erasure", f"The person is told {notice} before an inactivity erasure, and "
             "is not erased before that notice period has run out.", "notice", _worked(*lines))
    else:
        item("Notice before erasure", "The policy promises no advance notice before an inactivity "
             "erasure.", "notice", "")

    if not policy.keep_without_relationship:
        line = ("" if f is None else
                "a sign-up is recorded: a relationship exists" if f.registered else
                f"no sign-up recorded (first seen <b>{_day(f.first_seen_at)}</b>): erasure due at once")
        item("No relationship, no data", "If no customer relationship is established (no sign-up), no "
             "personal data is kept.", "no_relationship", _worked(line) if line else "")

    lines = []
    if policy.erasure_action == "pseudonymise":
        period = plain_duration(policy.pseudonymise_for) if policy.pseudonymise_for else "a period"
        english = f"On a request for erasure the data is first pseudonymised for {period}, then erased."
    else:
        period = ""
        english = "On a request for erasure the data is erased at the next sweep."
    # What the sweep did on a request, as the log recorded it (the decision audit re-checks it).
    for e in timeline:
        at = _day(parse_timestamp(e["occurred_at"]))
        if e["type"] == "RightsRequested" and e["body"].get("right") == "erasure":
            lines.append(f"erasure requested <b>{at}</b>")
        elif e["type"] == "SubjectPseudonymised":
            erase_due = _body_time(e["body"].get("erase_due_at"))
            lines.append(f"pseudonymised <b>{at}</b> + {_e(period)} = erasure due <b>{_day(erase_due)}</b>")
        elif e["type"] == "SubjectErased" and e["body"].get("reason") == "erasure_request":
            lines.append(f"erased <b>{at}</b>")
    if f is not None and not lines:
        lines.append("no erasure request")
    item("Erasure on request", english, "erasure_request", _worked(*lines))

    if policy.review_every is not None:
        item("Periodic review", f"The controller reviews the data it keeps at least every "
             f"{plain_duration(policy.review_every)} (the sweep records each review).", "review", "")

    for hold in policy.legal_holds:
        keep = plain_duration(hold.keep_for)
        cats = " and ".join(hold.categories)
        frm = ("the end of the calendar year of the last held event" if hold.counted_from == "end_of_calendar_year"
               else "the last held event")
        line = "no held data recorded"
        if f is not None and f.last_held_at is not None:
            held = f.last_held_at
            if hold.counted_from == "end_of_calendar_year":
                year = from_micros(held).year
                line = (f"last invoiced use <b>{_day(held)}</b> → end of {year} + {_e(keep)} = hold ends "
                        f"<b>{_day(hold.ends_at(held))}</b>")
            else:
                line = f"last invoiced use <b>{_day(held)}</b> + {_e(keep)} = hold ends <b>{_day(hold.ends_at(held))}</b>"
        item(f"Legal hold: {hold.name}", f"{cats.capitalize()} data is kept for {keep} from {frm}, "
             "even after an erasure.", f"legal_holds.{hold.name}", _worked(line))
    return f'<ol class="plain-rules">{"".join(items)}</ol>'


def notice_html(controller: str, body: Mapping[str, Any], lookup: NoticeLookup) -> str:
    """The notice a consent names, its text from the registry and whether that text hashes to
    what the consent recorded."""
    notice_id = body.get("notice_id")
    if not notice_id:
        return '<span class="muted">no notice named</span>'
    version = None if body.get("notice_version") is None else str(body.get("notice_version"))
    named = f"notice {_e(notice_id)}" + ("" if version is None else f" version {_e(version)}")
    text = lookup(controller, str(notice_id), version)
    if text is None:
        return f'{named}: <span class="muted">notice text not in the registry</span>'
    recorded = str(body.get("notice_sha256") or "")
    actual = hashlib.sha256(text.encode("utf-8")).hexdigest()
    check = ('<span class="bad">no hash was recorded with the consent</span>' if not recorded else
             '<span class="ok">the text hashes to the recorded sha256</span>' if actual == recorded else
             f'<span class="bad">the text does NOT hash to the recorded sha256</span> '
             f'(<span class="mono" title="{_e(actual)}">{_e(actual[:12])}…</span>)')
    shown = text if len(text) <= MAX_NOTICE_CHARS else text[:MAX_NOTICE_CHARS] + " […]"
    return f'{named}: {check}<blockquote class="notice">{_e(shown)}</blockquote>'


def status_history(timeline: Sequence[Mapping[str, Any]]) -> list[tuple[int, str]]:
    """(since, status) for the subject's statuses in event-time order, the way the projections
    fold them: active → restricted → pseudonymised → erased, and active again on a lifted
    restriction or a new relationship after an erasure."""
    events = sorted(timeline, key=lambda e: (parse_timestamp(e["occurred_at"]), int(e["position"])))
    if not events:
        return []
    out = [(parse_timestamp(events[0]["occurred_at"]), "active")]
    restrictions: set[str] = set()
    for e in events:
        t, body, status = parse_timestamp(e["occurred_at"]), e["body"], out[-1][1]
        new = status
        if status == "erased":
            if e["type"] in RELATIONSHIP_STARTS:
                new, restrictions = "active", set()
        elif e["type"] == "RightsRequested" and body.get("right") == "restriction":
            restrictions.add(str(body.get("request_id")))
            new = "restricted" if status in ("active", "restricted") else status
        elif e["type"] == "RightsRequestClosed" and str(body.get("request_id")) in restrictions:
            if body.get("outcome") in LIFTING_OUTCOMES:
                restrictions.discard(str(body.get("request_id")))
                if status == "restricted" and not restrictions:
                    new = "active"
        elif e["type"] == "SubjectPseudonymised":
            new = "pseudonymised"
        elif e["type"] == "SubjectErased":
            new = "erased"
        if new != status:
            out.append((t, new))
    return out


def effective_status(consent_status: str, subject_status: str, since: str) -> str:
    """A consent's state as it stands for the subject: a granted consent of an erased subject
    is no longer in effect."""
    if subject_status == "erased":
        return f"ended: subject erased {since}".strip()
    if subject_status == "pseudonymised":
        return f"suspended: subject pseudonymised {since}".strip()
    if subject_status == "restricted":
        return f"{consent_status}; processing restricted since {since}".strip()
    return consent_status


def rights_rows(rights: Sequence[Mapping[str, Any]], now: int) -> list[list[str]]:
    """Each request: received, due, closed, outcome, and whether it was answered in time."""
    rows = []
    for r in rights:
        due = None if r.get("due_at") is None else to_micros(r["due_at"])
        closed = None if r.get("closed_at") is None else to_micros(r["closed_at"])
        day = 86_400_000_000
        if due is None:
            timing = '<span class="muted">no deadline</span>'
        elif closed is not None:
            timing = ('<span class="ok">on time</span>' if closed <= due else
                      f'<span class="bad">late by {-(-(closed - due) // day)} days</span>')
        elif now > due:
            timing = f'<span class="bad">open, {-(-(now - due) // day)} days overdue</span>'
        else:
            timing = f'open, due in {(due - now) // day} days'
        rows.append([_id(str(r.get("request_id") or ""), 18), _e(r.get("requested_right")),
                     _e(_day(None if r.get("received_at") is None else to_micros(r["received_at"]))),
                     _e(_day(due)), _e(_day(closed)), _e(r.get("outcome") or "—"), timing])
    return rows


def provenance_rows(r: SubjectReport) -> list[list[str]]:
    from importlib.metadata import PackageNotFoundError, version

    try:
        ledger_version = version("consent-ledger")
    except PackageNotFoundError:
        ledger_version = "unknown (not installed as a package)"
    chain = r.chain
    log = ("not checked (the report was made without verifying the chain)" if chain is None else
           f"{chain.records:,} records, chain {'intact' if chain.ok else 'BROKEN'}")
    cited = r.checkpoint
    checkpoint = ("none: no signed checkpoint covers this report" if cited is None else
                  f'{_e(cited.checkpoint.checkpoint.origin)}, {cited.checkpoint.checkpoint.size:,} records, '
                  f'signed by {_e(", ".join(k.label for k in cited.checkpoint.verified))}'
                  + {True: ' — <span class="ok">the log still matches it</span>',
                     False: ' — <span class="bad">the log NO LONGER matches it</span>',
                     None: ""}[r.checkpoint_matches])
    p = r.policy
    rows = [["generated at", _e(format_micros(r.generated_at)[:19] + " UTC (wall clock)")],
            ["as known at", _e(format_micros(r.as_of)[:19] + " UTC (knowledge time)")],
            ["ledger version", _e(ledger_version)],
            ["log", _e(log)],
            ["Merkle root", "—" if r.merkle_root is None else _hash(r.merkle_root, 64)],
            ["signed checkpoint", checkpoint]]
    if p is not None:
        rows += [["policy", f"{_e(p.name)} ({_e(p.source)})"],
                 ["policy content hash", _hash(p.content_hash, 64)],
                 ["policy file sha256", _hash(p.file_sha256, 64)]]
    return rows


def _hash(value: str, keep: int = 12) -> str:
    """A hash in monospace, cut to ``keep`` characters with the whole value on hover."""
    cut = value if len(value) <= keep else value[:keep] + "…"
    return f'<span class="mono" title="{_e(value)}">{_e(cut)}</span>'


def render(r: SubjectReport, notices: NoticeLookup = no_registry) -> str:
    """The page. ``notices`` gives each consent's notice text (the notice registry's lookup;
    without one, every consent says its text is not in the registry)."""
    x = r.explained
    timeline: list[Mapping[str, Any]] = x["timeline"]
    decision = x["decision"]
    verdicts = {v.event.event_id: v.justified for v in r.sweeps.verdicts}
    s = r.sweeps.summary()
    chain = r.chain
    row = r.status_row or {}
    since = "" if row.get("since") is None else format_day(to_micros(row["since"]))
    status_words = r.status + (f" since {since}" if since else "")
    cards = [
        ("Status", r.status, status_words + (f" ({row['reason']})" if row.get("reason") else ""), ""),
        ("Decision", f'{decision["action"]} ({decision["rule"]})',
         RULE_WORDS.get(decision["rule"], decision["rule"])
         + (f', due {day_of_iso(decision["due_at"])}' if decision["due_at"] else ""), ""),
        ("Sweep events", f'{s["justified"]}/{s["events"]} justified',
         "each recomputed from what was known then", "ok" if r.sweeps.ok else "bad"),
        ("Hash chain", "not checked" if chain is None else ("intact" if chain.ok else "BROKEN"),
         "" if chain is None else f"{chain.records:,} records",
         "" if chain is None else ("ok" if chain.ok else "bad")),
    ]
    card_html = "".join(f'<div class="card"><span class="muted">{_e(k)}</span><b class="{c}">{_e(v)}</b>'
                        f'<span class="plain">{_e(words)}</span></div>' for k, v, words, c in cards)

    consent_events = [e for e in timeline if e["type"] in CONSENT_TYPES]
    evidence_rows = [[_e(day_of_iso(e["occurred_at"])), _e(e["type"]),
                      _e(e["body"].get("purpose") or e["body"].get("list")),
                      _e(e["body"].get("notice_id")), _e(e["body"].get("notice_version")),
                      _hash(str(e["body"].get("notice_sha256") or "")) if e["body"].get("notice_sha256") else "",
                      _e(e["body"].get("ui_action")), _e(e["body"].get("channel")), _e(e["body"].get("via")),
                      _e(e["source"]), _id(e["event_id"])] for e in consent_events]
    evidence_details = [notice_html(r.controller, e["body"], notices)
                        if e["type"] == "ConsentGiven" or e["body"].get("notice_id") else ""
                        for e in consent_events]
    state_rows = [[_e(c.get("purpose")),
                   _e(effective_status(str(c.get("status")), r.status, since)),
                   _e(day_of_iso(str(c.get("since") or ""))),
                   _e(c.get("notice_id")), _e(c.get("notice_version")), _e(c.get("ui_action")),
                   _e(c.get("channel"))] for c in r.consents]
    state_rows += [[_e(f'newsletter {c.get("list")} ({c.get("channel")})'),
                    _e(effective_status(str(c.get("status")), r.status, since)),
                    _e(day_of_iso(str(c.get("since") or ""))), "", "", "", _e(c.get("via"))]
                   for c in r.subscriptions]

    sweep_rows = [[f'<span class="badge {"ok" if v.justified else "bad"}">{"justified" if v.justified else "UNJUSTIFIED"}</span>',
                   _e(v.event.type), _e(format_micros(v.event.recorded_at)[:10]), _e(v.event.position),
                   _e(v.reason), _e(v.event.body.get("policy")),
                   _hash(str(v.event.body.get("policy_hash", ""))),
                   _e(v.known_through)] for v in r.sweeps.verdicts]

    event_rows = [[_e(e["position"]), _e(e["occurred_at"][:19].replace("T", " ")),
                   _e(e["recorded_at"][:19].replace("T", " ")), _e(e["type"]),
                   _e(e["source"]), _e(e["actor"]), _fields(e["body"]), _id(e["event_id"])] for e in timeline]

    if chain is None:
        chain_html = '<p class="muted">Not checked (run <code>ledger audit verify</code>).</p>'
    else:
        chain_html = (f'<p class="{"ok" if chain.ok else "bad"}"><b>{"Intact" if chain.ok else "BROKEN"}</b>: '
                      f'{_e(chain.detail)}</p><p class="muted">{chain.records:,} records; head hash '
                      f'<span class="mono">{_e(chain.head_hash)}</span></p>')

    statuses = status_history(timeline)
    strip_legend = " ".join(f'<span style="color:{STATUS_COLOURS[k]}">■ status {k}</span>' for k in STATUS_COLOURS)
    legend = ('<p class="legend muted"><span>● occurred (event time)</span> <span>◇ recorded, when more '
              'than a day later (knowledge time)</span> <span style="color:#d50000">◯ unjustified sweep '
              f'event</span> <span style="color:#d50000">┆ as-of time</span> {strip_legend}</p>')
    policy_html = "" if r.policy is None else rules_html(r.policy, r.facts, timeline)
    if r.status in ("pseudonymised", "erased"):
        policy_html = (f'<p class="muted">The subject is {_e(r.status)}: the inactivity and notice dates '
                       'below are what those rules would give, and no longer decide anything.</p>'
                       + policy_html)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Audit report — {_e(r.controller)} subject {_e(r.subject[:16])}…</title>
<style>{CSS}</style></head><body>
<h1>Audit report: {_e(r.controller)} subject</h1>
<p class="mono">{_e(r.subject)}</p>
<p class="muted">As known at {_e(format_micros(r.as_of))} (knowledge time: only records recorded by then).
Subjects appear as pseudonyms; no personal data was decrypted to make this page.</p>
<div class="cards">{card_html}</div>

<h2 id="timeline">Timeline</h2>
<div class="chart">{timeline_svg(timeline, r.as_of, verdicts, statuses=statuses)}</div>
{legend}

<h2 id="rules">What the policy says, applied to this subject</h2>
<p class="muted">Each rule of policy {_e(decision["policy"])} in plain words, the policy's own clause,
and this subject's dates worked out.</p>
{policy_html}

<h2 id="consents">Consents and their evidence</h2>
<h3>Current state</h3>
<p class="muted">Subject status: {_e(status_words)}.</p>
{_table(["purpose", "status", "since", "notice", "version", "ui action", "channel / via"], state_rows,
        "No consent or subscription recorded.", wrap=(1,))}
<h3>Evidence (every consent event, with the notice it names)</h3>
{_table(["date", "event", "purpose / list", "notice id", "version", "notice sha256", "ui action",
         "channel", "via", "source", "event id"], evidence_rows, "No consent events.",
        details=evidence_details)}

<h2 id="rights">Rights requests</h2>
{_table(["request", "right", "received", "due", "closed", "outcome", "answered"],
        rights_rows(r.rights, r.as_of), "No rights requests.")}

<h2 id="decision">Retention decision and the rules behind it</h2>
<p><b>{_e(decision["action"])}</b> by rule <b>{_e(decision["rule"])}</b> ({_e(RULE_WORDS.get(decision["rule"], decision["rule"]))}){
    f', due {_e(day_of_iso(decision["due_at"]))}' if decision["due_at"] else ''} — policy {_e(decision["policy"])}
{_hash(decision["policy_hash"])}</p>
<details><summary>The rule chain, step by step</summary>
<ol class="rules">{"".join(f"<li>{_e(line)}</li>" for line in x["rule_chain"])}</ol></details>
<p class="muted">Evidence events: {", ".join(_id(ev) for ev in decision["evidence"]) or "none"}</p>

<h2 id="sweeps">Sweep events and their justification</h2>
<p class="muted">Each decision recomputed from the log as known just before its sweep ran (through
the position shown), under the policy whose hash the event recorded.</p>
{_table(["verdict", "event", "recorded", "position", "reason", "policy", "policy hash", "known through"],
        sweep_rows, "No sweep events for this subject.", wrap=(4,))}

<h2 id="events">All events</h2>
{_table(["position", "occurred", "recorded", "type", "source", "actor", "body fields", "event id"],
        event_rows, "No events.", wrap=(6,))}

<h2 id="chain">Hash chain</h2>
{chain_html}
<h2 id="checkpoint">Signed checkpoint</h2>
{checkpoint_html(r)}
<h2 id="provenance">Provenance</h2>
{_table(["", ""], provenance_rows(r), "", wrap=(1,))}
<footer>Generated by <code>ledger audit report</code>. Self-contained: no scripts, no external
resources.</footer>
</body></html>
"""


def registry_lookup(ledger: OpenLedger, controller: str) -> NoticeLookup:
    """The notice registry's texts of ``controller``, read once, as the page's lookup."""
    from ledger.app.notices import notice_texts

    texts = notice_texts(ledger, controller)

    def lookup(of: str, notice_id: str, version: str | None) -> str | None:
        if of != controller:
            return None
        if version is None:  # a consent that names no version: the only one, if only one
            named = [t for (n, _v), t in texts.items() if n == notice_id]
            return named[0] if len(named) == 1 else None
        return texts.get((notice_id, version))

    return lookup


def write(report: SubjectReport, path: Path, *, force: bool = False,
          notices: NoticeLookup = no_registry) -> None:
    """Writes the page (mode 0600, an existing file only with ``force``, never through a
    symbolic link: ``ledger.files.write_private_file``)."""
    from ledger.adapters.files import write_private_file

    write_private_file(path, render(report, notices), force=force, parameter="html")
