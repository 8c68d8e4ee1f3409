"""Every worker's state as a small JSON file in a state directory: the cluster view is the set of live files.

A worker writes ``<state_dir>/<host>-<pid>.json`` (``cluster.recorder``) when it boots, after every reload
result and on a heartbeat. Files of dead workers go away three ways: the gunicorn master's ``child_exit`` hook
deletes them (UvicornWorker never runs gunicorn's ``worker_exit``), the worker deletes its own at exit, and
readers ignore entries whose heartbeat is older than ``heartbeat_ttl`` (or in the future) or whose process is
gone, and every file another user put there (``trust``). The master imports this module: it stays light.
"""

from __future__ import annotations

import hashlib
import os
import socket
import tempfile
import time
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from hayhooks_gunicorn.cluster.trust import check_state_dir, read_record
from hayhooks_gunicorn.files import ensure_private_dir, remove_unfinished_writes
from hayhooks_gunicorn.settings import KitSettings, kit_settings, pipelines_dir


class LoadFailure(BaseModel):
    revision: str
    error: str


class WorkerState(BaseModel):
    """What one worker serves, as written to its state file and shown by ``GET /cluster``."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    host: str
    pid: int
    master_pid: int = 0
    started_at: float = 0.0
    heartbeat: float
    booted: bool = True
    # pipeline name -> revision served
    pipelines: dict[str, str] = Field(default_factory=dict)
    # pipeline name -> the revision that failed to load (the previous one, if any, still serves)
    failures: dict[str, LoadFailure] = Field(default_factory=dict)
    # pipeline name -> the entries defining it (``x/`` and ``x.yml``) and which one this worker serves
    conflicts: dict[str, str] = Field(default_factory=dict)
    # The worker's slot, 0..N-1, kept by its replacement (master/slots); None outside a kit master
    slot: int | None = None
    # CUDA_VISIBLE_DEVICES as this worker was told (HAYHOOKS_GUNICORN_GPUS) or inherited; None when unset
    devices: str | None = None
    # The unix socket this worker serves its live trace buffer on (``traces.peer``); empty when it does not
    traces_socket: str = ""
    # The real directory (links resolved: a git-sync worktree, a release) this worker serves from
    serves_from: str = ""
    # A durable worker serves a fixed set: it is replaced, never reloaded in place (worker.durable)
    durable_mode: bool = False
    # Durable mode: pipeline name -> the ``durable_revision`` its executions are pinned to (empty otherwise)
    durable_revisions: dict[str, str] = Field(default_factory=dict)

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
        failure = self.failures.get(name)
        return self.pipelines.get(name) == revision or (failure is not None and failure.revision == revision)


def state_dir(settings: KitSettings | None = None, pipelines: Path | None = None) -> Path:
    """``HAYHOOKS_GUNICORN_STATE_DIR``, else a private per-user directory keyed by the pipelines directory.

    The key makes every server of one pipelines directory on this host share a view (and the CLI find it)
    while unrelated servers on the same host never mix. It is the path as configured, links not followed: a
    worker started after a ``current`` link was swapped must find the same view as the workers started before.
    It lives under the temp directory, not ``XDG_RUNTIME_DIR``, which differs between a login shell and a service.
    """
    settings = settings or kit_settings()
    if settings.state_dir is not None:
        return settings.state_dir.absolute()
    configured = os.path.abspath(pipelines or pipelines_dir())
    key = hashlib.sha256(configured.encode()).hexdigest()[:12]
    return Path(tempfile.gettempdir()) / f"hayhooks-gunicorn-{os.getuid()}" / key


def state_file(directory: Path, host: str, pid: int) -> Path:
    return directory / f"{host}-{pid}.json"


def traces_socket_path(directory: Path, host: str, pid: int) -> Path:
    return directory / f"{host}-{pid}.traces.sock"


def ensure_state_dir(directory: Path, settings: KitSettings | None = None) -> None:
    """Create the state directory; the default one (under a shared temp dir) must be private to this user, an
    explicit one is created 0700 and refused when others may tamper with it (``trust.check_state_dir``)."""
    settings = settings or kit_settings()
    if settings.state_dir is not None:
        check_state_dir(directory, create=True)
    else:
        ensure_private_dir(directory, parents=1)


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


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# Seconds a heartbeat may lie in the future (clocks of hosts sharing the directory differ a little); more is stale.
CLOCK_SKEW = 2.0


def read_workers(directory: Path, ttl: float, now: float | None = None) -> list[WorkerState]:
    """Live workers of this server's user, sorted by id; a missing directory means none."""
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
        content = read_record(path)
        if content is None:
            continue  # removed while listing, or another user's
        try:
            worker = WorkerState.model_validate_json(content)
        except ValidationError:
            continue  # not a worker state
        if not -CLOCK_SKEW <= now - worker.heartbeat <= ttl:
            continue
        if worker.host == here and not process_alive(worker.pid):
            continue
        workers.append(worker)
    return sorted(workers, key=lambda w: w.id)


def remove_state(directory: Path, host: str, pid: int) -> None:
    """The state file, its unfinished writes and the trace socket: a worker that exits (SIGKILLed, or stopped while
    its recorder wrote) leaves them, and the master removes them."""
    state_file(directory, host, pid).unlink(missing_ok=True)
    remove_unfinished_writes(state_file(directory, host, pid))
    traces_socket_path(directory, host, pid).unlink(missing_ok=True)
