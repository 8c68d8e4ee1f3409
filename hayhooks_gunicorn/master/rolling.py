"""Rolling replacement of workers: a new worker loads, then an old one retires, one at a time.

gunicorn's HUP (``Arbiter.reload``) spawns all new workers and stops the old ones at once, so requests queue
until the new workers have loaded their pipelines (a request sent 0.5 s after HUP waited 7.5 s with an 8 s load).
Here the worker count is raised by one, the new worker is waited for until its ready marker says it serves
(``instance.py``), and the count is lowered again, which makes the master stop its oldest worker with SIGTERM
(``Arbiter.manage_workers``) while every other worker keeps serving.

One loop (``rolling_replace``) for two callers: ``hayhooks-gunicorn restart`` drives a running master through
its control socket (``ControlSocket``), and the master itself drives its arbiter (``ArbiterPool``) when the
directory changes under ``HAYHOOKS_GUNICORN_SHARE_MODELS`` (``roll_on_change``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Protocol

from gunicorn.ctl.client import ControlClientError

from hayhooks_gunicorn.master.control import ControlSocket, RestartError
from hayhooks_gunicorn.master.instance import Instance
from hayhooks_gunicorn.polling import poll_until


class WorkerPool(Protocol):
    """What a rolling replacement needs of gunicorn: its workers (``pid``, ``age``) and a worker count to change."""

    def workers(self) -> list[dict[str, Any]]: ...

    def change_target(self, delta: int) -> None: ...

    def give_up(self, started_after: int, kept: set[int]) -> None:
        """Back to the worker count before the roll, after a new worker did not get ready."""


class ArbiterPool:
    """The two operations inside the master, done the way gunicorn's own control handlers do them
    (``gunicorn/ctl/handlers.py``: ``worker_add`` / ``worker_remove``): change ``num_workers``, wake the arbiter,
    whose main loop then forks or stops workers (``Arbiter.manage_workers``)."""

    def __init__(self, arbiter: Any) -> None:
        self.arbiter = arbiter

    def workers(self) -> list[dict[str, Any]]:
        return [{"pid": pid, "age": worker.age} for pid, worker in list(self.arbiter.WORKERS.items())]

    def change_target(self, delta: int) -> None:
        self.arbiter.num_workers = max(1, self.arbiter.num_workers + delta)
        self.arbiter.wakeup()

    def give_up(self, started_after: int, kept: set[int]) -> None:
        """Stop the new worker that did not get ready, not an old one: ``manage_workers`` stops the workers of
        lowest ``age`` first, so the failed one is made the oldest before the count goes down."""
        for pid, worker in list(self.arbiter.WORKERS.items()):
            if worker.age > started_after and pid not in kept:
                worker.age = 0
        self.change_target(-1)


@dataclass
class RestartReport:
    replaced: list[tuple[int, int]] = field(default_factory=list)  # (old pid, new pid)


def rolling_restart(
    instance: Instance,
    load_timeout: float,
    retire_timeout: float,
    echo: Callable[[str], None] = print,
    poll: float = 0.1,
) -> RestartReport:
    """Replace every worker that exists now; raise :class:`RestartError` with what happened when one fails."""
    master = ControlSocket(str(instance.control_socket), instance=instance)
    if not instance.control_socket.exists():
        msg = f"No control socket at {master.path}: is the server running, with this bind or control socket?"
        raise RestartError(msg)
    try:
        return rolling_replace(master, instance, load_timeout, retire_timeout, echo, poll)
    except ControlClientError as e:
        msg = f"Cannot talk to the gunicorn master at {master.path}: {e}"
        raise RestartError(msg) from e


def rolling_replace(
    master: WorkerPool,
    instance: Instance,
    load_timeout: float,
    retire_timeout: float,
    echo: Callable[[str], None],
    poll: float = 0.1,
) -> RestartReport:
    """Replace every worker of *master* that exists now; raise :class:`RestartError` when one fails to start."""
    workers = master.workers()
    if not workers:
        raise RestartError("The gunicorn master reports no workers")
    cutoff = max(w["age"] for w in workers)  # workers up to this age are the ones to replace
    report = RestartReport()
    credited: set[int] = set()
    try:
        while old := [w for w in master.workers() if w["age"] <= cutoff]:
            # the new worker takes the slot of the worker that retires next (``slots``)
            instance.mark_replacing(min(old, key=lambda w: w["age"])["pid"])
            master.change_target(+1)
            try:
                new_pid = poll_until(lambda: _fresh_ready(master, instance, cutoff, credited), load_timeout, poll)
            except TimeoutError:
                master.give_up(cutoff, credited)
                msg = (
                    f"No new worker finished loading within {load_timeout:g}s; stopped after replacing "
                    f"{len(report.replaced)} worker(s); gunicorn is back to its worker count."
                )
                raise RestartError(msg) from None
            credited.add(new_pid)
            oldest: int = min(master.workers(), key=lambda w: w["age"])["pid"]
            master.change_target(-1)
            echo(f"Worker {new_pid} serves; retiring worker {oldest} ({len(old) - 1} old worker(s) left)")
            try:
                poll_until(partial(_gone, master, oldest), retire_timeout, poll)
            except TimeoutError:
                raise RestartError(f"Worker {oldest} did not exit within {retire_timeout:g}s") from None
            report.replaced.append((oldest, new_pid))
    finally:
        instance.mark_replacing(None)
    return report


def _gone(master: WorkerPool, pid: int) -> bool:
    return pid not in {w["pid"] for w in master.workers()}


def _fresh_ready(master: WorkerPool, instance: Instance, cutoff: int, credited: set[int]) -> int | None:
    """A worker started after the restart began, ready, and not yet counted against an old one."""
    ready = instance.ready_pids()
    for worker in master.workers():
        if worker["age"] > cutoff and worker["pid"] in ready and worker["pid"] not in credited:
            return int(worker["pid"])
    return None
