"""Projections (SPEC §4): the log folded into DuckDB tables an analyst can query."""

from __future__ import annotations

from projections.projector import (
    PROJECTIONS_FILE,
    ProjectReport,
    fingerprint,
    follow,
    project,
    project_and_summarise,
    projections_path,
    query,
    replay,
    stored_position,
    summary,
)

__all__ = [
    "PROJECTIONS_FILE",
    "ProjectReport",
    "fingerprint",
    "follow",
    "project",
    "project_and_summarise",
    "projections_path",
    "query",
    "replay",
    "stored_position",
    "summary",
]
