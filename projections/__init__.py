"""Projections (SPEC §4): the log folded into DuckDB tables an analyst can query.

The entry points are imported lazily, so that ``projections.policy`` and the other pure
modules load without DuckDB, Arrow and numpy."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from projections.engine.projector import (
        PROJECTIONS_FILE,
        ProjectReport,
        QueryResult,
        fingerprint,
        follow,
        project,
        projections_path,
        query,
        replay,
        stored_position,
        summary,
    )

__all__ = [
    "PROJECTIONS_FILE",
    "ProjectReport",
    "QueryResult",
    "fingerprint",
    "follow",
    "project",
    "projections_path",
    "query",
    "replay",
    "stored_position",
    "summary",
]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from projections.engine import projector

        return getattr(projector, name)
    raise AttributeError(f"module 'projections' has no attribute {name!r}")
