"""Which worker answered: ``X-Hayhooks-Worker: <hostname>:<pid>`` on every response."""

from __future__ import annotations

import os
import socket

from starlette.types import ASGIApp, Message, Receive, Scope, Send

HEADER = "X-Hayhooks-Worker"


def worker_id() -> str:
    """Computed per call: an app built before fork (``preload_app``) must still name the answering process."""
    return f"{socket.gethostname()}:{os.getpid()}"


class WorkerHeaderMiddleware:
    """Pure ASGI, so streaming responses pass through untouched."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        value = worker_id().encode()

        async def send_with_header(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), (HEADER.lower().encode(), value)]
            await send(message)

        await self.app(scope, receive, send_with_header)
