"""Where the configured pipelines path leads right now, and noticing when that changes.

Operators publish pipelines by swapping a link (git-sync's worktree link, a ``current -> rel-b`` link made with
``ln -sfn``) or by replacing the directory with a rename. inotify watches inodes, not names (inotify(7)): a watch
on the directory a link led to at boot never hears that the link, or a link among its parents, now points
elsewhere, nor that the name now holds a new directory. So the path is resolved again, cheaply (a few ``lstat``),
and compared with what it led to before. Used by the watcher (``reload.watcher``) to know what to watch, and by
the reconciler to scan the directory it should serve.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Resolution:
    """What *configured* led to when it was resolved: a real directory, or the reason it did not resolve."""

    configured: Path
    path: Path | None  # the real directory, links resolved; None while the path does not resolve
    identity: tuple[int, int] | None = None  # (st_dev, st_ino) of that directory
    reason: str | None = None  # why it does not resolve

    @property
    def key(self) -> tuple[Path | None, tuple[int, int] | None]:
        """Equal keys, same directory: a link swap changes the path, a replaced directory changes the inode."""
        return self.path, self.identity


def links_on(configured: Path) -> list[tuple[Path, str]]:
    """Every symbolic link among the components of *configured* (itself included), with the text it points to."""
    links: list[tuple[Path, str]] = []
    absolute = Path(os.path.abspath(configured))
    for prefix in [*reversed(absolute.parents[:-1]), absolute]:
        try:
            links.append((prefix, os.readlink(prefix)))
        except OSError:  # not a link, or not there
            continue
    return links


def resolve_dir(configured: Path) -> Resolution:
    """Resolve every link on *configured* now; a dangling link, a missing directory or a file is unresolved."""
    try:
        real = os.path.realpath(configured, strict=True)
        info = os.stat(real)
    except OSError as e:
        return Resolution(configured, None, reason=_describe(configured, e))
    if not stat.S_ISDIR(info.st_mode):
        return Resolution(configured, None, reason=f"'{real}' is not a directory")
    return Resolution(configured, Path(real), (info.st_dev, info.st_ino))


def _describe(configured: Path, error: OSError) -> str:
    reason = f"{error.strerror or error}: '{error.filename or configured}'"
    links = links_on(configured)
    if links:
        link, target = links[-1]
        reason += f" (link '{link}' -> '{target}')"
    return reason


class FollowedDir:
    """The directory a configured path leads to, kept open so that its inode cannot be reused.

    A directory deleted and created again between two checks could get the same inode number, and look
    unchanged; an open descriptor keeps the old inode allocated until :meth:`refresh` lets it go.
    """

    def __init__(self, configured: Path) -> None:
        self.configured = configured
        self.current = Resolution(configured, None, reason="not resolved yet")
        self._fd: int | None = None
        self.refresh()

    def refresh(self) -> bool:
        """Resolve again; True when the path now leads elsewhere (another directory, nowhere, or somewhere again)."""
        now = resolve_dir(self.configured)
        if now.key == self.current.key:
            if now.path is None:
                self.current = now  # still nowhere: keep the latest reason
            return False
        fd = None
        if now.path is not None:
            try:
                fd = os.open(now.path, os.O_RDONLY | os.O_DIRECTORY)
                info = os.fstat(fd)
            except OSError as e:  # gone again since it was resolved
                if fd is not None:
                    os.close(fd)
                fd, now = None, Resolution(self.configured, None, reason=_describe(self.configured, e))
            else:  # the identity of what is held, so the two always agree
                now = Resolution(self.configured, now.path, (info.st_dev, info.st_ino))
            if now.key == self.current.key:
                if fd is not None:
                    os.close(fd)
                return False
        self.close()
        self._fd, self.current = fd, now
        return True

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
