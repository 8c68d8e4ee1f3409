"""The worker's side of the chat UI: forward ``/chat`` and ``/public`` traffic, HTTP and websocket, to the host.

Requests keep their path, query and headers (hop-by-hop headers excepted, RFC 9110 section 7.6.1), so the host
sees what the worker saw; the ``Host`` header too, which engine.io's same-origin check compares with ``Origin``.
Bodies stream both ways: an engine.io long poll is an HTTP response that the host holds open until it has packets.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
from starlette.types import Message, Receive, Scope, Send

from hayhooks_gunicorn.chat.websocket import HOP_BY_HOP, forward_websocket

UNAVAILABLE = b'{"detail":"The chat UI is restarting; try again in a moment"}'


class ClientGone(Exception):
    """The client went away while its request body was being forwarded."""


class ChatForwarder:
    """An ASGI app that hands every request it gets to the chat host listening on *socket_path*."""

    def __init__(self, socket_path: Path) -> None:
        self.socket_path = socket_path
        self._client: httpx.AsyncClient | None = None

    def client(self) -> httpx.AsyncClient:
        # Created in the worker's event loop, on first use. A long poll holds its connection for up to engine.io's
        # ping interval (25 s), so the pool has no upper bound; idle connections beyond 20 are closed.
        if self._client is None:
            self._client = httpx.AsyncClient(
                transport=httpx.AsyncHTTPTransport(uds=str(self.socket_path)),
                timeout=httpx.Timeout(None, connect=5.0),
                limits=httpx.Limits(max_connections=None, max_keepalive_connections=20),
            )
        return self._client

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await self.forward_http(scope, receive, send)
        elif scope["type"] == "websocket":
            await forward_websocket(self.socket_path, target(scope), scope, receive, send)

    async def forward_http(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Forward one request; stop as soon as the client leaves. An engine.io long poll would otherwise wait for
        the host's next packet (up to its 25 s ping interval) for nobody, and hold a stopping worker that long."""
        body_sent = asyncio.Event()
        exchange = asyncio.ensure_future(self.exchange(scope, request_body(receive, body_sent), send))
        left = asyncio.ensure_future(client_left(receive, body_sent))
        await asyncio.wait({exchange, left}, return_when=asyncio.FIRST_COMPLETED)
        for task in (exchange, left):
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError, ClientGone):
            await exchange
        with contextlib.suppress(asyncio.CancelledError):
            await left

    async def exchange(self, scope: Scope, body: AsyncIterator[bytes], send: Send) -> None:
        headers = [(k, v) for k, v in scope["headers"] if k.lower() not in HOP_BY_HOP]
        client = self.client()
        request = client.build_request(scope["method"], "http://chat" + target(scope), headers=headers, content=body)
        try:
            response = await client.send(request, stream=True)
        except httpx.TransportError:
            await send_unavailable(send)
            return
        try:
            response_headers = [(k, v) for k, v in response.headers.raw if k.lower() not in HOP_BY_HOP]
            await send({"type": "http.response.start", "status": response.status_code, "headers": response_headers})
            async for chunk in response.aiter_raw():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        except httpx.TransportError:
            pass  # the host went away mid-response: the client sees the response cut short, as it would directly
        finally:
            await response.aclose()


def target(scope: Scope) -> str:
    """The request target as the client sent it: the raw path (under any mount), then the query."""
    path: bytes = scope.get("raw_path") or scope["path"].encode()
    query: bytes = scope.get("query_string", b"")
    return (path + (b"?" + query if query else b"")).decode("latin-1")


async def request_body(receive: Receive, sent: asyncio.Event) -> AsyncIterator[bytes]:
    while True:
        message: Message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone
        yield message.get("body", b"")
        if not message.get("more_body", False):
            sent.set()
            return


async def client_left(receive: Receive, body_sent: asyncio.Event) -> None:
    """Return once the client has disconnected; ``receive`` is read here only after the body has been read."""
    await body_sent.wait()
    while (await receive())["type"] != "http.disconnect":
        pass


async def send_unavailable(send: Send) -> None:
    headers = [(b"content-type", b"application/json"), (b"retry-after", b"1")]
    await send({"type": "http.response.start", "status": 503, "headers": headers})
    await send({"type": "http.response.body", "body": UNAVAILABLE})


def install_forwarder(app: Any, socket_path: Path, chat_path: str) -> ChatForwarder:
    """Mount the forwarder where hayhooks mounts its UI (``HAYHOOKS_CHAINLIT_PATH``) and its assets (``/public``)."""
    forwarder = ChatForwarder(socket_path)
    app.mount(chat_path, forwarder, name="chainlit")
    app.mount("/public", forwarder, name="chainlit_public")
    return forwarder
