"""The gunicorn worker class: uvicorn-worker's ``UvicornWorker`` serving the kit's app, with gunicorn's signal
semantics (TERM graceful, INT and QUIT quick), a ready marker once it serves, and the kit's log routing."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from collections.abc import Callable
from types import FrameType
from typing import Any

from gunicorn.arbiter import Arbiter
from uvicorn.server import Server
from uvicorn_worker import UvicornWorker

from hayhooks_gunicorn import logs
from hayhooks_gunicorn.master import instance

# Longest a stopping worker waits for its connections with no request under way: one just accepted, to send its
# request; an idle keep-alive one, to send one more (answered with Connection: close) or to be closed by its client.
IDLE_GRACE = 1.0
CLOSE_HEADER = (b"connection", b"close")


class KitServer(Server):
    """uvicorn's ``Server`` that stops at once on SIGINT/SIGQUIT and reports when it has started serving."""

    def __init__(self, *args: Any, on_started: Callable[[], None] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.on_started = on_started

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        # uvicorn (server.py::handle_exit) treats a first SIGINT as graceful and waits for every connection with no
        # limit; gunicorn means INT and QUIT as "quick shutdown" (Arbiter.handle_int/handle_quit send QUIT).
        if sig in (signal.SIGINT, signal.SIGQUIT):
            self.should_exit = self.force_exit = True  # not captured for re-raising: the worker exits itself
            return
        super().handle_exit(sig, frame)

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if self.started and self.on_started is not None:
            self.on_started()

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        # uvicorn closes every connection that has no request under way (httptools_impl/h11_impl shutdown(): cycle
        # is None or its response is complete -> transport.close()): one accepted a moment ago whose request is
        # still in the socket buffer, and an idle keep-alive one its client is about to reuse. Either client sees
        # a dropped connection although other workers serve. So, before that:
        # - every response from now on says Connection: close, so a client that sends on its keep-alive
        #   connection gets an answer and then closes it. Each request's cycle keeps the list it was created with
        #   (default_headers=server_state.default_headers), which uvicorn replaces once a second in on_tick() while
        #   serving: appending in place reaches the requests under way since that tick too, and later ones;
        # - stop accepting, and give those connections up to IDLE_GRACE to send their request or go away.
        # What remains: a client that sends on a connection idle through the whole grace, just as it is closed,
        # sees a dropped connection, as with uvicorn's keep-alive timeout at any other time. HTTP lets a client
        # retry an idempotent request then (RFC 9110 section 9.2.2), but httpx does not retry, and POST /run is not
        # idempotent.
        if CLOSE_HEADER not in self.server_state.default_headers:
            self.server_state.default_headers.append(CLOSE_HEADER)
        for server in self.servers:
            server.close()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + IDLE_GRACE
        while (
            not self.force_exit
            and loop.time() < deadline
            and any(_no_request_under_way(c) for c in self.server_state.connections)
        ):
            await asyncio.sleep(0.01)
        await super().shutdown(sockets=sockets)


def _no_request_under_way(connection: Any) -> bool:
    """An HTTP connection uvicorn's shutdown would close at once; a WebSocket connection has no ``cycle``."""
    if not hasattr(connection, "cycle"):
        return False
    return connection.cycle is None or bool(connection.cycle.response_complete)


def post_worker_init(worker: Any) -> None:
    """gunicorn's ``post_worker_init`` hook: load every pipeline before the worker accepts a request.

    Why here and not in ``post_fork``: ``post_fork`` runs before the worker installs its signal handlers, so a
    SIGTERM during a long load would be swallowed by the master's handlers until ``graceful_timeout``. Here
    uvicorn-worker has reset SIGTERM to its default action, so a stop during loading is immediate, and the
    server socket is not served until this returns. gunicorn enforces ``timeout`` only after a worker's first
    heartbeat (``WorkerTmp`` starts with a wall-clock mtime), so a ``setup()`` slower than ``timeout`` loads
    without the worker being killed; ``HAYHOOKS_GUNICORN_LOAD_TIMEOUT`` bounds a load that hangs. No exception
    may leave a hook, so a failure is logged and the worker serves without pipelines.
    """
    from hayhooks_gunicorn.app_context import app_context
    from hayhooks_gunicorn.worker.app import boot  # the master imports this module: it must stay light

    if app_context(worker.wsgi).durable is not None:  # loaded in create_app(), started by hayhooks' lifespan
        return
    try:
        boot(worker.wsgi)
    except Exception:
        worker.log.exception("Worker %s could not load its pipelines; serving without them", worker.pid)


class HayhooksWorker(UvicornWorker):
    """Serves ``hayhooks_gunicorn.worker.app:create_app()``; pipelines are loaded by ``post_worker_init``."""

    CONFIG_KWARGS = {"loop": "auto", "http": "auto"}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # uvicorn waits for open connections without limit (timeout_graceful_shutdown=None). gunicorn bounds that
        # only when the master stops, not when it retires one worker (max_requests, `worker remove`), so a
        # streaming client could keep a retired worker alive forever.
        self.config.timeout_graceful_shutdown = self.cfg.graceful_timeout

    def load_wsgi(self) -> None:
        super().load_wsgi()  # type: ignore[no-untyped-call]  # gunicorn has no annotations
        if isinstance(self.log, logs.KitLogger):  # after hayhooks' create_app() pointed uvicorn's loggers at loguru
            logs.route_uvicorn_access(self.log)

    async def _serve(self) -> None:
        # uvicorn-worker's _serve, with KitServer, and SIGQUIT going to it: uvicorn-worker's own SIGQUIT handler
        # calls gunicorn's Worker.handle_exit, which only clears `alive`, a flag uvicorn never reads, so a quick
        # shutdown waited the whole graceful_timeout and ended in SIGKILL (uvicorn-worker _workers.py).
        self.config.app = self.wsgi
        server = KitServer(config=self.config, on_started=self._mark_ready)
        asyncio.get_running_loop().add_signal_handler(signal.SIGQUIT, server.handle_exit, signal.SIGQUIT, None)
        await server.serve(sockets=self.sockets)
        if not server.started:
            # WORKER_BOOT_ERROR halts the whole arbiter (arbiter.py::reap_workers): kept for an app that cannot start
            # at all, not for one whose startup failed on something that heals (worker.durable marks that case, as
            # RESPAWN_ON_FAILED_START; not imported: the master imports this module).
            heals = getattr(getattr(self.wsgi, "state", None), "kit_respawn_on_failed_start", False)
            sys.exit(1 if heals else Arbiter.WORKER_BOOT_ERROR)
        if server.force_exit:
            # A request still running in a worker thread (a sync run_api) would hold the interpreter's exit, which
            # joins non-daemon threads, for as long as it runs: a quick shutdown leaves without waiting.
            self.log.info("Worker %s stopped at once (quick shutdown)", os.getpid())
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(0)

    def _mark_ready(self) -> None:
        current = instance.current()
        if current is None:
            return
        try:
            current.mark_ready(os.getpid())
        except OSError as e:
            self.log.warning("Worker %s could not write its ready marker: %s", os.getpid(), e)
