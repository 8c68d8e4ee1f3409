"""The master's side of the lifecycle: a per-instance control socket, ready markers, and the readiness notice."""

from __future__ import annotations

from typing import Any

from hayhooks_gunicorn import instance, readiness
from hayhooks_gunicorn.errors import KitError


def start_instance(server: Any) -> instance.Instance:
    """In ``on_starting``: give this master its own control socket unless one was configured, and hold back
    gunicorn's early ``READY=1`` (see ``readiness``)."""
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
    if (current := instance.current()) is not None:
        readiness.announce_when_ready(server, current)


def child_exit(server: Any, worker: Any) -> None:
    if (current := instance.current()) is not None:
        current.forget(worker.pid)


def on_exit(server: Any) -> None:
    if (current := instance.current()) is not None:
        current.remove()
