"""What gunicorn's server hooks do in the master; ``gunicorn_conf`` holds only thin functions that call these.

An exception that leaves a hook stops the master (gunicorn turns it into ``HaltServer``): the hooks log what fails
and go on, except where stopping is the point (``on_starting`` exits with one sentence when the installed hayhooks
or durable mode cannot work) and ``load_in_master`` (``SHARE_MODELS``), which runs unguarded in ``on_starting`` and
``on_reload``. This module imports only light modules at the top; hayhooks' server and Haystack are imported in
the master by ``preload`` (``HAYHOOKS_GUNICORN_PRELOAD_IMPORTS``, on by default) and by ``shared_models``.
"""

from __future__ import annotations

import gc
import os
import sys
import time
from typing import Any

from hayhooks_gunicorn.cluster.quarantine import Quarantine
from hayhooks_gunicorn.cluster.state_files import forget_worker, release_state_dir, state_dir
from hayhooks_gunicorn.cluster.trust import check_state_dir
from hayhooks_gunicorn.errors import KitError
from hayhooks_gunicorn.master import gpus, instance, readiness, slots
from hayhooks_gunicorn.metrics import multiproc_dir
from hayhooks_gunicorn.settings import WORKER_SLOT_ENV, MetricsMode, WatchMode, kit_settings, pipelines_dir


def on_starting(server: Any) -> None:
    """Fail fast, with one sentence, when the installed hayhooks is not one the kit supports, durable mode cannot
    boot (``master.durable``) or the state directory is open to other users (``cluster.trust``); give this master
    its own control socket and hold back gunicorn's early ``READY=1`` (see ``readiness``)."""
    from hayhooks_gunicorn.compat import check_hayhooks
    from hayhooks_gunicorn.master.durable import check_durable

    multiproc_dir.adopt()
    try:
        check_hayhooks()
        if warning := check_durable(pipelines_dir()):
            server.log.warning("%s", warning)
        gpus.log_placement(server.log)
        if kit_settings().state_dir is not None:
            check_state_dir(state_dir(), create=True)
        start_instance(server)
    except KitError as e:
        server.log.error("%s", e)
        sys.exit(1)
    preload_imports(server)
    thaw_after_fork()
    if kit_settings().share_models:
        from hayhooks_gunicorn.master import allocator
        from hayhooks_gunicorn.master.shared_models import load_in_master

        allocator.for_master()
        load_in_master(pipelines_dir(), kit_settings(), server.log)


def post_fork(server: Any, worker: Any) -> None:
    """In the new worker: its slot and device into the environment, before its app is built (``slots``, ``gpus``);
    undo what the master limited while it loaded shared pipelines (torch's threads, glibc's mmap threshold)."""
    place_worker(server, worker)
    if kit_settings().share_models:
        from hayhooks_gunicorn.master import allocator
        from hayhooks_gunicorn.master.shared_models import restore_threads

        restore_threads()
        allocator.for_worker()


def on_reload(server: Any) -> None:
    """On HUP, before the new workers fork: import what pipelines added since (and load them, when shared)."""
    preload_imports(server)
    if kit_settings().share_models:
        from hayhooks_gunicorn.master.shared_models import load_in_master

        load_in_master(pipelines_dir(), kit_settings(), server.log)


def pre_fork(server: Any, worker: Any) -> None:
    """Freeze what the master built since the last fork, so workers' collections leave those pages shared (the
    master thaws it again right after the fork: ``thaw_after_fork``); give the new worker its slot."""
    gc.freeze()
    assign_slot(server, worker)


def assign_slot(server: Any, worker: Any) -> None:
    """The slot of the worker a rolling replacement named, else the lowest free one (``slots``)."""
    try:
        current = instance.current()
        slots.assign(server, worker, current.replacing() if current is not None else None)
    except Exception:
        server.log.exception("Could not give the new worker a slot")


def place_worker(server: Any, worker: Any) -> None:
    slot = getattr(worker, slots.ATTRIBUTE, None)
    if slot is None:
        return
    os.environ[WORKER_SLOT_ENV] = str(slot)
    gpus.place(slot)


def nworkers_changed(server: Any, new_value: int, old_value: int | None) -> None:
    """The count went down: make the workers holding the highest slots the ones gunicorn stops (``slots``)."""
    if old_value is None or new_value >= old_value:
        return
    try:
        slots.order_for_stop(server, new_value)
    except Exception:
        server.log.exception("Could not choose the workers to stop by slot")


def thaw_after_fork() -> None:
    """In the master, once: ``gc.unfreeze()`` after every fork, in the parent only.

    ``gc.freeze()`` moves every tracked object into a generation no collection visits, in the process that calls
    it: without the thaw, whatever the master held at any fork stayed for ever, so each version replaced under
    ``HAYHOOKS_GUNICORN_SHARE_MODELS`` (held in reference cycles, as a Haystack component points back at its
    pipeline) was never freed in the master (measured: +201 MB over 10 reloads of a 20 MB component). The child
    keeps its objects frozen, which is what keeps its pages shared (Python's ``gc.freeze`` documentation).
    """
    os.register_at_fork(after_in_parent=gc.unfreeze)


def preload_imports(server: Any) -> None:
    """Import the server's and the pipelines' libraries here, once, for every worker (``preload``)."""
    if not kit_settings().preload_imports:
        return
    from hayhooks_gunicorn.master.preload import preload_for

    started = time.monotonic()
    try:
        imported, failed, threads = preload_for(pipelines_dir())
    except Exception as e:  # sharing is an optimisation: workers import for themselves
        server.log.warning("Could not import the pipelines' libraries in the master (%s); each worker will", e)
        return
    server.log.info(
        "Imported %d module(s) in the master in %.1fs, shared by every worker%s",
        len(imported),
        time.monotonic() - started,
        f": {', '.join(imported[:8])}{', ...' if len(imported) > 8 else ''}" if imported else "",
    )
    for name, error in failed.items():
        server.log.warning("Module %s could not be imported in the master; each worker imports it: %s", name, error)
    if threads:
        server.log.warning("Importing started thread(s) %s in the master; forked workers do not inherit them", threads)


def start_instance(server: Any) -> instance.Instance:
    """Give this master its own control socket unless one was configured (``instance``)."""
    cfg = server.cfg
    explicit = cfg.control_socket if cfg.control_socket != cfg.settings["control_socket"].default else None
    current = instance.for_socket(explicit, cfg.bind[0] if cfg.bind else "")
    try:
        current.prepare()
    except OSError as e:
        raise KitError(f"Cannot prepare the runtime directory of {current.control_socket}: {e}") from e
    if explicit is None:
        cfg.set("control_socket", str(current.control_socket))
    instance.activate(current)
    readiness.take_notify_socket()
    return current


def when_ready(server: Any) -> None:
    """Announce readiness once every worker has loaded the pipelines directory (see ``readiness``); under
    ``HAYHOOKS_GUNICORN_SHARE_MODELS``, follow the directory from here and roll changes out (``roll_on_change``)."""
    try:
        if (current := instance.current()) is not None:
            readiness.announce_when_ready(server, current)
            if hayhooks_settings().chainlit_enabled:
                from hayhooks_gunicorn.chat import supervisor

                supervisor.start(server, current.chat_socket)
            if kit_settings().watch is not WatchMode.OFF:
                if kit_settings().share_models:
                    start_rolling_on_change(server, current)
                elif hayhooks_settings().durable_mode:
                    start_durable_rolling(server, current)
    except Exception:
        server.log.exception("Could not start the readiness watcher")


def hayhooks_settings() -> Any:
    from hayhooks.settings import settings

    return settings


def start_durable_rolling(server: Any, current: instance.Instance) -> None:
    """Durable workers never reload in place: the master checks a changed set, then replaces them one at a time."""
    from hayhooks_gunicorn.master.roll_on_change import RollOnChange, check_changed

    settings, directory = kit_settings(), pipelines_dir()
    roll = RollOnChange(server, current, directory, settings, lambda: check_changed(roll.rolled, directory, settings))
    roll.start()


def start_rolling_on_change(server: Any, current: instance.Instance) -> None:
    from hayhooks_gunicorn.master.roll_on_change import RollOnChange
    from hayhooks_gunicorn.master.shared_models import load_in_master

    settings, directory = kit_settings(), pipelines_dir()
    RollOnChange(server, current, directory, settings, lambda: load_in_master(directory, settings, server.log)).start()


def prepare_gpus() -> None:
    """Decide the GPU placement while gunicorn reads the configuration, so ``--check-config`` checks it too; a
    list naming a GPU the machine does not have ends the start with one sentence (``gpus``)."""
    try:
        gpus.prepare(kit_settings().gpus)
    except KitError as e:
        # Raised here, gunicorn would print "Failed to read config file" and a traceback (app/base.py).
        print(f"Error: {e}", file=sys.stderr)
        sys.exit(1)


def prepare_metrics() -> None:
    """Give this master its private ``PROMETHEUS_MULTIPROC_DIR`` while gunicorn reads its configuration.

    It must be in the environment before any process imports prometheus_client (``values.py`` picks its value
    class at import), and before workers fork so they inherit it. Any inherited value is replaced: another
    master's directory must never be shared.
    """
    settings = kit_settings()
    if settings.metrics is MetricsMode.OFF:
        return
    try:
        multiproc_dir.prepare(settings.metrics_dir)
    except OSError as e:
        msg = (
            f"Cannot create the metrics directory ({e}); point HAYHOOKS_GUNICORN_METRICS_DIR at a writable "
            "directory or set HAYHOOKS_GUNICORN_METRICS=off"
        )
        raise KitError(msg) from e


def child_exit(server: Any, worker: Any) -> None:
    """A worker exited: drop its ready marker, its live gauges (its counts go to the archive), its state file."""
    if (current := instance.current()) is not None:
        _attempt(server, "drop the ready marker", worker.pid, lambda: current.forget(worker.pid))
        _attempt(server, "lower the worker count", worker.pid, lambda: retire(server, current, worker.pid))
    _attempt(server, "retire the metrics", worker.pid, lambda: multiproc_dir.retire(worker.pid))
    # UvicornWorker never runs gunicorn's worker_exit hook: the master removes the worker's cluster state.
    _attempt(server, "remove the cluster state", worker.pid, lambda: forget_worker(worker.pid))
    _attempt(server, "quarantine what it was loading", worker.pid, lambda: quarantine_loads(server, worker.pid))


def retire(server: Any, current: instance.Instance, pid: int) -> None:
    """A rolling restart gave up on worker *pid* (``ControlSocket.give_up``): the count goes down with it, here,
    before the arbiter's main loop would fork its replacement."""
    if current.take_retire(pid):
        server.num_workers = max(1, server.num_workers - 1)
        server.log.info("Worker %s did not get ready; back to %s worker(s)", pid, server.num_workers)


def quarantine_loads(server: Any, pid: int) -> None:
    """Record the revisions worker *pid* died loading, so no worker loads them again (``cluster.quarantine``)."""
    for record in Quarantine(state_dir()).worker_died(pid, reaped_status(pid)):
        server.log.error(
            "Pipeline '%s' (rev %s) %s: quarantined, no worker loads that revision again",
            record.name,
            record.revision,
            record.cause,
        )


def reaped_status(pid: int) -> int | None:
    """The wait status of worker *pid*, which gunicorn 27 does not hand to ``child_exit``.

    ``Arbiter.reap_workers`` calls ``cfg.child_exit(self, worker)`` right after ``os.waitpid`` returned
    ``(wpid, status)``: read them from that frame. ``None`` when the caller is not that loop (another gunicorn).
    """
    frame = sys._getframe(1)
    while frame is not None:
        if frame.f_code.co_name == "reap_workers" and frame.f_locals.get("wpid") == pid:
            status = frame.f_locals.get("status")
            return status if isinstance(status, int) else None
        frame = frame.f_back  # type: ignore[assignment]
    return None


def on_exit(server: Any) -> None:
    from hayhooks_gunicorn.chat import supervisor

    _attempt(server, "stop the Chainlit UI host", None, supervisor.stop)
    _attempt(server, "remove the loading marks directory", None, Quarantine(state_dir()).tidy)
    _attempt(server, "remove the cluster state directory", None, release_state_dir)
    if (current := instance.current()) is not None:
        _attempt(server, "remove the ready markers", None, current.remove)
    _attempt(server, "remove the metrics directory", None, multiproc_dir.remove)


def _attempt(server: Any, what: str, pid: int | None, step: Any) -> None:
    """Run one clean-up step; a failure is logged and the next step still runs."""
    try:
        step()
    except Exception:
        server.log.exception("Could not %s%s", what, f" of worker {pid}" if pid is not None else "")
