"""Which worker answered: ``X-Hayhooks-Worker: <hostname>:<pid>`` on every response."""

from __future__ import annotations

import os
import socket

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hayhooks_gunicorn.settings import WORKER_SLOT_ENV

HEADER = "X-Hayhooks-Worker"
HEADER_KEY = HEADER.lower().encode()


_cached: dict[int, str] = {}


def worker_id() -> str:
    """Keyed by pid: an app built before fork (``preload_app``) must still name the answering process."""
    pid = os.getpid()
    if pid not in _cached:
        _cached[pid] = f"{socket.gethostname()}:{pid}"
    return _cached[pid]


def worker_slot() -> int | None:
    """This worker's slot (``master/slots``), ``None`` outside a kit master."""
    value = os.environ.get(WORKER_SLOT_ENV, "")
    return int(value) if value.isdigit() else None


class WorkerHeaderMiddleware:
    """Pure ASGI, so streaming responses pass through untouched."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        header = (HEADER_KEY, worker_id().encode())

        async def send_with_header(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), header]
            await send(message)

        await self.app(scope, receive, send_with_header)
