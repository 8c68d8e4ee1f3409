"""The kit's unix sockets are private: mode 0600 from the moment they carry their name, and never someone else's.

A socket bound in place and ``chmod``ed afterwards (``socketserver``, uvicorn's ``uds``, which even sets 0666 in
``uvicorn/server.py``) is reachable with the umask's mode until the ``chmod``. Here the socket's mode is set before
``bind``, so its name appears with mode 0600. A path that already exists must be a socket of this user (one a
crashed predecessor left); anything else is an error, never silently replaced or used.
"""

from __future__ import annotations

import os
import socket
import stat
from pathlib import Path

from hayhooks_gunicorn.errors import KitError


class ForeignSocketPath(KitError):
    """A socket path the kit would use is taken by an entry that is not this user's socket."""


def check_ours(path: Path) -> None:
    """Raise :class:`ForeignSocketPath` when *path* exists and is not a socket (or link) of this user."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(info.st_mode) or info.st_uid != os.getuid():
        what = "socket" if stat.S_ISSOCK(info.st_mode) else "file that is not a socket"
        msg = (
            f"'{path}' is a {what} of uid {info.st_uid}, not a socket of this server's uid {os.getuid()}; remove it "
            "or choose another path"
        )
        raise ForeignSocketPath(msg)


def is_ours(path: Path) -> bool:
    try:
        check_ours(path)
    except ForeignSocketPath:
        return False
    return os.path.lexists(path)


def bind_private(path: Path) -> socket.socket:
    """A unix stream socket bound at *path* with mode 0600 (not yet listening), replacing a socket of ours a crashed
    predecessor left; raises ``OSError`` or :class:`ForeignSocketPath`."""
    check_ours(path)
    path.unlink(missing_ok=True)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        # Linux creates the socket's file with the socket inode's mode less the umask (net/unix/af_unix.c,
        # unix_bind_bsd), so the name is 0600 from the start; the chmod after only repeats it.
        os.fchmod(sock.fileno(), 0o600)
        sock.bind(str(path))  # EADDRINUSE if someone put a file there since the unlink
        os.chmod(path, 0o600)
    except BaseException:
        sock.close()
        raise
    return sock
