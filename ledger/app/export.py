"""The register extract (registerutdrag, Art. 15) and portable copy (Art. 20) of one subject as
JSON (SPEC §2, §6): decrypted personal data, consents with their evidence, subscriptions,
activity, disclosures, rights requests and the retention schedule.

Pseudonymous facts come from the DuckDB projections (brought up to date first); personal data
is decrypted from the subject's own events, read from the log by position. A pseudonymised
subject's keys are sealed: its personal data is shown only when the caller asks explicitly
(``include_pseudonymised``), and the extract says so. An erased subject's keys are destroyed:
the extract says so and shows nothing personal, and no decryption is even attempted. A person
who signed up again after an erasure has a new relationship (SPEC §5): the extract holds only
its data; the events of earlier relationships are listed as erased and never decrypted.

The extract holds plaintext personal data, so it is written to stdout or to a 0600 file outside
the data directory (a copy inside it would survive the subject's erasure)."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any, Final

import duckdb

from ledger.adapters.files import write_private_file
from ledger.app.opened import OpenLedger
from ledger.app.permits import resolve_subject
from ledger.domain.errors import (
    KeyUnavailable,
    LedgerError,
    UnknownController,
    UsageError,
)
from ledger.domain.events import Event
from ledger.domain.retention.rules import decision_dict
from ledger.domain.timeutil import (
    format_day,
    format_if_datetime,
    format_micros,
    to_micros,
)
from projections.engine.projector import project, projections_path, read_only_connection

FORMAT: Final = "consent-ledger/register-extract/1"
CONSENT_TYPES: Final = ("ConsentGiven", "ConsentWithdrawn", "ObjectionRaised")


def _rows(con: duckdb.DuckDBPyConnection, sql: str, params: list[Any]) -> list[dict[str, Any]]:
    cursor = con.execute(sql, params)
    columns = [d[0] for d in cursor.description or ()]
    return [{c: format_if_datetime(v) for c, v in zip(columns, row, strict=True)}
            for row in cursor.fetchall()]


def _one(con: duckdb.DuckDBPyConnection, sql: str, params: list[Any]) -> dict[str, Any] | None:
    rows = _rows(con, sql, params)
    return rows[0] if rows else None


def retention_schedule(ledger: OpenLedger, controller: str, subject: str, as_of: int) -> Any:
    """The retention schedule: what will happen to the subject's data, when and why (the
    subject's decision at ``as_of``); None for a subject the projections do not know."""
    from ledger.app.decisions import subject_decision

    decision = subject_decision(ledger, controller, subject, as_of)
    return None if decision is None else decision_dict(decision)


def _event_at(ledger: OpenLedger, position: int) -> Event:
    for record in ledger.log.read(position, limit=1):
        return ledger.codec.decode(record.payload)
    raise LedgerError(f"log position {position} is missing: re-project with --rebuild")


class Relationship:
    """The subject's current relationship (SPEC §5): after a sign-up that followed an erasure,
    the extract holds only what belongs to it; events of earlier relationships are listed as
    erased and never decrypted."""

    def __init__(self, con: duckdb.DuckDBPyConnection, key: list[str]) -> None:
        row = con.execute(
            "SELECT relationship, previous_erased_at, previous_erased_position "
            "FROM pseudonymisation_status WHERE controller = ? AND subject = ?", key).fetchone()
        self.number = int(row[0] or 1) if row else 1
        self.after_at: datetime | None = row[1] if row and self.number > 1 else None
        self.after_position: int | None = row[2] if row and self.number > 1 else None

    def current(self, at: str = "occurred_at") -> tuple[str, list[Any]]:
        """SQL (``AND …``) and its parameters keeping a table's rows of the current relationship."""
        if self.after_at is None:
            return "", []
        return (f" AND ({at} > ? OR ({at} = ? AND position > ?))",
                [self.after_at, self.after_at, self.after_position])

    def earlier_reason(self) -> str:
        assert self.after_at is not None
        return (f"erased with an earlier relationship (erasure of "
                f"{format_day(to_micros(self.after_at))}); not decrypted")


def _personal_data(
    ledger: OpenLedger, con: duckdb.DuckDBPyConnection, controller: str, subject: str,
    *, include_sealed: bool, relationship: Relationship,
) -> dict[str, Any]:
    """Decrypts the pii of each of the subject's events of the current relationship, oldest
    first (event time); the earlier relationships' events are listed, never decrypted."""
    current, params = relationship.current()
    positions = con.execute(
        f"SELECT position, event_id, type, occurred_at, NOT (true {current}) AS earlier "
        "FROM events WHERE controller = ? AND subject = ? AND has_pii "
        "ORDER BY occurred_at, position", [*params, controller, subject]).fetchall()
    identifiers: dict[str, list[str]] = {}
    attributes: dict[str, Any] = {}
    by_event: list[dict[str, Any]] = []
    unreadable: list[dict[str, Any]] = []
    for position, event_id, event_type, occurred_at, earlier in positions:
        if earlier:
            unreadable.append({"event_id": event_id, "type": event_type,
                               "occurred_at": format_if_datetime(occurred_at),
                               "reason": relationship.earlier_reason()})
            continue
        event = _event_at(ledger, position)
        try:
            data = ledger.personal_data(event, include_sealed=include_sealed) or {}
        except KeyUnavailable as e:  # e.g. a category shredded at the end of its legal hold
            unreadable.append({"event_id": event.event_id, "type": event.type,
                               "occurred_at": format_micros(event.occurred_at), "reason": str(e)})
            continue
        for kind, value in data.get("subject", {}).items():
            if value not in identifiers.setdefault(kind, []):
                identifiers[kind].append(value)
        if "account_ref" in data:
            attributes["account_ref"] = data["account_ref"]
        attributes.update(data.get("pii", {}))  # later events rectify earlier values
        by_event.append({"event_id": event.event_id, "type": event.type,
                         "occurred_at": format_micros(event.occurred_at), **data})
    return {"available": True, "identifiers": identifiers, "current": attributes,
            "by_event": by_event, "unreadable": unreadable}


def export_subject(
    ledger: OpenLedger,
    *,
    controller: str,
    subject: str | None = None,
    email: str | None = None,
    account: str | None = None,
    include_pseudonymised: bool = False,
) -> dict[str, Any]:
    """Everything held about one person, as a JSON-ready dict. Raises UnknownController (a
    UsageError) for an unknown controller, UsageError for a subject with no events."""
    if controller not in ledger.config.controllers:
        raise UnknownController(controller)
    project(ledger)  # the extract reflects every event in the log
    now = ledger.clock.now()
    con = read_only_connection(projections_path(ledger))
    try:
        ref = resolve_subject(ledger, con, subject=subject, email=email, account=account,
                              controller=controller)
        key = [ref.controller, ref.subject]
        activity = _one(con, "SELECT * EXCLUDE (controller, subject) FROM activity_clock "
                        "WHERE controller = ? AND subject = ?", key)
        if activity is None:
            raise UsageError(f"unknown subject {ref.subject[:16]}… for controller "
                             f"{ref.controller!r}: no events recorded, nothing is held")
        status = _one(con, "SELECT * EXCLUDE (controller, subject) FROM pseudonymisation_status "
                      "WHERE controller = ? AND subject = ?", key) or {"status": "active"}
        relationship = Relationship(con, key)
        extract: dict[str, Any] = {
            "format": FORMAT,
            "controller": ref.controller,
            "subject": ref.subject,
            "policy": ledger.config.controllers[ref.controller].policy,
            "generated_at": format_micros(now),
            "status": status,
        }
        state = status["status"]
        if state == "erased":
            # Keys destroyed: the person's data is gone; show nothing about them beyond that.
            extract["erased"] = True
            extract["personal_data"] = {
                "available": False,
                "reason": f"the subject was erased on {str(status.get('since'))[:10]}: its keys "
                          "were destroyed (crypto-shredding), nothing personal can be shown"}
        else:
            if state == "pseudonymised" and not include_pseudonymised:
                extract["personal_data"] = {
                    "available": False,
                    "reason": f"the subject was pseudonymised on {str(status.get('since'))[:10]}: "
                              "its personal data is sealed (use --include-pseudonymised to "
                              "decrypt it for this extract)"}
            else:
                sealed = state == "pseudonymised"
                extract["personal_data"] = _personal_data(
                    ledger, con, ref.controller, ref.subject, include_sealed=sealed,
                    relationship=relationship)
                if sealed:
                    extract["personal_data"]["sealed_keys_used"] = True
                    extract["personal_data"]["note"] = (
                        "the subject is pseudonymised; its personal data was decrypted with "
                        "sealed keys because --include-pseudonymised was given")
            extract.update(_pseudonymous_sections(con, key, activity, relationship))
    finally:
        con.close()
    # After closing: the schedule may open the projections itself.
    schedule = retention_schedule(ledger, ref.controller, ref.subject, now)
    if schedule is not None:
        extract["retention"] = schedule
    return extract


def _pseudonymous_sections(con: duckdb.DuckDBPyConnection, key: list[str],
                           activity: dict[str, Any], relationship: Relationship) -> dict[str, Any]:
    """Of the current relationship only (consents, subscriptions and activity: the fold keeps
    only its rows)."""
    where = "WHERE controller = ? AND subject = ?"
    current, params = relationship.current()
    shared, shared_params = relationship.current("shared_at")
    received = ("" if relationship.after_at is None else
                " AND coalesce(received_at, closed_at) > ?")
    requests = _rows(con, f"SELECT * EXCLUDE (controller, subject) FROM rights_requests {where} "
                     f"{received} ORDER BY received_at NULLS LAST, request_id",
                     key + ([relationship.after_at] if received else []))
    for r in requests:
        r["open"] = r["closed_at"] is None
    history = _rows(con, f"SELECT position, event_id, type, occurred_at, recorded_at, body "
                    f"FROM events {where} AND type IN {CONSENT_TYPES}{current} ORDER BY "
                    "occurred_at, position", key + params)
    timeline = _rows(con, f"SELECT position, event_id, type, occurred_at, recorded_at, source, "
                     f"actor, has_pii, body FROM events {where}{current} ORDER BY occurred_at, "
                     "position", key + params)
    for row in (*history, *timeline):
        row["body"] = json.loads(row["body"]) if row["body"] else {}
    return {
        "consents": _rows(con, f"SELECT * EXCLUDE (controller, subject) FROM consent_state "
                          f"{where} ORDER BY purpose", key),
        "consent_history": history,
        "subscriptions": _rows(con, f"SELECT * EXCLUDE (controller, subject) FROM subscriptions "
                               f"{where} ORDER BY list, channel", key),
        "activity": activity,
        "disclosures": _rows(con, f"SELECT * EXCLUDE (controller, subject) FROM disclosures "
                             f"{where}{shared} ORDER BY shared_at, position", key + shared_params),
        "rights_requests": requests,
        "timeline": timeline,
    }


def check_out_path(out: str | Path, data_dir: Path) -> Path:
    """The output path (its directory resolved, its last component not: a symbolic link
    there is refused when writing, never followed); a usage error if it lies inside the data
    directory."""
    given = Path(out).expanduser()
    target = given.parent.resolve() / given.name
    if target.is_relative_to(data_dir.expanduser().resolve()):
        raise UsageError(f"--out: {out} is inside the data directory; write the extract elsewhere "
                         "(it holds plaintext personal data)")
    return target


def write_export(extract: dict[str, Any], out: str | Path, data_dir: Path, *,
                 force: bool = False) -> Path:
    """Writes the extract to ``out`` with mode 0600, as a new file renamed into place
    (``ledger.files.write_private_file``): an existing file only with ``force``, never through
    a symbolic link. Refuses a path inside the data directory: a plaintext copy there would
    outlive the subject's erasure (crypto-shredding only reaches ciphertext)."""
    target = check_out_path(out, data_dir)
    text = json.dumps(extract, indent=2, ensure_ascii=False, default=str) + "\n"
    return write_private_file(target, text, force=force, option="--out")
