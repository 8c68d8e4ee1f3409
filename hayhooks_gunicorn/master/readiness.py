"""The master says "ready" (log line, and ``READY=1`` to systemd) only once every worker has loaded the directory.

gunicorn sends ``READY=1`` from ``Arbiter.start()`` (``gunicorn/arbiter.py``) before any worker is forked, so a
``Type=notify`` unit would count as started, and units ordered after it would start, while requests still queue
behind pipeline loading. ``take_notify_socket()`` runs in ``on_starting``, before that send: it takes
``NOTIFY_SOCKET`` out of the environment, which makes gunicorn's ``sd_notify()`` a no-op (``gunicorn/systemd.py``
reads the variable on each call) and keeps workers from inheriting it. A thread in the master then compares its
worker table with the workers' ready markers (``instance.py``) and sends ``READY=1`` itself, from the main PID, so
the unit needs no ``NotifyAccess=all``.
"""

from __future__ import annotations

import os
import socket
import threading
from typing import Any

from hayhooks_gunicorn.master.instance import Instance
from hayhooks_gunicorn.polling import poll_until

_notify_socket: str | None = None


def take_notify_socket() -> None:
    global _notify_socket
    _notify_socket = os.environ.pop("NOTIFY_SOCKET", None) or _notify_socket


def sd_notify(state: str) -> bool:
    """Send *state* to systemd's notification socket; False when not run by systemd or the send failed."""
    address = _notify_socket
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall(state.encode())
    except OSError:
        return False
    return True


def all_workers_ready(arbiter: Any, instance: Instance) -> int:
    """How many live workers are ready, when that covers the configured number; else 0."""
    live = set(list(arbiter.WORKERS))
    ready = live & instance.ready_pids()
    return len(ready) if live and len(ready) >= arbiter.num_workers else 0


def announce_when_ready(arbiter: Any, instance: Instance, interval: float = 0.1) -> threading.Thread:
    """Start the daemon thread that announces readiness once; it only reads, so forking workers meanwhile is safe."""

    def ready_count() -> int:
        try:
            return all_workers_ready(arbiter, instance)
        except RuntimeError:  # the worker table changed while it was read
            return 0

    def watch() -> None:
        count = poll_until(ready_count, None, interval)
        status = f"{count} workers serve the pipelines directory"
        arbiter.log.info("Ready: %s", status)
        sd_notify(f"READY=1\nSTATUS={status}")

    thread = threading.Thread(target=watch, name="kit-readiness", daemon=True)
    thread.start()
    return thread
