"""``ledger audit report``: one subject, for an auditor, as a self-contained HTML page — the
timeline as an inline SVG chart, consents with their evidence, the retention decision and its
rule chain, every sweep event with its justification, and the chain status.

No personal data: nothing is decrypted. The page is built from pseudonyms and body fields only
(the projections never hold ``pii``), so it is safe for pseudonymised and erased subjects
alike. No JavaScript and no external resources: it opens the same way offline in ten years."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from html import escape
from pathlib import Path
from typing import Any

from ledger.app.audit_decisions import DecisionAudit, audit
from ledger.app.auditing import Auditor, ChainStatus
from ledger.app.decisions import controller_policies, projections_as_of
from ledger.app.explain import explain
from ledger.app.opened import OpenLedger
from ledger.app.sweep_checkpoints import CitedCheckpoint, latest_checkpoint
from ledger.domain.timeutil import (
    day_of_iso,
    format_day,
    format_micros,
    from_micros,
    parse_timestamp,
    to_micros,
)
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
                "checkpoint": cited}


def build(ledger: OpenLedger, controller: str, subject: str, as_of: int | None = None,
          policy_paths: Sequence[str] = (), chain: ChainStatus | None = None) -> SubjectReport:
    policy = controller_policies(ledger, controller)[controller]
    with projections_as_of(ledger, as_of) as (con, now):
        explained = explain(ledger, con, controller, subject, policy, now)
        consents = table_rows(con, "consent_state", controller, subject)
        subscriptions = table_rows(con, "subscriptions", controller, subject)
        status = table_rows(con, "pseudonymisation_status", controller, subject)
    sweeps = audit(ledger, as_of, policy_paths, subject=(controller, subject))
    position = max((int(e["position"]) for e in explained["timeline"]), default=0)
    return SubjectReport(controller, subject, now, explained, consents, subscriptions,
                         status[0]["status"] if status else "active", sweeps, chain, position,
                         latest_checkpoint(ledger.settings, position))


def check_chain(report: SubjectReport, auditor: Auditor) -> SubjectReport:
    """The report with its chain verified, against the checkpoint it cites if any."""
    cited = None if report.checkpoint is None else report.checkpoint.checkpoint.checkpoint
    result = auditor.verify(cited)
    return dataclasses.replace(report, chain=ChainStatus.of(result),
                               checkpoint_matches=result.digest_matches)


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
                 verdicts: Mapping[str, bool], width: int = 1100) -> str:
    """Events by type (one lane each) over event time; a hollow diamond marks when a late
    event was recorded, a red ring an unjustified sweep event, a dashed line the as-of time."""
    types = list(dict.fromkeys(e["type"] for e in timeline))
    left, right, top, lane = 190, 30, 24, 30
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
    parts.append(f'<line x1="{ax:.1f}" y1="{top - 14}" x2="{ax:.1f}" y2="{axis_y}" stroke="#d50000" '
                 f'stroke-dasharray="6 4"/><text x="{ax - 4:.1f}" y="{top - 12}" font-size="11" '
                 f'text-anchor="end" fill="#d50000">as of {_e(format_day(as_of))}</text>')
    parts.append("</svg>")
    return "".join(parts)


CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1b1b1b;margin:24px 32px;background:#fafafa}
h1{font-size:22px;margin:0 0 4px} h2{font-size:17px;margin:28px 0 8px;border-bottom:2px solid #e3e3e3;padding-bottom:4px}
.muted{color:#666} code,.mono{font-family:ui-monospace,"DejaVu Sans Mono",monospace;font-size:12px;word-break:break-all}
.cards{display:flex;gap:12px;flex-wrap:wrap;margin:14px 0}
.card{background:#fff;border:1px solid #ddd;border-radius:8px;padding:10px 14px;min-width:170px}
.card b{display:block;font-size:18px} .ok{color:#1b5e20} .bad{color:#b71c1c}
table{border-collapse:collapse;width:100%;background:#fff;font-size:12.5px}
th,td{border:1px solid #e0e0e0;padding:4px 6px;text-align:left;vertical-align:top;overflow-wrap:anywhere} th{background:#f3f3f3}
.badge{display:inline-block;padding:1px 7px;border-radius:10px;font-size:11px;font-weight:600;color:#fff}
.badge.ok{background:#2e7d32} .badge.bad{background:#c62828}
.chart{background:#fff;border:1px solid #ddd;border-radius:8px;padding:8px;overflow-x:auto}
ol.rules li{margin:2px 0} .legend span{margin-right:14px}
footer{margin-top:30px;font-size:12px;color:#666}
"""


def _table(columns: Sequence[str], rows: Sequence[Sequence[str]], empty: str) -> str:
    if not rows:
        return f'<p class="muted">{_e(empty)}</p>'
    head = "".join(f"<th>{_e(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _id(event_id: str) -> str:
    """An event id, short in the cell and whole on hover (the tables stay readable)."""
    return f'<span class="mono" title="{_e(event_id)}">{_e(event_id[:13])}…</span>'


def _fields(body: Mapping[str, Any]) -> str:
    return "; ".join(f"{_e(k)}={_e(json.dumps(v, ensure_ascii=False) if isinstance(v, list | dict) else v)}"
                     for k, v in body.items() if v not in (None, "", []))


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


def render(r: SubjectReport) -> str:
    x = r.explained
    timeline: list[Mapping[str, Any]] = x["timeline"]
    decision = x["decision"]
    verdicts = {v.event.event_id: v.justified for v in r.sweeps.verdicts}
    s = r.sweeps.summary()
    chain = r.chain
    cards = [
        ("Status", r.status, ""),
        ("Decision", f'{decision["action"]} ({decision["rule"]})', ""),
        ("Sweep events", f'{s["justified"]}/{s["events"]} justified', "ok" if r.sweeps.ok else "bad"),
        ("Hash chain", "not checked" if chain is None else ("intact" if chain.ok else "BROKEN"),
         "" if chain is None else ("ok" if chain.ok else "bad")),
    ]
    card_html = "".join(f'<div class="card"><span class="muted">{_e(k)}</span><b class="{c}">{_e(v)}</b></div>'
                        for k, v, c in cards)

    consent_events = [e for e in timeline if e["type"] in CONSENT_TYPES]
    evidence_rows = [[_e(day_of_iso(e["occurred_at"])), _e(e["type"]), _e(e["body"].get("purpose") or e["body"].get("list")),
                      _e(e["body"].get("notice_id")), _e(e["body"].get("notice_version")),
                      f'<span class="mono">{_e(e["body"].get("notice_sha256"))}</span>',
                      _e(e["body"].get("ui_action")), _e(e["body"].get("channel")), _e(e["body"].get("via")),
                      _e(e["source"]), _id(e["event_id"])] for e in consent_events]
    state_rows = [[_e(c.get("purpose")), _e(c.get("status")), _e(day_of_iso(str(c.get("since") or ""))),
                   _e(c.get("notice_id")), _e(c.get("notice_version")), _e(c.get("ui_action")),
                   _e(c.get("channel"))] for c in r.consents]
    state_rows += [[_e(f'newsletter {c.get("list")} ({c.get("channel")})'), _e(c.get("status")),
                    _e(day_of_iso(str(c.get("since") or ""))), "", "", "", _e(c.get("via"))] for c in r.subscriptions]

    sweep_rows = [[f'<span class="badge {"ok" if v.justified else "bad"}">{"justified" if v.justified else "UNJUSTIFIED"}</span>',
                   _e(v.event.type), _e(format_micros(v.event.recorded_at)[:19]), _e(v.event.position),
                   _e(v.reason), _e(v.event.body.get("policy")),
                   f'<span class="mono">{_e(str(v.event.body.get("policy_hash", ""))[:16])}…</span>',
                   _e(v.known_through)] for v in r.sweeps.verdicts]

    event_rows = [[_e(e["position"]), _e(e["occurred_at"][:19]), _e(e["recorded_at"][:19]), _e(e["type"]),
                   _e(e["source"]), _e(e["actor"]), _fields(e["body"]), _id(e["event_id"])] for e in timeline]

    if chain is None:
        chain_html = '<p class="muted">Not checked (run <code>ledger audit verify</code>).</p>'
    else:
        chain_html = (f'<p class="{"ok" if chain.ok else "bad"}"><b>{"Intact" if chain.ok else "BROKEN"}</b>: '
                      f'{_e(chain.detail)}</p><p class="muted">{chain.records:,} records; head hash '
                      f'<span class="mono">{_e(chain.head_hash)}</span></p>')

    legend = ('<p class="legend muted"><span>● occurred (event time)</span><span>◇ recorded, when more '
              'than a day later (knowledge time)</span><span style="color:#d50000">◯ unjustified sweep '
              'event</span><span style="color:#d50000">┆ as-of time</span></p>')
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

<h2>Timeline</h2>
<div class="chart">{timeline_svg(timeline, r.as_of, verdicts)}</div>
{legend}

<h2>Consents and their evidence</h2>
<h3 style="font-size:14px">Current state</h3>
{_table(["purpose", "status", "since", "notice", "version", "ui action", "channel / via"], state_rows,
        "No consent or subscription recorded.")}
<h3 style="font-size:14px">Evidence (every consent event)</h3>
{_table(["date", "event", "purpose / list", "notice id", "version", "notice sha256", "ui action",
         "channel", "via", "source", "event id"], evidence_rows, "No consent events.")}

<h2>Retention decision and the rules behind it</h2>
<p><b>{_e(decision["action"])}</b> by rule <b>{_e(decision["rule"])}</b>{
    f', due {_e(day_of_iso(decision["due_at"]))}' if decision["due_at"] else ''} — policy {_e(decision["policy"])}
<span class="mono">sha256 {_e(decision["policy_hash"])}</span></p>
<ol class="rules">{"".join(f"<li>{_e(line)}</li>" for line in x["rule_chain"])}</ol>
<p class="muted">Evidence events: {", ".join(f'<span class="mono">{_e(ev)}</span>' for ev in decision["evidence"]) or "none"}</p>

<h2>Sweep events and their justification</h2>
<p class="muted">Each decision recomputed from the log as known just before its sweep ran (through
the position shown), under the policy whose hash the event recorded.</p>
{_table(["verdict", "event", "recorded", "position", "reason", "policy", "policy hash", "known through"],
        sweep_rows, "No sweep events for this subject.")}

<h2>All events</h2>
{_table(["position", "occurred", "recorded", "type", "source", "actor", "body fields", "event id"],
        event_rows, "No events.")}

<h2>Hash chain</h2>
{chain_html}
<h2>Signed checkpoint</h2>
{checkpoint_html(r)}
<footer>Generated by <code>ledger audit report</code>. Self-contained: no scripts, no external
resources.</footer>
</body></html>
"""


def write(report: SubjectReport, path: Path, *, force: bool = False) -> None:
    """Writes the page (mode 0600, an existing file only with ``force``, never through a
    symbolic link: ``ledger.files.write_private_file``)."""
    from ledger.adapters.files import write_private_file

    write_private_file(path, render(report), force=force, parameter="html")
