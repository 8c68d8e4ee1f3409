"""Every worker's state as a small JSON file in a state directory: the cluster view is the set of live files.

A worker writes ``<state_dir>/<host>-<pid>.json`` (temp file + ``os.replace``) when it boots, after every
reconcile change and on a heartbeat. Files of dead workers go away three ways: the gunicorn master's
``child_exit`` hook deletes them (UvicornWorker never runs gunicorn's ``worker_exit``), the worker deletes its
own at exit, and readers ignore entries whose heartbeat is older than ``heartbeat_ttl`` or whose process is gone.
"""

from __future__ import annotations

import atexit
import hashlib
import json
import os
import socket
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hayhooks.server.logger import log
from hayhooks.settings import settings as hayhooks_settings

from hayhooks_gunicorn.settings import KitSettings, kit_settings

if TYPE_CHECKING:  # the gunicorn master imports this module; it must stay light
    from hayhooks_gunicorn.reconcile import Change
    from hayhooks_gunicorn.runtime import WorkerRuntime

HEARTBEAT_SECONDS = 2.0
# How often the heartbeat thread looks for changes it has not written yet (booted, a reload between passes).
CHECK_SECONDS = 0.25


def default_pipelines_dir() -> Path:
    return Path(hayhooks_settings.pipelines_dir or ".").absolute()


def state_dir(settings: KitSettings | None = None, pipelines_dir: Path | None = None) -> Path:
    """``HAYHOOKS_GUNICORN_STATE_DIR``, else a private per-user directory keyed by the pipelines directory.

    The key makes every server of one pipelines directory on this host share a view (and the CLI find it)
    while unrelated servers on the same host never mix. It lives under the temp directory, not
    ``XDG_RUNTIME_DIR``, which differs between a login shell and a service.
    """
    settings = settings or kit_settings()
    if settings.state_dir is not None:
        return settings.state_dir.absolute()
    resolved = str((pipelines_dir or default_pipelines_dir()).resolve())
    key = hashlib.sha256(resolved.encode()).hexdigest()[:12]
    return Path(tempfile.gettempdir()) / f"hayhooks-gunicorn-{os.getuid()}" / key


def state_file(directory: Path, host: str, pid: int) -> Path:
    return directory / f"{host}-{pid}.json"


def ensure_state_dir(directory: Path, settings: KitSettings | None = None) -> None:
    """Create the state directory; the default one (under a shared temp dir) must be private to this user."""
    settings = settings or kit_settings()
    if settings.state_dir is not None:
        directory.mkdir(parents=True, exist_ok=True)
        return
    # mkdir(parents=True) would create the per-user parent with the umask's mode, not 0700.
    for path in (directory.parent, directory):
        path.mkdir(mode=0o700, exist_ok=True)
        info = path.lstat()
        if path.is_symlink() or info.st_uid != os.getuid() or info.st_mode & 0o077:
            msg = f"Refusing state directory '{path}': it must be a directory owned by uid {os.getuid()} with mode 0700"
            raise PermissionError(msg)


def forget_worker(pid: int) -> None:
    """In the gunicorn master, when a worker of this host exited."""
    remove_state(state_dir(), socket.gethostname(), pid)


def release_state_dir() -> None:
    """In the gunicorn master at exit: remove the default state directory once no worker of any server uses it."""
    if kit_settings().state_dir is not None:
        return
    directory = state_dir()
    for path in (directory, directory.parent):
        try:
            path.rmdir()
        except OSError:
            return  # another server still uses it, or it was never created


@dataclass(frozen=True)
class WorkerState:
    host: str
    pid: int
    master_pid: int
    started_at: float
    heartbeat: float
    booted: bool
    pipelines: dict[str, str] = field(default_factory=dict)
    failures: dict[str, dict[str, str]] = field(default_factory=dict)

    @property
    def id(self) -> str:
        """Same form as the ``X-Hayhooks-Worker`` header."""
        return f"{self.host}:{self.pid}"

    def has(self, name: str, revision: str | None) -> bool:
        """Whether this worker is done with *revision* of *name*: serving it, or failed to load exactly it.

        ``revision=None`` asks whether it stopped serving *name*.
        """
        if revision is None:
            return name not in self.pipelines
        failure = self.failures.get(name) or {}
        return self.pipelines.get(name) == revision or failure.get("revision") == revision

    def to_json(self) -> dict[str, Any]:
        return {
            "worker": self.id,
            "host": self.host,
            "pid": self.pid,
            "master_pid": self.master_pid,
            "started_at": self.started_at,
            "heartbeat": self.heartbeat,
            "booted": self.booted,
            "pipelines": self.pipelines,
            "failures": self.failures,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> WorkerState:
        return cls(
            host=str(data["host"]),
            pid=int(data["pid"]),
            master_pid=int(data.get("master_pid", 0)),
            started_at=float(data.get("started_at", 0)),
            heartbeat=float(data["heartbeat"]),
            booted=bool(data.get("booted", True)),
            pipelines={str(k): str(v) for k, v in (data.get("pipelines") or {}).items()},
            failures={str(k): dict(v) for k, v in (data.get("failures") or {}).items()},
        )


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def read_workers(directory: Path, ttl: float, now: float | None = None) -> list[WorkerState]:
    """Live workers, sorted by id; a missing directory means none."""
    now = time.time() if now is None else now
    here = socket.gethostname()
    workers: list[WorkerState] = []
    try:
        entries = sorted(directory.glob("*.json"))
    except OSError:
        return []
    for path in entries:
        if path.name.startswith("."):
            continue
        try:
            worker = WorkerState.from_json(json.loads(path.read_text()))
        except (OSError, ValueError, KeyError, TypeError):
            continue  # removed while listing, or not one of ours
        if now - worker.heartbeat > ttl:
            continue
        if worker.host == here and not process_alive(worker.pid):
            continue
        workers.append(worker)
    return sorted(workers, key=lambda w: w.id)


def remove_state(directory: Path, host: str, pid: int) -> None:
    state_file(directory, host, pid).unlink(missing_ok=True)


class StatePublisher:
    """Writes this worker's state file; registered in ``app.state.kit_on_boot`` so it starts with the worker."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.host = socket.gethostname()
        self.pid = 0
        self.runtime: WorkerRuntime | None = None
        self._written: tuple[Any, ...] | None = None
        self._written_at = 0.0
        self._lock = threading.Lock()
        self._stop = threading.Event()

    def __call__(self, runtime: WorkerRuntime) -> None:
        """Boot callback: publish now (booting), then after every change and on a heartbeat."""
        self.runtime = runtime
        self.pid = os.getpid()  # the worker's, also when the app was built before fork (preload_app)
        ensure_state_dir(self.directory)
        runtime.reconciler.listeners.append(self.on_change)
        self.write(force=True)
        atexit.register(self.stop)
        threading.Thread(target=self._beat, name="cluster-state", daemon=True).start()

    def snapshot(self) -> WorkerState:
        assert self.runtime is not None
        reconciler = self.runtime.reconciler
        served, failed = dict(reconciler.served), dict(reconciler.failed)
        return WorkerState(
            host=self.host,
            pid=self.pid,
            master_pid=os.getppid(),
            started_at=self.runtime.started_at,
            heartbeat=time.time(),
            booted=self.runtime.booted_at is not None,
            pipelines={name: s.revision for name, s in sorted(served.items())},
            failures={name: {"revision": f.revision, "error": f.error} for name, f in sorted(failed.items())},
        )

    def write(self, force: bool = False) -> None:
        with self._lock:
            if self._stop.is_set():
                return
            state = self.snapshot()
            key = (state.booted, state.pipelines, state.failures)
            if not force and key == self._written and time.monotonic() - self._written_at < HEARTBEAT_SECONDS:
                return
            path = state_file(self.directory, self.host, self.pid)
            temp = self.directory / f".{path.name}.{uuid.uuid4().hex[:8]}.tmp"
            try:
                try:
                    temp.write_text(json.dumps(state.to_json()))
                except FileNotFoundError:  # the last master of another server removed the empty directory
                    ensure_state_dir(self.directory)
                    temp.write_text(json.dumps(state.to_json()))
                os.replace(temp, path)
            except OSError:
                temp.unlink(missing_ok=True)
                raise
            self._written, self._written_at = key, time.monotonic()

    def on_change(self, change: Change) -> None:
        self.write(force=True)

    def stop(self) -> None:
        with self._lock:
            self._stop.set()
            remove_state(self.directory, self.host, self.pid)

    def _beat(self) -> None:
        while not self._stop.wait(CHECK_SECONDS):
            try:
                self.write()
            except Exception as e:  # a full disk or a vanished share must not end the heartbeat
                log.warning("Worker {} cannot write its state to '{}': {}", self.pid, self.directory, e)
                self._stop.wait(HEARTBEAT_SECONDS)
