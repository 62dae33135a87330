"""Reading ahead: the next page is read and decoded in a thread while the current one is
written (DuckDB releases the GIL while it commits, so on two cores both run at once)."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator
from typing import Any, Final, TypeVar

T = TypeVar("T")
_DONE: Final = object()


def read_ahead(items: Iterable[T], name: str, stop: threading.Event | None = None) -> Iterator[T]:
    """Yields ``items``, produced one ahead by a reader thread: DuckDB releases the GIL while
    it commits, so on two cores the next page is read and decoded meanwhile. An error in the
    reader is raised here; stopping early (or ``stop``) ends the reader."""
    ready: queue.Queue[Any] = queue.Queue(1)
    halt = threading.Event()

    def produce() -> None:
        try:
            for item in items:
                if halt.is_set() or (stop is not None and stop.is_set()):
                    break
                ready.put(item)
            ready.put(_DONE)
        except BaseException as e:  # noqa: BLE001 - handed to the consuming thread, raised there
            ready.put(e)

    reader = threading.Thread(target=produce, name=name, daemon=True)
    reader.start()
    try:
        while (item := ready.get()) is not _DONE:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        halt.set()
        while reader.is_alive():  # unblock a reader waiting on a full queue
            try:
                ready.get(timeout=0.05)
            except queue.Empty:
                pass
        reader.join()
