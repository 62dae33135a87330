"""The data directory's writer lock: one exclusive ``flock`` on ``DATA/write.lock``.

Every effect on durable state (a log append, shredding or sealing keys) happens while it is
held, so a check made under it (the ledger clock against the log, a data key still live, a
recorded erasure) is still true when the effect lands. ``flock`` is released by the kernel when
its holder dies, so a SIGKILLed writer never leaves the directory locked. Re-entrant within a
process: the sweep holds it across "append the record, then shred the keys", and the append
inside takes it again."""

from __future__ import annotations

import fcntl
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType

LOCK_FILE = "write.lock"


class WriterLock:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._thread_lock = threading.RLock()
        self._depth = 0
        self._fd: int | None = None

    def __enter__(self) -> WriterLock:
        self._thread_lock.acquire()
        try:
            if self._depth == 0:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX)
                except BaseException:
                    os.close(fd)
                    raise
                self._fd = fd
            self._depth += 1
        except BaseException:
            self._thread_lock.release()
            raise
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            self._depth -= 1
            if self._depth == 0 and self._fd is not None:
                fd, self._fd = self._fd, None
                fcntl.flock(fd, fcntl.LOCK_UN)
                os.close(fd)
        finally:
            self._thread_lock.release()

    @property
    def held(self) -> bool:
        return self._depth > 0

    @contextmanager
    def if_free(self) -> Iterator[bool]:
        """Holds the lock for the block if it can be had at once (yields True), else yields
        False without waiting: for housekeeping that can wait for a later turn."""
        with self._thread_lock:
            if self._depth:
                with self:
                    yield True
                return
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                yield False
                return
            self._fd, self._depth = fd, 1
            try:
                yield True
            finally:
                self._depth, self._fd = 0, None
                fcntl.flock(fd, fcntl.LOCK_UN)
                os.close(fd)
