"""Files the ledger writes outside its databases, and what a storage error means.

``write_private_file`` is the one way an output file (a register extract, a digest, a report)
is written: a new temporary file in the target directory (``O_CREAT | O_EXCL | O_NOFOLLOW``,
mode 0600), fsynced and renamed into place. An existing file is replaced only with ``force``,
by a new inode (whoever holds the old one open keeps the old bytes); a symbolic link at the
target is refused even with ``force``; nothing is left behind on failure.

``storage_error`` turns the SQLite and DuckDB errors that mean "this file is damaged" or "the
disk is full" into one clear line (exit 2) naming the file and what to do."""

from __future__ import annotations

import errno
import os
import re
import stat
from pathlib import Path

from ledger.domain.errors import (
    CorruptFile,
    LedgerError,
    StorageError,
    TargetExists,
    UsageError,
)

_TEMP_ATTEMPTS = 100


def write_private_file(path: str | Path, data: str | bytes, *, force: bool = False,
                       parameter: str = "out", option: str | None = None) -> Path:
    """Writes ``data`` to ``path`` atomically with mode 0600; returns the path. Refusals are
    UsageErrors about ``parameter`` (the domain name of the input that named the file).
    ``option`` is its older spelling as a CLI flag ("--out"), still accepted."""
    target = Path(path)
    if option is not None:
        parameter = option
    payload = data.encode("utf-8") if isinstance(data, str) else data
    check_target(target, force, parameter)
    directory = target.parent
    fd, temp = _create_temp(directory, target.name)
    try:
        try:
            os.fchmod(fd, 0o600)  # exactly 0600, whatever the umask
            write_all(fd, payload)
            os.fsync(fd)
        finally:
            os.close(fd)
        if force:
            check_target(target, force, parameter)  # a symlink planted meanwhile
            os.rename(temp, target)  # replaces a link itself, never writes through one
        else:
            try:
                os.link(temp, target)  # atomic "create if absent": EEXIST if one appeared
            except FileExistsError:
                raise TargetExists(target, _domain_name(parameter)) from None
            except OSError as e:
                if e.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.EMLINK, errno.ENOSYS):
                    raise
                check_target(target, force, parameter)  # no hard links here: check, then rename
                os.rename(temp, target)
            else:
                os.unlink(temp)
        fsync_directory(directory)
    except BaseException as e:
        try:
            os.unlink(temp)
        except FileNotFoundError:
            pass
        full = storage_error(target, e, what="file", remedy="", doing="writing") \
            if isinstance(e, OSError) else None
        if full is not None:
            raise full from None
        raise
    return target


def write_all(fd: int, data: bytes) -> None:
    """Writes every byte (os.write may write fewer than asked)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _domain_name(parameter: str) -> str:
    # Callers not yet moved to domain names pass the CLI flag ("--out"): the error names "out".
    return parameter.removeprefix("--")


def check_target(target: Path, force: bool, parameter: str) -> None:
    """Refuses a symbolic link (even with ``force``), anything but a regular file, an existing
    file without ``force``, and a directory that does not exist: UsageErrors about
    ``parameter``."""
    parameter = _domain_name(parameter)
    if not target.parent.is_dir():
        raise UsageError(f"the directory {target.parent} does not exist", parameter=parameter)
    try:
        st = os.lstat(target)
    except FileNotFoundError:
        return
    if stat.S_ISLNK(st.st_mode):
        raise UsageError(f"{target} is a symbolic link; refusing to write through it "
                         "(remove it or choose another file)", parameter=parameter)
    if not stat.S_ISREG(st.st_mode):
        raise UsageError(f"{target} exists and is not a regular file", parameter=parameter)
    if not force:
        raise TargetExists(target, parameter)


def _create_temp(directory: Path, name: str) -> tuple[int, Path]:
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    for _ in range(_TEMP_ATTEMPTS):
        temp = directory / f".{name[:200]}.{os.urandom(6).hex()}.tmp"
        try:
            return os.open(temp, flags, 0o600), temp
        except FileExistsError:
            continue
    raise UsageError(f"cannot create a temporary file in {directory}")


def fsync_directory(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems cannot fsync a directory; the rename itself has happened
    finally:
        os.close(fd)


def fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)



# --- storage errors -------------------------------------------------------------------------

_DAMAGED = ("not a database", "malformed", "corrupt", "could not read enough bytes",
            "not a valid duckdb", "checksum", "wal does not match", "file is truncated")
_NO_SPACE = ("disk i/o error", "database or disk is full", "disk is full", "file too large",
             "no space left", "quota exceeded")


def _reason(e: BaseException) -> str:
    text = str(e)
    # SQLite reports a failed automatic rollback over the error that caused it
    if "cannot rollback" in text and e.__context__ is not None:
        text = str(e.__context__)
    return re.sub(r"\s+", " ", text).strip()[:200]


def storage_error(path: Path, e: BaseException, *, what: str, remedy: str,
                  doing: str = "writing") -> LedgerError | None:
    """A CorruptFile or StorageError for a database error that means a damaged file or a full
    disk; None for any other error (the caller keeps its own)."""
    reason = _reason(e)
    low = reason.lower()
    if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT):
        return StorageError(f"{doing} {path} failed ({e.strerror}): the disk may be full; "
                            "free space and retry")
    if any(k in low for k in _DAMAGED):
        return CorruptFile(f"{path} is not a valid {what} ({reason}): {remedy}")
    if any(k in low for k in _NO_SPACE):
        return StorageError(f"{doing} {path} failed ({reason}): the disk may be full; free space "
                            "and retry")
    return None


# --- output directories (a Parquet export) -------------------------------------------------

_RENAME_EXCHANGE = 2  # linux/fs.h: swap two paths in one step


def _exchange(a: Path, b: Path) -> bool:
    """Swaps two directories in one atomic step (Linux renameat2); False where unsupported."""
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd = -100
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    if ctypes.get_errno() in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False
    err = ctypes.get_errno()
    raise OSError(err, os.strerror(err), str(b))


def new_private_directory(parent: Path, name: str) -> Path:
    """A new 0700 directory next to where ``name`` will be placed (same file system, so the
    final rename is atomic)."""
    for _ in range(_TEMP_ATTEMPTS):
        temp = parent / f".{name[:200]}.{os.getpid()}-{os.urandom(4).hex()}.partial"
        try:
            os.mkdir(temp, 0o700)
        except FileExistsError:
            continue
        os.chmod(temp, 0o700)
        return temp
    raise UsageError(f"cannot create a temporary directory in {parent}")


def remove_tree(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)


def place_directory(complete: Path, target: Path) -> None:
    """Moves the complete directory ``complete`` to ``target``: a rename when ``target`` does
    not exist; else an atomic exchange with the old one (readers see the old or the new
    directory, never a mix), which is then removed. Where the kernel cannot exchange, the old
    directory is moved aside first: a crash in between leaves no directory, never half a one."""
    for path in complete.iterdir():
        fsync_file(path)
    fsync_directory(complete)
    if not os.path.lexists(target):
        os.rename(complete, target)
    elif _exchange(complete, target):
        remove_tree(complete)  # now holds the old directory
    else:
        aside = complete.with_name(complete.name + ".old")
        os.rename(target, aside)
        os.rename(complete, target)
        remove_tree(aside)
    fsync_directory(target.parent)


def remove_leftover_directories(parent: Path, name: str) -> None:
    """Removes the temporary directories of earlier runs that died (their process is gone)."""
    for leftover in parent.glob(f".{name[:200]}.*.partial*"):
        pid = leftover.name[len(name) + 2:].split("-", 1)[0]
        if pid.isdigit() and int(pid) != os.getpid() and process_alive(int(pid)):
            continue
        remove_tree(leftover)


def process_alive(pid: int) -> bool:
    """Whether a process ``pid`` exists (a leftover's writer may still be at work)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
