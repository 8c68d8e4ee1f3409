"""The master's ``PROMETHEUS_MULTIPROC_DIR``: private to this master, inherited by its workers, kept bounded.

prometheus_client picks its value class once, when ``prometheus_client.values`` is imported
(``values.py::get_value_class``), so the variable is set while gunicorn reads its configuration, before any
process imports prometheus_client. Each process writes ``<type>_<pid>.db`` files; upstream never removes the
counter and histogram files of a dead pid (``multiprocess.py::mark_process_dead`` only drops live gauges), so a
server recycling workers with ``max_requests`` gains a set of files per recycle and every scrape reads them all
(prometheus/client_python#275, #568). Here the master folds a dead worker's files into one ``<type>_archive.db`` per
type, under a lock that scrapes share, so a scrape sees the counts either in the dead worker's file or in the
archive, never in both or in neither.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import os
import shutil
import struct
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from hayhooks_gunicorn.files import try_flock
from hayhooks_gunicorn.polling import poll_until

ENV = "PROMETHEUS_MULTIPROC_DIR"
PREFIX = "hayhooks-gunicorn-metrics-"
# Held shared by every scrape, exclusively while the master folds dead workers' files into the archive.
COMPACTION_LOCK = ".compaction.lock"
# Held by the master (and inherited by its workers) for the directory's lifetime: a free lock = an orphan.
OWNER_LOCK = ".owner.lock"
ARCHIVE_PID = "archive"
# An orphan younger than this may be a directory whose master has not taken its owner lock yet.
ORPHAN_MIN_AGE = 60.0
# How long the master waits for running scrapes before leaving a dead worker's files for the next exit.
LOCK_WAIT = 0.5

_Combine = Callable[[float, float, float, float], tuple[float, float]]


def _add(value: float, ts: float, old: float, old_ts: float) -> tuple[float, float]:
    return old + value, max(ts, old_ts)


def _max(value: float, ts: float, old: float, old_ts: float) -> tuple[float, float]:
    return (value, ts) if value > old else (old, old_ts)


def _min(value: float, ts: float, old: float, old_ts: float) -> tuple[float, float]:
    return (value, ts) if value < old else (old, old_ts)


def _newest(value: float, ts: float, old: float, old_ts: float) -> tuple[float, float]:
    return (value, ts) if ts > old_ts else (old, old_ts)


# How a dead process's value joins the archive, by file prefix; these mirror how
# ``MultiProcessCollector._accumulate_metrics`` merges files at scrape time. Live gauges are dropped by
# ``mark_process_dead``; ``gauge_all`` keeps one sample per pid by design and is left as it is.
COMBINE: dict[str, _Combine] = {
    "counter": _add,
    "histogram": _add,  # raw bucket counts and sums; buckets are made cumulative at scrape time
    "summary": _add,
    "gauge_sum": _add,
    "gauge_max": _max,
    "gauge_min": _min,
    "gauge_mostrecent": _newest,
}

_owned: Path | None = None
_owner_lock: int | None = None
_owner_pid: int | None = None
_pending: set[int] = set()


def prepare(parent: Path | None = None) -> Path:
    """Create this master's empty private directory and export it; the same directory on a configuration reload.

    A new master (a fresh start or a ``USR2`` re-exec) always gets a new directory, whatever it inherited, so two
    masters never share files. Orphans of masters that died without ``on_exit`` are removed on the way. A process
    that ends without ``on_exit`` (``gunicorn --check-config``, a configuration error after this ran) removes its
    directory at exit; the workers it forks inherit that handler and leave the directory alone.
    """
    global _owned, _owner_lock, _owner_pid
    if _owned is not None and _owned.is_dir():
        os.environ[ENV] = str(_owned)
        return _owned
    base = Path(parent) if parent else Path(tempfile.gettempdir())
    base.mkdir(parents=True, exist_ok=True)
    remove_orphans(base)
    path = Path(tempfile.mkdtemp(prefix=PREFIX, dir=base))
    fd = os.open(path / OWNER_LOCK, os.O_CREAT | os.O_RDWR, 0o600)
    fcntl.flock(fd, fcntl.LOCK_SH)
    _owned, _owner_lock, _owner_pid = path, fd, os.getpid()
    os.environ[ENV] = str(path)
    atexit.register(_remove_in_owner)
    return path


def adopt() -> None:
    """In the master's ``on_starting``: this process owns the directory now (``--daemon`` forks, and its first
    process ends with ``os._exit``, after the configuration was read)."""
    global _owner_pid
    if _owned is not None:
        _owner_pid = os.getpid()


def _remove_in_owner() -> None:
    if os.getpid() == _owner_pid:
        remove()


def remove_orphans(base: Path) -> list[Path]:
    """Remove our directories that no live process holds (their master was killed); returns what was removed."""
    removed: list[Path] = []
    for path in base.glob(f"{PREFIX}*"):
        try:
            if time.time() - path.stat().st_ctime < ORPHAN_MIN_AGE or not _unheld(path / OWNER_LOCK):
                continue
        except OSError:
            continue
        shutil.rmtree(path, ignore_errors=True)
        removed.append(path)
    return removed


def _unheld(lock_file: Path) -> bool:
    try:
        fd = os.open(lock_file, os.O_RDWR)
    except FileNotFoundError:
        return True
    except OSError:
        return False  # not ours to judge (another user's directory)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


def remove() -> None:
    """Delete this master's directory (gunicorn ``on_exit``); workers and other masters never call this."""
    global _owned, _owner_lock
    if _owned is None:
        return
    shutil.rmtree(_owned, ignore_errors=True)
    if _owner_lock is not None:
        os.close(_owner_lock)
    if os.environ.get(ENV) == str(_owned):
        del os.environ[ENV]
    _owned, _owner_lock = None, None


@contextlib.contextmanager
def scrape_lock(path: Path) -> Iterator[None]:
    """Shared with other scrapes, exclusive of compaction: what one scrape reads is consistent."""
    fd = os.open(path / COMPACTION_LOCK, os.O_CREAT | os.O_RDWR, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)
        yield
    finally:
        os.close(fd)


def retire(pid: int, path: Path | None = None) -> bool:
    """Forget a dead worker's live gauges and fold its other files into the archive (gunicorn ``child_exit``).

    Never blocks the master for long: when scrapes hold the lock past ``LOCK_WAIT`` the pid is remembered and
    folded at the next exit. Returns whether every remembered pid was folded.
    """
    path = path or _owned
    if path is None or not path.is_dir():
        return True
    _pending.add(pid)
    fd = os.open(path / COMPACTION_LOCK, os.O_CREAT | os.O_RDWR, 0o600)
    try:
        if not _lock_exclusive(fd, LOCK_WAIT):
            return False
        from prometheus_client.multiprocess import mark_process_dead

        for dead in sorted(_pending):
            _pending.discard(dead)
            mark_process_dead(dead, str(path))
            fold(dead, path)
        return True
    finally:
        os.close(fd)


def _lock_exclusive(fd: int, wait: float) -> bool:
    try:
        return poll_until(lambda: try_flock(fd), wait, interval=0.01)
    except TimeoutError:
        return False


def fold(pid: int, path: Path) -> None:
    """Add *pid*'s values into the archive files, then delete its files; the caller holds the exclusive lock."""
    from prometheus_client.mmap_dict import MmapedDict

    suffix = f"_{pid}.db"
    for dead in path.glob(f"*{suffix}"):
        prefix = dead.name[: -len(suffix)]
        combine = COMBINE.get(prefix)
        if combine is None:
            continue
        try:
            values = list(MmapedDict.read_all_values_from_file(str(dead)))
        except (OSError, RuntimeError, struct.error):
            # Killed between creating and sizing its file (``MmapedDict.__init__``): nothing was recorded, and the
            # empty file would fail every scrape (``MultiProcessCollector._read_metrics``).
            values = []
        if values:
            archive = MmapedDict(str(path / f"{prefix}_{ARCHIVE_PID}.db"))
            try:
                current = {key: (value, ts) for key, value, ts in archive.read_all_values()}
                for key, value, ts, _ in values:
                    if key in current:
                        value, ts = combine(value, ts, *current[key])
                    archive.write_value(key, value, ts)
            finally:
                archive.close()
        dead.unlink()
