"""Each worker serves its own live trace buffer on a private unix socket; the worker answering ``/traces`` asks.

hayhooks keeps live traces in an in-memory ring buffer per process (``server/utils/live_trace_buffer.py``), so
a gunicorn worker sees only the runs it served. Each worker listens on ``<state_dir>/<host>-<pid>.traces.sock``
(recorded in its state file) on a thread of its own: a worker whose event loop is busy with a long run still
answers. The protocol is one JSON line each way: ``{"limit": N}`` in, ``{"worker": id, "traces": [...]}`` out.

The socket is only reachable by the user running the server (mode 0600 from the moment it has its name:
``sockets.bind_private``); it carries what ``/traces`` shows, which that route guards with hayhooks' tracing
credentials. The asking side connects only to sockets of its own user in the state directory (``route``).
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import json
import os
import socket
import socketserver
import threading
from pathlib import Path
from typing import Any

from hayhooks.server.logger import log
from hayhooks.server.utils.live_trace_buffer import get_recent_traces

from hayhooks_gunicorn.cluster.identity import worker_id
from hayhooks_gunicorn.cluster.state_files import ensure_state_dir, traces_socket_path
from hayhooks_gunicorn.errors import KitError
from hayhooks_gunicorn.sockets import bind_private

# sun_path holds 108 bytes on Linux; a longer state directory path cannot carry a socket.
MAX_SOCKET_PATH = 107
# hayhooks caps a page at 100 traces (``routers/traces.py``); a peer asked for more answers at most this many.
MAX_LIMIT = 1000
# Bytes a peer may answer: up to 1000 traces of up to 500 spans (``_MAX_SPANS_PER_TRACE``) stays far below it.
MAX_ANSWER = 256 * 1024 * 1024

_server: socketserver.UnixStreamServer | None = None
_server_pid = 0


class _Handler(socketserver.StreamRequestHandler):
    timeout = 5.0  # a client that connects and says nothing must not hold a thread

    def handle(self) -> None:
        try:
            limit = int(json.loads(self.rfile.readline(1024))["limit"])
        except (ValueError, KeyError, TypeError, OSError):
            return
        body = {"worker": worker_id(), "traces": get_recent_traces(limit=max(1, min(limit, MAX_LIMIT)))}
        with contextlib.suppress(OSError):  # the asking worker gave up (its timeout)
            self.wfile.write(json.dumps(body).encode() + b"\n")


class _Server(socketserver.ThreadingUnixStreamServer):
    daemon_threads = True


def listening_socket() -> str:
    """The socket this process serves its trace buffer on, or ``""``."""
    if _server is None or _server_pid != os.getpid():
        return ""
    return str(_server.server_address)


def start(state_dir: Path) -> None:
    """In a worker at boot: serve this process's trace buffer until it exits; never raises."""
    global _server, _server_pid
    path = traces_socket_path(state_dir, socket.gethostname(), os.getpid())
    if listening_socket() == str(path):
        return
    stop()  # an app of this process that served from another state directory (tests build several)
    if len(str(path).encode()) > MAX_SOCKET_PATH:
        log.warning(
            "Worker {}: '{}' is too long for a unix socket; /traces on other workers misses this one's runs",
            os.getpid(),
            path,
        )
        return
    try:
        ensure_state_dir(state_dir)
        # 0600 from the start, replacing a socket of ours a process of the same pid left (a container restart)
        sock = bind_private(path)
        server = _Server(str(path), _Handler, bind_and_activate=False)
        server.socket.close()
        server.socket, server.server_address = sock, str(path)
        server.server_activate()
    except (OSError, KitError) as e:
        log.warning("Worker {} cannot serve its traces on '{}': {}", os.getpid(), path, e)
        return
    _server, _server_pid = server, os.getpid()
    threading.Thread(target=server.serve_forever, name="traces-peer", daemon=True).start()
    atexit.register(stop)


def stop() -> None:
    global _server
    server = _server
    if server is None or _server_pid != os.getpid():
        return
    _server = None
    server.shutdown()
    server.server_close()
    Path(str(server.server_address)).unlink(missing_ok=True)


async def ask(path: str, limit: int, timeout: float) -> list[dict[str, Any]] | None:
    """Another worker's most recent traces, or ``None`` when it is gone or does not answer within *timeout*."""
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_unix_connection(path, limit=MAX_ANSWER)
            try:
                writer.write(json.dumps({"limit": limit}).encode() + b"\n")
                await writer.drain()
                line = await reader.readline()
            finally:
                writer.close()
        traces = json.loads(line)["traces"]
    except (OSError, TimeoutError, ValueError, KeyError, TypeError, asyncio.LimitOverrunError):
        return None
    return traces if isinstance(traces, list) else None
