"""What gunicorn's server hooks do; ``gunicorn_conf`` holds only thin functions that call these.

No exception may leave a hook: gunicorn turns one into ``HaltServer`` and stops the master.
"""

from __future__ import annotations

import sys
from typing import Any

from hayhooks_gunicorn.errors import KitError


def on_starting(server: Any) -> None:
    """Fail fast, with one sentence, when the installed hayhooks is not one the kit supports."""
    from hayhooks_gunicorn.compat import check_hayhooks

    try:
        check_hayhooks()
    except KitError as e:
        server.log.error("%s", e)
        sys.exit(1)


def post_worker_init(worker: Any) -> None:
    """Load every pipeline before the worker accepts a request.

    Why here and not in ``post_fork``: ``post_fork`` runs before the worker installs its signal handlers, so a
    SIGTERM during a long load would be swallowed by the master's handlers until ``graceful_timeout``. Here
    uvicorn-worker has reset SIGTERM to its default action, so a stop during loading is immediate, and the
    server socket is not served until this returns. gunicorn enforces ``timeout`` only after a worker's first
    heartbeat (``WorkerTmp`` starts with a wall-clock mtime), so a ``setup()`` slower than ``timeout`` loads
    without the worker being killed; ``HAYHOOKS_GUNICORN_LOAD_TIMEOUT`` bounds a load that hangs.
    """
    from hayhooks_gunicorn.runtime import boot

    try:
        boot(worker.wsgi)
    except Exception:
        worker.log.exception("Worker %s could not load its pipelines; serving without them", worker.pid)
