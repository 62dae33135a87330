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
from pathlib import Path
from typing import Any, Final

from ledger.adapters.files import write_private_file
from ledger.app.opened import OpenLedger
from ledger.app.permits import UnknownSubject, resolve_subject
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
from projections.store.opener import open_read_model
from projections.store.read_model import ReadConnection
from projections.store.subject_queries import (
    Relationship,
    personal_events,
    pseudonymous_sections,
    relationship,
    subject_row,
)

FORMAT: Final = "consent-ledger/register-extract/1"


def retention_schedule(ledger: OpenLedger, controller: str, subject: str, as_of: int) -> Any:
    """The retention schedule: what will happen to the subject's data, when and why (the
    subject's decision at ``as_of``); None for a subject the projections do not know."""
    from ledger.app.decisions import subject_decision

    decision = subject_decision(ledger, controller, subject, as_of)
    return None if decision is None else decision_dict(decision)


def _event_at(ledger: OpenLedger, position: int) -> Event:
    for record in ledger.log.read(position, limit=1):
        return ledger.codec.decode(record.payload)
    raise LedgerError(f"log position {position} is missing: re-project with {{rebuild}}")


def _earlier_reason(rel: Relationship) -> str:
    """Why an event of an earlier relationship is listed and not decrypted."""
    assert rel.after_at is not None
    return (f"erased with an earlier relationship (erasure of "
            f"{format_day(to_micros(rel.after_at))}); not decrypted")


def _personal_data(
    ledger: OpenLedger, con: ReadConnection, controller: str, subject: str,
    *, include_sealed: bool, rel: Relationship,
) -> dict[str, Any]:
    """Decrypts the pii of each of the subject's events of the current relationship, oldest
    first (event time); the earlier relationships' events are listed, never decrypted."""
    identifiers: dict[str, list[str]] = {}
    attributes: dict[str, Any] = {}
    by_event: list[dict[str, Any]] = []
    unreadable: list[dict[str, Any]] = []
    for held in personal_events(con, controller, subject, rel):
        if held.earlier:
            unreadable.append({"event_id": held.event_id, "type": held.type,
                               "occurred_at": format_if_datetime(held.occurred_at),
                               "reason": _earlier_reason(rel)})
            continue
        event = _event_at(ledger, held.position)
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
    with open_read_model(ledger) as con:  # the extract reflects every event in the log
        now = ledger.clock.now()
        ref = resolve_subject(ledger, con, subject=subject, email=email, account=account,
                              controller=controller)
        activity = subject_row(con, "activity_clock", ref.controller, ref.subject)
        if activity is None:
            raise UnknownSubject(f"unknown subject {ref.subject[:16]}… for controller "
                                 f"{ref.controller!r}: no events recorded, nothing is held")
        status = subject_row(con, "pseudonymisation_status", ref.controller,
                             ref.subject) or {"status": "active"}
        rel = relationship(con, ref.controller, ref.subject)
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
                    ledger, con, ref.controller, ref.subject, include_sealed=sealed, rel=rel)
                if sealed:
                    extract["personal_data"]["sealed_keys_used"] = True
                    extract["personal_data"]["note"] = (
                        "the subject is pseudonymised; its personal data was decrypted with "
                        "sealed keys because --include-pseudonymised was given")
            extract.update(_pseudonymous_sections(con, ref.controller, ref.subject, activity,
                                                  rel))
    # After closing: the schedule may open the projections itself.
    schedule = retention_schedule(ledger, ref.controller, ref.subject, now)
    if schedule is not None:
        extract["retention"] = schedule
    return extract


def _pseudonymous_sections(con: ReadConnection, controller: str, subject: str,
                           activity: dict[str, Any], rel: Relationship) -> dict[str, Any]:
    """Of the current relationship only, in the extract's order; requests say if still open."""
    sections = pseudonymous_sections(con, controller, subject, rel)
    for r in sections["rights_requests"]:
        r["open"] = r["closed_at"] is None
    return {
        "consents": sections["consents"],
        "consent_history": sections["consent_history"],
        "subscriptions": sections["subscriptions"],
        "activity": activity,
        "disclosures": sections["disclosures"],
        "rights_requests": sections["rights_requests"],
        "timeline": sections["timeline"],
    }


def check_out_path(out: str | Path, data_dir: Path) -> Path:
    """The output path (its directory resolved, its last component not: a symbolic link
    there is refused when writing, never followed); a usage error if it lies inside the data
    directory."""
    given = Path(out).expanduser()
    target = given.parent.resolve() / given.name
    if target.is_relative_to(data_dir.expanduser().resolve()):
        raise UsageError(f"{out} is inside the data directory; write the extract elsewhere "
                         "(it holds plaintext personal data)", parameter="out")
    return target


def write_export(extract: dict[str, Any], out: str | Path, data_dir: Path, *,
                 force: bool = False) -> Path:
    """Writes the extract to ``out`` with mode 0600, as a new file renamed into place
    (``ledger.files.write_private_file``): an existing file only with ``force``, never through
    a symbolic link. Refuses a path inside the data directory: a plaintext copy there would
    outlive the subject's erasure (crypto-shredding only reaches ciphertext)."""
    target = check_out_path(out, data_dir)
    text = json.dumps(extract, indent=2, ensure_ascii=False, default=str) + "\n"
    return write_private_file(target, text, force=force, parameter="out")
