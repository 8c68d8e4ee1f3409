"""A worker records its state in its state file: at boot, after every reload result, and on a heartbeat.

What is recorded comes from a *state source*: the reload runtime's reconciler for a hot-reloading worker, or
the fixed set a durable worker loaded once (``worker.durable``), which never changes while the worker lives.
"""

from __future__ import annotations

import atexit
import os
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from hayhooks.server.logger import log

from hayhooks_gunicorn.cluster.identity import worker_slot
from hayhooks_gunicorn.cluster.state_files import (
    LoadFailure,
    WorkerState,
    ensure_state_dir,
    remove_state,
    state_file,
)
from hayhooks_gunicorn.files import write_atomically
from hayhooks_gunicorn.traces.peer import listening_socket

if TYPE_CHECKING:
    from hayhooks_gunicorn.reload import Change, WorkerRuntime

HEARTBEAT_SECONDS = 2.0
# How often the heartbeat thread looks for changes it has not written yet (booted, a reload between passes).
CHECK_SECONDS = 0.25

# Builds this worker's state from its host name and pid: whatever the worker serves right now.
StateSource = Callable[[str, int], WorkerState]


class StateRecorder:
    """Registered as a boot callback (``AppContext.on_boot``) so it starts with the worker's runtime."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.host = socket.gethostname()
        self.pid = 0
        self.source: StateSource | None = None
        self._written: WorkerState | None = None
        self._written_at = 0.0
        self._lock = threading.Lock()
        self._stop = threading.Event()

    def __call__(self, runtime: WorkerRuntime) -> None:
        """Boot callback of the reload runtime: record now (booting), then after every change and on a heartbeat."""
        runtime.reconciler.listeners.append(self.on_change)
        runtime.reconciler.dir_listeners.append(self.on_change)
        self.start(lambda host, pid: reconciler_state(runtime, host, pid))

    def start(self, source: StateSource) -> None:
        """Record what *source* says now, then on every heartbeat (and on ``on_change``)."""
        self.source = source
        self.pid = os.getpid()  # the worker's, also when the app was built before fork (preload_app)
        ensure_state_dir(self.directory)
        self.record_state(force=True)
        atexit.register(self.stop)
        threading.Thread(target=self._beat, name="cluster-state", daemon=True).start()

    def snapshot(self) -> WorkerState:
        assert self.source is not None
        # Every worker, hot-reloading or durable, answers trace reads from its peers on this socket, and has a place.
        placed = {"slot": worker_slot(), "devices": os.environ.get("CUDA_VISIBLE_DEVICES")}
        return self.source(self.host, self.pid).model_copy(update={"traces_socket": listening_socket(), **placed})

    def record_state(self, force: bool = False) -> None:
        """Write the state file when something changed, or when the heartbeat is due (or *force*)."""
        with self._lock:
            if self._stop.is_set():
                return
            state = self.snapshot()
            key = state.model_copy(update={"heartbeat": 0.0})  # everything but the heartbeat
            if not force and key == self._written and time.monotonic() - self._written_at < HEARTBEAT_SECONDS:
                return
            path = state_file(self.directory, self.host, self.pid)
            try:
                write_atomically(path, state.model_dump_json())
            except FileNotFoundError:  # the last master of another server removed the empty directory
                ensure_state_dir(self.directory)
                write_atomically(path, state.model_dump_json())
            self._written, self._written_at = key, time.monotonic()

    def on_change(self, change: Change | Path) -> None:
        """A reload result, or the directory served from changed."""
        self.record_state(force=True)

    def stop(self) -> None:
        with self._lock:
            self._stop.set()
            remove_state(self.directory, self.host, self.pid)

    def _beat(self) -> None:
        while not self._stop.wait(CHECK_SECONDS):
            try:
                self.record_state()
            except Exception as e:  # a full disk or a vanished share must not end the heartbeat
                log.warning("Worker {} cannot write its state to '{}': {}", self.pid, self.directory, e)
                self._stop.wait(HEARTBEAT_SECONDS)


def reconciler_state(runtime: WorkerRuntime, host: str, pid: int) -> WorkerState:
    """The state source of a hot-reloading worker: what its reconciler serves and failed to load."""
    now = runtime.reconciler.snapshot()
    return WorkerState(
        host=host,
        pid=pid,
        master_pid=os.getppid(),
        started_at=runtime.started_at,
        heartbeat=time.time(),
        booted=runtime.booted_at is not None,
        pipelines={name: s.revision for name, s in sorted(now.served.items())},
        failures={name: LoadFailure(revision=f.revision, error=f.error) for name, f in sorted(now.failed.items())},
        serves_from=str(now.serves_from or ""),
        conflicts=dict(sorted(now.conflicts.items())),
    )
