"""Start a child process from a thread of a process that forks from another thread: the master.

gunicorn forks workers from the master's main thread whenever it needs one (``Arbiter.spawn_worker``), and the
master also starts children from its own threads (the pre-flight of a roll: ``deploys.preflight``).
``subprocess.Popen`` opens pipes and, until it returns, holds both ends of each in the parent; a worker forked in
that window keeps the write ends (a fork without exec keeps every descriptor), so the reader sees no end of file,
and waits, until that worker exits. Every ``os.fork`` therefore waits for a child being started to be started, and
a child is never started while a fork is under way.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_lock = threading.Lock()


def _renew_lock_in_child() -> None:
    global _lock
    _lock = threading.Lock()  # held by the parent's fork; the child starts with a free one


os.register_at_fork(
    before=lambda: _lock.acquire(),
    after_in_parent=lambda: _lock.release(),
    after_in_child=_renew_lock_in_child,
)


@contextmanager
def no_fork_while_starting() -> Iterator[None]:
    """Hold off ``os.fork`` in this process while the caller starts a child (only while it starts)."""
    with _lock:
        yield


@contextmanager
def no_fork_meanwhile() -> Iterator[None]:
    """Hold off ``os.fork`` in this process for the duration of the block: the master runs pipeline code
    (imports, ``setup()``) from a thread (``master.shared_models``). Starting a child inside the block would wait
    for the block's end: the lock is not re-entrant."""
    with _lock:
        yield
