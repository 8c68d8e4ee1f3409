"""Revisions that killed the process loading them, recorded where every worker of the host and every replacement
sees them, so none loads them again.

A Python exception in a load is a failed load (``reload.loader``). What real models do to a process is not: the OOM
killer's SIGKILL, a segfault in a native library, a dependency calling ``os._exit``. Nothing runs in the dying
process then, and gunicorn respawns the worker into the same directory (HAYHOOKS_NOTES "Process-level failures"):
a crash loop. So a worker writes a *mark* (``loading/<host>-<pid>.<key>.json``) before it starts loading a
revision and removes it when the load returns, whatever it returned. A mark that outlives its process names the
revision that ended it:

- the master's ``child_exit`` hook turns the marks of the worker it reaped into *records*
  (``quarantine/<key>.json``) naming the cause, unless the worker was stopped on purpose (SIGTERM, SIGINT, SIGQUIT,
  exit code 0: a rolling restart during a slow ``setup()`` is no fault of the pipeline);
- a worker at boot turns the marks of dead processes of this host into records too: that covers a master that was
  itself SIGKILLed before it could reap.

A record is per revision: the next, different revision of the name loads normally, which is how it is cleared.
The master imports this module in its ``child_exit`` hook: it stays light (no hayhooks, no pipeline code).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import signal
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ValidationError

from hayhooks_gunicorn.cluster.state_files import ensure_state_dir, process_alive
from hayhooks_gunicorn.files import write_atomically

# Signals gunicorn (or an operator stopping it) sends to end a worker on purpose: no fault of what it was loading.
STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT, signal.SIGQUIT, signal.SIGHUP}
UNOBSERVED = "killed its worker while loading (found after the worker was gone)"


class LoadingMark(BaseModel):
    name: str
    revision: str
    host: str
    pid: int
    master_pid: int = 0  # the master that reaps this worker and records why it died


class Quarantined(BaseModel):
    name: str
    revision: str
    cause: str
    host: str
    pid: int
    at: float


def death_cause(exit_code: int, what: str, clean_exit_counts: bool = False) -> str | None:
    """What an exit code (minus the signal number for a kill) says a load did to *what*: "killed *what* (SIGKILL)",
    "ended *what* (exit code 1)"; ``None`` for a stop signal, and for exit 0 unless *clean_exit_counts*."""
    if exit_code >= 0:
        return f"ended {what} (exit code {exit_code})" if exit_code or clean_exit_counts else None
    if -exit_code in STOP_SIGNALS:
        return None
    try:
        name = signal.Signals(-exit_code).name
    except ValueError:
        name = f"signal {-exit_code}"
    return f"killed {what} ({name})"


def exit_cause(status: int | None) -> str | None:
    """What an ``os.waitpid`` *status* says a load did to its worker; ``None`` when the worker was stopped on purpose.

    An unknown status (``None``) is still a death during a load: quarantined, with a plain cause.
    """
    try:
        code = None if status is None else os.waitstatus_to_exitcode(status)
    except ValueError:  # stopped, not ended
        code = None
    return "ended its worker while loading" if code is None else death_cause(code, "its worker while loading")


def refusal(revision: str, cause: str) -> str:
    """How a quarantined revision is reported (``/readyz`` ``failures``, ``/cluster``, the log)."""
    return f"quarantined: rev {revision} {cause}"


@dataclass(frozen=True)
class Quarantine:
    """The marks and records of one state directory (``cluster.state_files.state_dir``)."""

    directory: Path

    @property
    def marks(self) -> Path:
        return self.directory / "loading"

    @property
    def records(self) -> Path:
        return self.directory / "quarantine"

    @contextmanager
    def loading(self, name: str, revision: str) -> Iterator[None]:
        """Mark *revision* of *name* as loading in this process for the duration of the block.

        Returning or raising removes the mark; only the death of the process leaves it behind. A mark that cannot be
        written is no reason to refuse a load: the load goes ahead unguarded.
        """
        host, pid = socket.gethostname(), os.getpid()
        path = self.marks / f"{host}-{pid}.{key(name, revision)}.json"
        mark = LoadingMark(name=name, revision=revision, host=host, pid=pid, master_pid=os.getppid())
        written = False
        try:
            ensure_state_dir(self.directory)
            self.marks.mkdir(mode=0o700, exist_ok=True)
            write_atomically(path, mark.model_dump_json())
            written = True
        except OSError:
            pass
        try:
            yield
        finally:
            if written:
                path.unlink(missing_ok=True)

    def verdicts(self, master_pid: int) -> Path:
        """Where one master's trial loads keep their verdicts (``cluster.trial_loads``)."""
        return self.directory / "trials" / f"{socket.gethostname()}-{master_pid}"

    def tidy(self) -> None:
        """In the master at exit: drop the marks directory once empty, and this master's verdicts of trial loads
        (a cache, kept per master); records stay, they outlive restarts."""
        with contextlib.suppress(OSError):
            self.marks.rmdir()
        verdicts = self.verdicts(os.getpid())
        shutil.rmtree(verdicts, ignore_errors=True)
        with contextlib.suppress(OSError):
            verdicts.parent.rmdir()

    def cause(self, name: str, revision: str) -> str | None:
        """Why *revision* of *name* is quarantined, or ``None`` when it is not."""
        try:
            record = Quarantined.model_validate_json((self.records / f"{key(name, revision)}.json").read_bytes())
        except (OSError, ValidationError):
            return None
        return record.cause if (record.name, record.revision) == (name, revision) else None

    def worker_died(self, pid: int, status: int | None) -> list[Quarantined]:
        """In the master, when it reaped worker *pid* with wait *status*: quarantine what it was loading."""
        cause = exit_cause(status)
        return self._settle(_listing(self.marks, f"{socket.gethostname()}-{pid}.*.json"), cause)

    def claim_orphans(self) -> list[Quarantined]:
        """In a booting worker: marks of this host's processes that are gone and whose master is gone too (it was
        killed before it could reap them). A live master records the cause itself, with the exit status: a worker
        must not take the mark first, between the master's ``waitpid`` and its ``child_exit``."""
        here = socket.gethostname()
        orphans = []
        for path in _listing(self.marks, f"{here}-*.json"):
            try:
                mark = LoadingMark.model_validate_json(path.read_bytes())
            except (OSError, ValidationError):
                continue
            if not process_alive(mark.pid) and not (mark.master_pid and process_alive(mark.master_pid)):
                orphans.append(path)
        return self._settle(orphans, UNOBSERVED)

    def _settle(self, marks: list[Path], cause: str | None) -> list[Quarantined]:
        recorded = []
        for path in marks:
            try:
                mark = LoadingMark.model_validate_json(path.read_bytes())
            except (OSError, ValidationError):
                path.unlink(missing_ok=True)
                continue
            if cause is not None:
                recorded.append(self.record(mark.name, mark.revision, cause, mark.host, mark.pid))
            path.unlink(missing_ok=True)
        return recorded

    def record(self, name: str, revision: str, cause: str, host: str, pid: int) -> Quarantined:
        """Quarantine *revision* of *name*: process *pid* of *host* died loading it, of *cause*."""
        record = Quarantined(name=name, revision=revision, cause=cause, host=host, pid=pid, at=time.time())
        self.records.mkdir(mode=0o700, exist_ok=True)
        write_atomically(self.records / f"{key(name, revision)}.json", record.model_dump_json())
        return record


def key(name: str, revision: str) -> str:
    """A file name for any pipeline name and revision (names may hold characters a file name should not)."""
    return hashlib.sha256(f"{name}\0{revision}".encode()).hexdigest()[:24]


def _listing(directory: Path, pattern: str) -> list[Path]:
    try:
        return sorted(directory.glob(pattern))
    except OSError:
        return []
