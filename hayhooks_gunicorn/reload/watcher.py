"""A watchfiles thread that answers every change in the pipelines directory with a callback.

In a worker the callback is a reconcile pass (``reload.runtime``); the watcher knows nothing of what it drives, so
any process that must follow the directory uses this one mechanism.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

import watchfiles
from hayhooks.server.logger import log

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
    """Runs until :meth:`stop`; a failing watch (directory removed, share gone) is retried, never fatal."""

    def __init__(
        self,
        path: Path,
        on_change: Callable[[], None],
        mode: WatchMode,
        poll_interval_ms: int = 500,
        debounce_ms: int = 100,
    ) -> None:
        super().__init__(name="pipelines-watcher", daemon=True)
        self.path = path
        # Called after every batch of changes, every quiet RESCAN_SECONDS, and after a lost watch is regained
        self.on_change = on_change
        self.polling = use_polling(mode, path)
        self.poll_interval_ms = poll_interval_ms
        self.debounce_ms = debounce_ms
        self.stop_event = threading.Event()

    def stop(self) -> None:
        self.stop_event.set()

    def run(self) -> None:
        path = self.path
        how = f"polling every {self.poll_interval_ms} ms" if self.polling else "inotify"
        log.info("Worker {} watching '{}' ({})", os.getpid(), path, how)
        while not self.stop_event.is_set():
            try:
                self._poll(path) if self.polling else self._watch(path)
            except Exception as e:
                log.warning("Worker {} lost its watch on '{}' ({}); retrying", os.getpid(), path, e)
                self.stop_event.wait(1.0)
                self.on_change()

    def _watch(self, path: Path) -> None:
        # Events only say "something changed": every batch, and every quiet RESCAN_SECONDS, re-scans.
        for _changes in watchfiles.watch(
            path,
            stop_event=self.stop_event,
            step=self.debounce_ms,
            debounce=max(1600, self.debounce_ms * 10),
            rust_timeout=RESCAN_SECONDS * 1000,
            yield_on_timeout=True,
            raise_interrupt=False,
            ignore_permission_denied=True,
        ):
            self.on_change()

    def _poll(self, path: Path) -> None:
        """Compare nanosecond stat signatures every interval; re-scan on a change, once it has settled.

        watchfiles' polling backend compares modification times in whole seconds, so a change made in the same
        second as the one before went unseen until the next change (measured: a third of quick successive edits).
        """
        interval = self.poll_interval_ms / 1000
        last, last_scan = stat_signature(path), time.monotonic()
        while not self.stop_event.wait(interval):
            current = stat_signature(path)
            if current == last and time.monotonic() - last_scan < RESCAN_SECONDS:
                continue
            while current != last and not self.stop_event.wait(self.debounce_ms / 1000):
                last, current = current, stat_signature(path)  # settle: a multi-file copy loads once
            last, last_scan = current, time.monotonic()
            self.on_change()


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
