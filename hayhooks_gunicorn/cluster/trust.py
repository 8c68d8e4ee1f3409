"""What a server may believe in a state directory: its own user's files and sockets, and nothing else.

A state directory may be shared (``HAYHOOKS_GUNICORN_STATE_DIR`` on a volume, often mode 1777), so whoever can write
there could plant a worker file (listed by ``/cluster``, waited for by forward-mode deploys) or a socket (which
``/traces`` would connect to). The rules:

- a directory other users may write must have the sticky bit, so they cannot rename or delete our files, and must
  belong to us or to root (the owner of a sticky directory still can); otherwise the server refuses to start;
- an explicit directory that does not exist yet is created 0700, owned by us;
- a file or socket in it counts only when it is not a link and belongs to the user running the server (every host
  sharing the directory must therefore run the server under one user id); anything else is ignored, with one log
  line per entry.

Reusable by every reader of the directory (worker states, and any other record kept there).
"""

from __future__ import annotations

import logging
import os
import stat
import threading
from pathlib import Path

from hayhooks_gunicorn.errors import KitError

log = logging.getLogger("hayhooks_gunicorn.cluster")
# Bytes of one state file: a worker's file is a few KiB; a planted one must not fill the reader's memory.
MAX_RECORD = 1024 * 1024

_reported: set[tuple[str, int, int]] = set()
_reported_lock = threading.Lock()


class StateDirError(KitError):
    """The state directory cannot be used: other users could change what the server reads, or it cannot be made."""


def check_state_dir(directory: Path, create: bool) -> None:
    """Refuse, in one sentence, a state directory other users could tamper with; *create* it 0700 if missing."""
    if create and not os.path.lexists(directory):
        try:
            directory.parent.mkdir(parents=True, exist_ok=True)
            directory.mkdir(mode=0o700)
        except FileExistsError:
            pass  # another process of this server created it first: checked below like any existing one
        except OSError as e:
            raise StateDirError(f"Cannot create the state directory '{directory}': {e}") from e
    try:
        info = os.lstat(directory)
    except FileNotFoundError:
        return  # created on first write (the default, private directory: files.ensure_private_dir)
    if stat.S_ISLNK(info.st_mode):
        info = os.stat(directory)
    if not stat.S_ISDIR(info.st_mode):
        raise StateDirError(f"The state directory '{directory}' is not a directory")
    others_write = info.st_mode & (stat.S_IWGRP | stat.S_IWOTH)
    if others_write and not info.st_mode & stat.S_ISVTX:
        msg = (
            f"Refusing the state directory '{directory}': other users may write to it (mode "
            f"{stat.S_IMODE(info.st_mode):o}) and it lacks the sticky bit; chmod 700 it, or chmod +t a shared one"
        )
        raise StateDirError(msg)
    if others_write and info.st_uid not in (os.getuid(), 0):
        msg = (
            f"Refusing the state directory '{directory}': other users may write to it and its owner (uid "
            f"{info.st_uid}) could replace any file in it; use a directory owned by uid {os.getuid()} or by root"
        )
        raise StateDirError(msg)


def owned(info: os.stat_result, path: Path, kind: str) -> bool:
    """Whether *info* (from ``lstat``/``fstat``) is ours; logs an entry that is not, once."""
    if info.st_uid == os.getuid():
        return True
    key = (str(path), info.st_ino, info.st_uid)
    with _reported_lock:
        if key in _reported:
            return False
        _reported.add(key)
    log.warning(
        "Ignoring %s '%s': it belongs to uid %d, not to this server's uid %d", kind, path, info.st_uid, os.getuid()
    )
    return False


def read_record(path: Path) -> bytes | None:
    """The content of *path* if it is a regular file of ours (not a link), else ``None``; at most ``MAX_RECORD``."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None  # gone, a link (ELOOP), or unreadable
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or not owned(info, path, "state file"):
            return None
        with os.fdopen(os.dup(fd), "rb") as f:
            return f.read(MAX_RECORD) if info.st_size <= MAX_RECORD else None
    except OSError:
        return None
    finally:
        os.close(fd)


def trusted_socket(path: Path) -> bool:
    """A unix socket of ours at *path* (not a link): the only kind ``/traces`` connects to."""
    try:
        info = os.lstat(path)
    except OSError:
        return False
    return stat.S_ISSOCK(info.st_mode) and owned(info, path, "socket")
