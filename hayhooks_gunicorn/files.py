"""Files the kit writes: steps a reader sees whole or not at all (atomic writes, directory swaps), and private
per-user directories.

Replacing a pipeline directory with two renames (old aside, new in) leaves a moment where the name is missing:
a re-scan landing there withdraws the pipeline from every worker (``reconcile.Reconciler._sync`` withdraws
names that are gone). Linux's ``renameat2(RENAME_EXCHANGE)`` swaps two directory entries in one step; where the
filesystem lacks it (NFS, some FUSE mounts) the two renames are the fallback and the gap is logged.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import uuid
from collections.abc import Callable
from pathlib import Path

from hayhooks.server.logger import log

AT_FDCWD = -100
RENAME_NOREPLACE = 1
RENAME_EXCHANGE = 2
# errnos meaning "this kernel, libc or filesystem cannot do renameat2 with these flags"
UNSUPPORTED = {errno.ENOSYS, errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP}


def _load_renameat2() -> Callable[..., int] | None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        function = libc.renameat2
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    function.restype = ctypes.c_int
    return function


_renameat2 = _load_renameat2()


def renameat2(source: Path, target: Path, flags: int) -> None:
    """``renameat2(2)``; raises ``OSError`` (``ENOSYS`` where libc has no such call)."""
    if _renameat2 is None:
        raise OSError(errno.ENOSYS, "renameat2 is not available", str(source))
    if _renameat2(AT_FDCWD, os.fsencode(source), AT_FDCWD, os.fsencode(target), flags) != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code), str(source), None, str(target))


def exchange(new: Path, current: Path) -> None:
    """Put *new* at *current* in one step; afterwards *new*'s path holds the replaced entry."""
    try:
        renameat2(new, current, RENAME_EXCHANGE)
        return
    except OSError as e:
        if e.errno not in UNSUPPORTED:
            raise
    log.warning("'{}' cannot swap directories atomically; replacing '{}' with two renames", current.parent, current)
    aside = new.with_name(f"{new.name}.old-{uuid.uuid4().hex[:8]}")
    os.rename(current, aside)
    try:
        os.rename(new, current)
    except OSError:
        os.rename(aside, current)
        raise
    os.rename(aside, new)


def rename_new(source: Path, target: Path) -> None:
    """Rename *source* to *target*, failing with ``FileExistsError`` when *target* exists (even as an empty dir)."""
    try:
        renameat2(source, target, RENAME_NOREPLACE)
        return
    except OSError as e:
        if e.errno not in UNSUPPORTED:
            raise
    # Callers hold the pipeline's lock, so check-then-rename only races writers that bypass the kit.
    if os.path.lexists(target):
        raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), str(target))
    os.rename(source, target)


def write_file(path: Path, data: bytes) -> None:
    """Write and flush *data* so a later rename publishes complete content."""
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


TEMP_SUFFIX = ".tmp"


def write_atomically(path: Path, data: str | bytes) -> None:
    """Replace *path* with *data* in one step: a hidden temp file beside it, then ``os.replace``.

    Readers (state files, ready markers) see the old content or the new, never a partial file; only this user may
    read it. No fsync: these
    files describe running processes and need not survive a power loss.
    """
    temp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}{TEMP_SUFFIX}")
    try:
        # 0600: a state file may carry a load error's text, and its directory may be shared (cluster.trust).
        with open(os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600), "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
        os.replace(temp, path)
    except OSError:
        temp.unlink(missing_ok=True)
        raise


def remove_unfinished_writes(path: Path) -> None:
    """Remove the temp files ``write_atomically`` left beside *path*: a process that ends while a daemon thread
    writes (a worker's state recorder at interpreter exit) never gets to its ``os.replace`` or its cleanup."""
    for temp in path.parent.glob(f".{path.name}.*{TEMP_SUFFIX}"):
        temp.unlink(missing_ok=True)


def ensure_private_dir(path: Path, parents: int = 0) -> None:
    """Create *path* (and its *parents* nearest parents) with mode 0700, refusing one another user planted.

    These directories may live in a shared temp dir; ``mkdir(parents=True)`` would create parents with the
    umask's mode instead.
    """
    for level in [*reversed(path.parents[:parents]), path]:
        level.mkdir(mode=0o700, exist_ok=True)
        info = level.lstat()
        if level.is_symlink() or info.st_uid != os.getuid() or info.st_mode & 0o077:
            msg = f"Refusing directory '{level}': it must be a directory owned by uid {os.getuid()} with mode 0700"
            raise PermissionError(msg)


def try_flock(fd: int) -> bool:
    """Take an exclusive ``flock`` on *fd* if it is free now; poll it with ``polling.poll_until`` to wait."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True
