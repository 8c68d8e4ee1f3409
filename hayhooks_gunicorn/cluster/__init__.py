"""The cluster: every worker's state file, and the view of them all against the directory.

Runs in each worker (``recorder`` writes the worker's state, ``view`` answers ``GET /cluster``), in the master
(``state_files``: a dead worker's file is removed) and in the CLI (``lookup``: a server's view, else the files).
``identity`` names a worker the same way everywhere: ``<host>:<pid>``, the ``X-Hayhooks-Worker`` header. ``trust``
decides which entries of a (possibly shared) state directory count: only this user's.
"""

from __future__ import annotations

from hayhooks_gunicorn.cluster.identity import WorkerHeaderMiddleware, worker_id
from hayhooks_gunicorn.cluster.state_files import WorkerState, forget_worker, read_workers, release_state_dir, state_dir

__all__ = [
    "WorkerHeaderMiddleware",
    "WorkerState",
    "forget_worker",
    "read_workers",
    "release_state_dir",
    "state_dir",
    "worker_id",
]
