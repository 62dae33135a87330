"""The ``permissions`` table: subject, purpose and channel -> permitted, as ``ledger permits``
answers it. The answers are computed by the application layer with the one set of rules
(``ledger.domain.permissions.decide``); this module only lists the subjects and stores the
rows, replacing the table in one transaction."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, Final

import duckdb

from projections.store.read_model import ReadConnection

TABLE: Final = "permissions"
COLUMNS: Final = (
    ("controller", "VARCHAR"), ("subject", "VARCHAR"), ("purpose", "VARCHAR"),
    ("channel", "VARCHAR"),  # a marketing channel, or '*' for purposes no channel changes
    ("subject_status", "VARCHAR"), ("basis", "VARCHAR"), ("permitted", "BOOLEAN"),
    ("rule", "VARCHAR"), ("reason", "VARCHAR"), ("event_id", "VARCHAR"),
    ("event_type", "VARCHAR"), ("event_at", "TIMESTAMP"), ("policy", "VARCHAR"),
    ("policy_hash", "VARCHAR"), ("as_of", "TIMESTAMP"),
)
CREATE: Final = (f"CREATE TABLE IF NOT EXISTS {TABLE} ("
                 + ", ".join(f"{n} {t}" for n, t in COLUMNS)
                 + ", PRIMARY KEY (controller, subject, purpose, channel))")


def known_subjects(con: ReadConnection, controllers: Sequence[str]) -> list[tuple[str, str]]:
    """(controller, subject) of every subject of these controllers, in order."""
    return [(str(c), str(s)) for c, s in con.execute(
        "SELECT controller, subject FROM activity_clock WHERE subject <> '*' "
        "AND controller IN (SELECT unnest(?)) ORDER BY ALL", [list(controllers)]).fetchall()]


def knowledge_time(con: ReadConnection) -> datetime | None:
    """When the last record the file reflects was recorded (None: an empty file)."""
    row = con.execute("SELECT coalesce(max(as_of), max(recorded_at)) FROM ledger_position").fetchone()
    return None if row is None else row[0]


def save_permissions(path: Path, rows: Sequence[tuple[Any, ...]]) -> None:
    """Replaces every row of ``permissions`` in the file at ``path`` with ``rows`` (tuples in
    ``COLUMNS`` order), in one transaction: a reader sees the old table or the new one."""
    con = duckdb.connect(str(path))
    try:
        con.execute(CREATE)
        con.execute("BEGIN")
        con.execute(f"DELETE FROM {TABLE}")
        if rows:
            con.executemany(f"INSERT INTO {TABLE} VALUES ({', '.join('?' * len(COLUMNS))})",
                            list(rows))
        con.execute("COMMIT")
    finally:
        con.close()
