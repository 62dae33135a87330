"""Every reader in the application layer opens the projections through the one as-of opener
(``projections.store.opener.open_read_model``): none replays, opens a DuckDB file or builds a
store of its own. Read from the imports, like tests/unit/test_architecture.py."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# What only the opener uses to make a read view (and the projection engine to write one).
OPENER_PARTS = {"replay", "read_only_connection", "DuckDBStore", "Projector", "make_projector",
                "open_store", "ProjectionsFile", "InMemoryProjections", "read_only_cursor"}


def projection_names(path: Path) -> set[str]:
    """The names a module imports from ``projections``."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("projections"):
            names.update(alias.name for alias in node.names)
    return names


def test_the_application_layer_reads_only_through_the_opener() -> None:
    found = {f"{path.relative_to(ROOT)} imports {name}"
             for path in sorted((ROOT / "ledger" / "app").glob("*.py"))
             for name in sorted(projection_names(path) & OPENER_PARTS)}
    assert found == set()

