"""A watchfiles thread that answers every change in the pipelines directory with a callback.

In a worker the callback is a reconcile pass (``reload.runtime``); the watcher knows nothing of what it drives, so
any process that must follow the directory uses this one mechanism. It follows the configured path, not the
directory it led to at start (``reload.follow``): link swaps and replaced directories are changes too.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

import watchfiles
from hayhooks.server.logger import log

from hayhooks_gunicorn.reload.follow import FollowedDir
from hayhooks_gunicorn.settings import WatchMode

# Filesystems where inotify sees changes made by other hosts only partly or not at all.
NETWORK_FILESYSTEMS = {"nfs", "nfs4", "cifs", "smb3", "smbfs", "9p", "ceph", "glusterfs", "lustre", "afs", "gpfs"}
# A full re-scan at least this often, even without events: covers inotify queue overflows and missed events.
RESCAN_SECONDS = 10


def filesystem_type(path: Path, mounts_file: Path = Path("/proc/self/mounts")) -> str | None:
    """Filesystem type of the mount holding *path*, from the longest matching mount point."""
    try:
        lines = mounts_file.read_text().splitlines()
    except OSError:
        return None
    target = str(path.resolve())
    best, best_type = "", None
    for line in lines:
        parts = line.split()
        if len(parts) < 3:
            continue
        # Mount points escape spaces and tabs as octal (\040).
        mount = parts[1].encode().decode("unicode_escape")
        inside = target == mount or target.startswith(mount.rstrip("/") + "/")
        if inside and len(mount) >= len(best):
            best, best_type = mount, parts[2]
    return best_type


def use_polling(mode: WatchMode, path: Path) -> bool:
    if mode is WatchMode.POLL:
        return True
    if mode is WatchMode.INOTIFY:
        return False
    fstype = filesystem_type(path) or ""
    return fstype in NETWORK_FILESYSTEMS or fstype.startswith("fuse")


class DirectoryWatcher(threading.Thread):
    """Runs until :meth:`stop`, following *path* wherever it leads (``reload.follow``): after a link on it is
    swapped, or the directory is replaced, deleted or created again, the new directory is watched and
    *on_change* runs. A failing watch (share gone) is retried, never fatal."""

    def __init__(
        self,
        path: Path,
        on_change: Callable[[], None],
        mode: WatchMode,
        poll_interval_ms: int = 500,
        debounce_ms: int = 100,
        *,
        follow_interval_ms: int = 250,
    ) -> None:
        super().__init__(name="pipelines-watcher", daemon=True)
        self.path = path
        # Called after every batch of changes, every quiet RESCAN_SECONDS, whenever the path leads elsewhere
        # (nowhere included), and after a lost watch is regained
        self.on_change = on_change
        self.polling = use_polling(mode, path)
        self.poll_interval_ms = poll_interval_ms
        self.debounce_ms = debounce_ms
        # How often inotify mode resolves the path again (polling mode does it on every poll)
        self.follow_interval_ms = follow_interval_ms
        self.stop_event = threading.Event()
        self.followed: FollowedDir | None = None

    def stop(self) -> None:
        self.stop_event.set()

    def run(self) -> None:
        self.followed = followed = FollowedDir(self.path)
        how = f"polling every {self.poll_interval_ms} ms" if self.polling else "inotify"
        target = followed.current.path
        leads = f" -> '{target}'" if target is not None and target != self.path else ""
        log.info("Worker {} watching '{}'{} ({})", os.getpid(), self.path, leads, how)
        moved = False
        try:
            while not self.stop_event.is_set():
                before, target = target, followed.current.path
                if moved and not self.polling and None not in (before, target) and before != target:
                    # A link swapped from one directory to another publishes a complete release: scanned at once.
                    # A directory that appears (again) may still be filling up: it waits for the first quiet
                    # moment of its new watch (polling scans right after its first look).
                    self._changed()
                try:
                    if target is None:
                        self._wait_for_path(followed, moved)
                    elif self.polling:
                        self._poll(target, followed, moved)
                    else:
                        self._watch(target, followed, moved)
                    moved = True
                except Exception as e:
                    if followed.refresh():  # the watched directory went away with the path: not a failure
                        moved = True
                        continue
                    log.warning("Worker {} lost its watch on '{}' ({}); retrying", os.getpid(), target, e)
                    self.stop_event.wait(1.0)
                    self._changed()
                    moved = False
        finally:
            followed.close()

    def _changed(self) -> None:
        """Run *on_change*; a failure is logged, never the end of this thread: once it ended, nothing would follow
        the directory again (a callback raising in the retry of the ``except`` below used to end it)."""
        try:
            self.on_change()
        except Exception as e:
            log.error("Worker {}: re-scanning '{}' failed ({}); the watch goes on", os.getpid(), self.path, e)

    def _wait_for_path(self, followed: FollowedDir, moved: bool) -> None:
        """Nothing to watch while the path leads nowhere: resolve it again until it does."""
        if moved:
            self._changed()
        interval = (self.poll_interval_ms if self.polling else self.follow_interval_ms) / 1000
        while not self.stop_event.wait(interval):
            if followed.refresh():
                return

    def _watch(self, path: Path, followed: FollowedDir, moved: bool) -> None:
        """Until the path leads elsewhere. Events only say "something changed": every batch re-scans, and so do
        the first wake-up after a move (once the new directory is watched), and every quiet RESCAN_SECONDS."""
        last_scan = time.monotonic()
        for changes in watchfiles.watch(
            path,
            stop_event=self.stop_event,
            step=self.debounce_ms,
            debounce=max(1600, self.debounce_ms * 10),
            rust_timeout=self.follow_interval_ms,
            yield_on_timeout=True,
            raise_interrupt=False,
            ignore_permission_denied=True,
        ):
            if followed.refresh():
                return
            if moved or changes or time.monotonic() - last_scan >= RESCAN_SECONDS:
                moved, last_scan = False, time.monotonic()
                self._changed()

    def _poll(self, path: Path, followed: FollowedDir, moved: bool) -> None:
        """Compare nanosecond stat signatures every interval; re-scan on a change, once it has settled, and
        right after a move (the signature to compare with is taken first). Returns when the path leads elsewhere.

        watchfiles' polling backend compares modification times in whole seconds, so a change made in the same
        second as the one before went unseen until the next change (measured: a third of quick successive edits).
        """
        interval = self.poll_interval_ms / 1000
        last, last_scan = stat_signature(path), time.monotonic()
        if moved:
            self._changed()
        while not self.stop_event.wait(interval):
            if followed.refresh():
                return
            current = stat_signature(path)
            if current == last and time.monotonic() - last_scan < RESCAN_SECONDS:
                continue
            while current != last and not self.stop_event.wait(self.debounce_ms / 1000):
                last, current = current, stat_signature(path)  # settle: a multi-file copy loads once
            if followed.refresh():  # a directory being deleted settles empty: that is a move, not an edit
                return
            last, last_scan = current, time.monotonic()
            self._changed()


def stat_signature(path: Path) -> frozenset[tuple[str, int, int, int]]:
    """Every entry below *path* (links followed, as a ConfigMap's ``..data`` needs) by inode, size and mtime."""
    entries = []
    for root, dirs, files in os.walk(path, followlinks=True):
        for name in (*dirs, *files):
            full = os.path.join(root, name)
            try:
                st = os.stat(full)
            except OSError:  # removed between listing and stat: the next poll sees the rest
                continue
            entries.append((full, st.st_ino, st.st_size, st.st_mtime_ns))
    return frozenset(entries)
