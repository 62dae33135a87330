"""The fast tier (``pytest -m "not slow"``) and the full suite share each case table: the fast
tier runs a few chosen rows of a table whose rows each start processes, the full suite all."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import pytest


def fast_rows(rows: Iterable[Sequence[Any]], fast: set[str], *, id_column: int = 0) -> list[Any]:
    """``pytest.param`` for each row, id from ``id_column``; rows whose id is not in ``fast``
    are marked slow. Every id in ``fast`` must exist, so a renamed row cannot drop out."""
    params = []
    seen = set()
    for row in rows:
        ident = str(row[id_column])
        seen.add(ident)
        marks = () if ident in fast else (pytest.mark.slow,)
        params.append(pytest.param(*row, id=ident, marks=marks))
    missing = fast - seen
    assert not missing, f"fast rows that are not in the table: {sorted(missing)}"
    return params
