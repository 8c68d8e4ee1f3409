"""Content revisions from file metadata: a file's bytes are read only when what ``stat`` says of it changes.

A pipeline's revision is a hash over its files' relative paths and content digests. Each process keeps the digest
of every file it has hashed, keyed by ``(st_dev, st_ino, st_size, st_mtime_ns, st_ctime_ns)``, so a scan costs a
``stat`` per file, and a 1 GB model beside a wrapper is read once, not on every ``/readyz``.

Why the key cannot miss an edit:

- the kernel sets ``ctime`` on every write, rename over or ``chmod``, and no call sets it back (``os.utime`` moves
  ``mtime`` only, and itself moves ``ctime``); a file replaced by a rename has another inode;
- but timestamps move in ticks (a jiffy on ext4 and tmpfs, a second on some filesystems), so a second same-size
  write in the tick of the first leaves the key as it was. A digest taken before the tick of the file's last
  change ended (less than ``RACY_NS`` after it) is therefore not trusted: the file is read again on every look
  until one read starts after that tick (git calls this "racily clean", ``Documentation/technical/racy-git.txt``);
- and as the safety net for what no key shows (a filesystem whose clock lags the host's, a tool that writes
  through a mapping), background scans read a file again once its digest is older than
  ``HAYHOOKS_GUNICORN_REHASH_INTERVAL``. Hot paths (``/readyz``, ``/cluster``, a deploy's wait) pass
  ``verify=False`` and never pay for that.

Equal bytes still give an equal digest, so a no-op write (same bytes, new ``ctime``) is read once and reloads
nothing.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass

from hayhooks_gunicorn.settings import kit_settings

# A digest is trusted once taken this long after the file's last change: longer than any timestamp tick of the
# filesystems pipelines live on (ext4/xfs/btrfs/tmpfs: a jiffy; ext3, HFS+ and some NFS servers: one second).
RACY_NS = 2_000_000_000
# Files whose digests one process keeps; the least recently looked at are dropped first.
MAX_ENTRIES = 100_000

StatKey = tuple[int, int, int, int, int]


@dataclass(frozen=True, slots=True)
class _Digest:
    key: StatKey
    digest: bytes
    hashed_at: int  # wall-clock ns when the read started, comparable with the file's ctime


class DigestCache:
    """Per-file content digests by stat key; ``reads`` counts the files actually read (what the tests observe)."""

    def __init__(self, max_entries: int = MAX_ENTRIES) -> None:
        self.max_entries = max_entries
        self.reads = 0
        self._entries: OrderedDict[str, _Digest] = OrderedDict()
        self._lock = threading.Lock()

    def digest(self, path: str, verify: bool = True) -> bytes:
        """The content digest of the file at *path* (links followed); raises ``OSError`` as ``open`` does.

        *verify* re-reads a file whose digest is older than the rehash interval (background scans); hot paths
        pass False. A file changed since its digest, or changed in the tick its digest was taken, is always read.
        """
        st = os.stat(path)
        key = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
        with self._lock:
            known = self._entries.get(path)
            if known is not None:
                self._entries.move_to_end(path)
        if known is not None and known.key == key and self._trusted(known, verify):
            return known.digest
        started = time.time_ns()
        with open(path, "rb") as f:
            digest = hashlib.file_digest(f, "sha256").digest()
        with self._lock:
            self.reads += 1
            self._entries[path] = _Digest(key, digest, started)
            self._entries.move_to_end(path)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)
        return digest

    def renew_lock(self) -> None:
        """In a forked child: the parent's lock may have been held by another thread at the fork."""
        self._lock = threading.Lock()

    @staticmethod
    def _trusted(known: _Digest, verify: bool) -> bool:
        changed = max(known.key[3], known.key[4])
        if known.hashed_at - changed < RACY_NS:
            return False  # taken in the tick of the last change: a same-size write may have followed unseen
        interval = kit_settings().rehash_interval
        if interval == 0:
            return False
        return not verify or time.time_ns() - known.hashed_at < interval * 1_000_000_000


# One cache per process: forked workers start with the master's digests, which are valid for the same files.
digests = DigestCache()
os.register_at_fork(after_in_child=lambda: digests.renew_lock())


def revision_of(files: list[tuple[str, str]], verify: bool = True) -> str:
    """Short hash over ``(relative path, full path)`` pairs' names and content digests, in the order given."""
    combined = hashlib.sha256()
    for rel, full in files:
        combined.update(os.fsencode(rel) + b"\0")
        combined.update(digests.digest(full, verify))
    return combined.hexdigest()[:12]
