"""The one as-of opener every reader uses (SPEC §4 knowledge time).

A reader asks for the projections now, or as known at T. One rule decides how they are made:
when every record of the log was recorded by T (T at or after the log's last recorded_at, which
no append goes below) the live projections, caught up, are exactly what was known at T; before
that, only a replay of the records recorded by T is, built in a temporary file that is removed
afterwards. A given file (a replay made earlier) is read as it is."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Final

from projections.engine.projector import (
    LogSource,
    Progress,
    Projector,
    make_projector,
    open_store,
    project,
    projections_path,
    replay,
)
from projections.engine.workers import PartitionProjector
from projections.store.duckdb_store import DuckDBStore
from projections.store.read_model import ProjectionsFile, ReadConnection, read_only_cursor

_REPLAY_FILE: Final = "as-of.duckdb"


def needs_replay(source: LogSource, as_of: int | None) -> bool:
    """Whether the log holds records recorded after ``as_of`` (then the live projections know
    too much, and only a replay answers as of T)."""
    return as_of is not None and as_of < source.log.last_recorded_at()


@contextmanager
def open_read_model(source: LogSource, *, as_of: int | None = None,
                    path: str | Path | None = None) -> Iterator[ReadConnection]:
    """A read-only view of the projections as known at ``as_of`` (None: now): the file at
    ``path`` as it is; else the live projections brought up to date; or, when the log holds
    records recorded after T, a replay as of T in a temporary directory, removed on leaving.
    A given file is never caught up nor replayed: it knows what its own replay knew."""
    if path is not None:
        with ProjectionsFile(path).read_only() as con:
            yield con
        return
    if not needs_replay(source, as_of):
        project(source)
        with ProjectionsFile(projections_path(source)).read_only() as con:
            yield con
        return
    assert as_of is not None
    with tempfile.TemporaryDirectory(prefix="ledger-as-of-") as workdir:
        target = Path(workdir) / _REPLAY_FILE
        replay(source, as_of, target)
        with ProjectionsFile(target).read_only() as con:
            yield con


class PrefixReplay:
    """One replay of the log that grows from each prefix to the next (the auditor recomputes
    each sweep's decisions from what was known just before it ran): ``through`` extends it,
    ``read_only`` views it."""

    def __init__(self, source: LogSource, store: DuckDBStore) -> None:
        self._store = store
        self._projector = Projector(source.log, store, source.registry, log_name=source.log.name)

    def through(self, position: int, progress: Progress | None = None) -> None:
        """Projects the records after the current prefix up to ``position`` (ascending calls)."""
        self._projector.run(up_to_position=position, progress=progress)

    def read_only(self) -> AbstractContextManager[ReadConnection]:
        return read_only_cursor(self._store.con, self._store.path)


@contextmanager
def open_prefix_replay(source: LogSource) -> Iterator[PrefixReplay]:
    """A ``PrefixReplay`` in a temporary file, removed on leaving."""
    with tempfile.TemporaryDirectory(prefix="ledger-audit-") as workdir:
        store = DuckDBStore(Path(workdir) / "prefix.duckdb", source.registry)
        try:
            yield PrefixReplay(source, store)
        finally:
            store.close()


class LiveReadModel:
    """The live projections held open by one long-running owner (``ledger serve``): caught up
    on demand and read through read-only cursors, instead of opened per answer. Whoever holds
    it is the projections file's one writer until ``close``."""

    def __init__(self, source: LogSource) -> None:
        self._source = source
        self._store: DuckDBStore | None = None
        self._projector: Projector | PartitionProjector | None = None

    @property
    def is_open(self) -> bool:
        return self._store is not None

    def catch_up(self) -> int:
        """Projects what the log holds beyond the projections; returns the position reached."""
        if self._store is None or self._projector is None:
            self._store = open_store(self._source)
            self._projector = make_projector(self._source, self._store)
        return self._projector.run().position

    def read_only(self) -> AbstractContextManager[ReadConnection]:
        if self._store is None:
            raise RuntimeError("the read model is closed: catch_up() opens it")
        return read_only_cursor(self._store.con, self._store.path)

    def close(self) -> None:
        store, self._store, self._projector = self._store, None, None
        if store is not None:
            store.close()
