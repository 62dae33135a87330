"""``ledger export parquet DIR``: the public projection tables as Parquet files for analysts
(SPEC §1), as known now or at a knowledge time T.

The files are written into a new temporary directory next to DIR, with a ``manifest.json``
(log position, as-of, content fingerprint, and each table's file, row count and schema), and
the complete directory is then moved into place in one step. A SIGKILL at any moment leaves the
previous export or none, never a mix; the next run removes the dead run's temporary directory.
An existing DIR is replaced only when it is empty or an earlier export (its manifest names
every file in it): anything else is someone's data and is refused."""

from __future__ import annotations

import json
import os
import stat
from dataclasses import asdict
from pathlib import Path
from typing import Any, Final

from ledger.adapters import killpoints
from ledger.adapters.files import (
    new_private_directory,
    place_directory,
    remove_leftover_directories,
    remove_tree,
)
from ledger.app.opened import OpenLedger
from ledger.domain.errors import UsageError
from ledger.domain.timeutil import format_micros
from projections.store.opener import open_read_model
from projections.store.parquet_export import content_fingerprint, write_parquet_tables
from projections.store.read_model import tracked_position

FORMAT: Final = "consent-ledger/parquet-export/1"
MANIFEST: Final = "manifest.json"


def _is_inside(path: Path, directory: Path) -> bool:
    try:
        path.resolve().relative_to(directory.resolve())
    except ValueError:
        return False
    return True


def _earlier_export(directory: Path) -> bool:
    """Whether ``directory`` holds exactly an earlier export: its manifest and the files it
    lists, nothing else."""
    try:
        manifest = json.loads((directory / MANIFEST).read_text(encoding="utf-8"))
        listed = {t["file"] for t in manifest["tables"]} if manifest["format"] == FORMAT else None
    except (OSError, ValueError, KeyError, TypeError):
        return False
    if listed is None:
        return False
    return {p.name for p in directory.iterdir()} <= listed | {MANIFEST}


def check_export_target(target: Path, data_dir: Path) -> None:
    """Refuses a DIR that would lose someone's files or sit in the data directory."""
    if _is_inside(target, data_dir):
        raise UsageError(f"{target} is inside the data directory; export elsewhere",
                         parameter="directory")
    if not target.parent.is_dir():
        raise UsageError(f"the directory {target.parent} does not exist", parameter="directory")
    try:
        st = os.lstat(target)
    except FileNotFoundError:
        return
    if stat.S_ISLNK(st.st_mode):
        raise UsageError(f"{target} is a symbolic link; refusing to write through it",
                         parameter="directory")
    if not stat.S_ISDIR(st.st_mode):
        raise UsageError(f"{target} exists and is not a directory", parameter="directory")
    if any(target.iterdir()) and not _earlier_export(target):
        raise UsageError(f"{target} is not empty and not an earlier export; choose a new or "
                         "empty directory", parameter="directory")


def export_parquet(ledger: OpenLedger, directory: str | Path, *,
                   as_of: int | None = None) -> dict[str, Any]:
    """Writes the export and returns its manifest (with the directory it was placed in)."""
    target = Path(os.path.abspath(directory))
    check_export_target(target, ledger.data_dir)
    remove_leftover_directories(target.parent, target.name)
    work = new_private_directory(target.parent, target.name)
    try:
        clock = ledger.clock.now() if as_of is None else as_of
        with open_read_model(ledger, as_of=as_of) as con:
            tables = write_parquet_tables(con, work)
            position = tracked_position(con)
        for path in work.iterdir():
            os.chmod(path, 0o600)
        manifest: dict[str, Any] = {
            "format": FORMAT,
            "log": ledger.log.name,
            "log_position": position,
            "as_of": format_micros(clock),
            "fingerprint": content_fingerprint(tables),
            "tables": [asdict(t) for t in tables],
        }
        fd = os.open(work / MANIFEST, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(manifest, f, indent=2, ensure_ascii=False)
            f.write("\n")
        killpoints.reached("export.parquet.place")
        place_directory(work, target)
    except BaseException:
        remove_tree(work)
        raise
    return {**manifest, "directory": str(target)}
