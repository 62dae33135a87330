"""Worker processes die with their parent (issue 9, row 16).

A spawned worker of a ``ProcessPoolExecutor`` blocks on its task queue; when the parent is
killed (SIGKILL, OOM killer) nothing ever closes that queue, so the worker -- and
multiprocessing's resource tracker, which waits for every holder of its pipe -- would hang on
for minutes. ``die_with_parent`` (run first in every worker's initializer) prevents that:

- on Linux, ``prctl(PR_SET_PDEATHSIG, SIGKILL)``: the kernel kills the worker the moment its
  parent dies. (The kernel ties this to the parent *thread* that spawned the worker; both of
  the ledger's pools are created, used and shut down inside one call on one thread, so that
  thread outlives its workers.)
- everywhere, a daemon watchdog thread that exits the process once ``os.getppid()`` is no
  longer the parent (it was re-parented to init or a subreaper);
- and a check right after both are armed, for a parent that died while the worker started.

The resource tracker then sees end-of-file on its pipe (the parent and the workers were the
only holders) and exits by itself.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import multiprocessing
import os
import signal
import sys
import threading

PR_SET_PDEATHSIG = 1
WATCH_INTERVAL = 0.25  # seconds between the watchdog's looks at os.getppid()


def die_with_parent() -> None:
    """Makes the calling (worker) process exit when the process that spawned it dies."""
    parent = multiprocessing.parent_process()
    parent_pid = parent.pid if parent is not None and parent.pid else os.getppid()
    if sys.platform.startswith("linux"):
        _pdeathsig(signal.SIGKILL)
    threading.Thread(target=_watch, args=(parent_pid,), name="die-with-parent",
                     daemon=True).start()
    if os.getppid() != parent_pid:  # the parent died before the above was armed
        os._exit(1)


def _pdeathsig(sig: int) -> None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
    except (OSError, AttributeError):  # no libc / no prctl: the watchdog still covers it
        pass


def _watch(parent_pid: int) -> None:
    stop = threading.Event()
    while not stop.wait(WATCH_INTERVAL):
        if os.getppid() != parent_pid:
            os._exit(1)
