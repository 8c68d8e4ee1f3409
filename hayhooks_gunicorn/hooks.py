"""What gunicorn's server hooks do; ``gunicorn_conf`` holds only thin functions that call these.

No exception may leave a hook: gunicorn turns one into ``HaltServer`` and stops the master.
"""

from __future__ import annotations

import sys
from typing import Any

from hayhooks_gunicorn.errors import KitError


def on_starting(server: Any) -> None:
    """Fail fast, with one sentence, when the installed hayhooks is not one the kit supports; give this master
    its own control socket and hold back gunicorn's early ``READY=1`` (``lifecycle.start_instance``)."""
    from hayhooks_gunicorn.compat import check_hayhooks
    from hayhooks_gunicorn.lifecycle import start_instance

    try:
        check_hayhooks()
        start_instance(server)
    except KitError as e:
        server.log.error("%s", e)
        sys.exit(1)


def when_ready(server: Any) -> None:
    """Announce readiness once every worker has loaded the pipelines directory (see ``readiness``)."""
    from hayhooks_gunicorn.lifecycle import when_ready

    try:
        when_ready(server)
    except Exception:
        server.log.exception("Could not start the readiness watcher")


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


def prepare_metrics() -> None:
    """Give this master its private ``PROMETHEUS_MULTIPROC_DIR`` while gunicorn reads its configuration.

    It must be in the environment before any process imports prometheus_client (``values.py`` picks its value
    class at import), and before workers fork so they inherit it. Any inherited value is replaced: another
    master's directory must never be shared.
    """
    from hayhooks_gunicorn import metrics_dir
    from hayhooks_gunicorn.settings import MetricsMode, kit_settings

    settings = kit_settings()
    if settings.metrics is MetricsMode.OFF:
        return
    try:
        metrics_dir.prepare(settings.metrics_dir)
    except OSError as e:
        msg = (
            f"Cannot create the metrics directory ({e}); point HAYHOOKS_GUNICORN_METRICS_DIR at a writable "
            "directory or set HAYHOOKS_GUNICORN_METRICS=off"
        )
        raise KitError(msg) from e


def child_exit(server: Any, worker: Any) -> None:
    """Drop the dead worker's live gauges and fold its counts into the archive (in the master)."""
    from hayhooks_gunicorn import lifecycle, metrics_dir

    try:
        lifecycle.child_exit(server, worker)
    except Exception:
        server.log.exception("Could not drop the ready marker of worker %s", worker.pid)
    try:
        metrics_dir.retire(worker.pid)
    except Exception:
        server.log.exception("Could not retire the metrics of worker %s", worker.pid)
    try:
        # UvicornWorker never runs gunicorn's worker_exit hook: the master removes the worker's cluster state.
        from hayhooks_gunicorn.state import forget_worker

        forget_worker(worker.pid)
    except Exception:
        server.log.exception("Could not remove the cluster state of worker %s", worker.pid)


def on_exit(server: Any) -> None:
    from hayhooks_gunicorn import lifecycle, metrics_dir

    try:
        from hayhooks_gunicorn.state import release_state_dir

        release_state_dir()
    except Exception:
        server.log.exception("Could not remove the cluster state directory")
    try:
        lifecycle.on_exit(server)
    except Exception:
        server.log.exception("Could not remove the ready markers")
    try:
        metrics_dir.remove()
    except Exception:
        server.log.exception("Could not remove the metrics directory")
