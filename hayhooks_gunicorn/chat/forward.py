"""The worker's side of the chat UI: forward ``/chat`` and ``/public`` traffic, HTTP and websocket, to the host.

Requests keep their path, query and headers (hop-by-hop headers and those the ``Connection`` header names
excepted, RFC 9110 section 7.6.1), so the host sees what the worker saw; the ``Host`` header too, which engine.io's
same-origin check compares with ``Origin``. The client picks nothing else: the upstream path is the request's path,
and a ``Host`` that is not a host (``x/api?``, ``[::1``) or a path with dot segments is answered 400 here, before
anything reaches the host. Bodies stream both ways: an engine.io long poll is an HTTP response that the host holds
open until it has packets.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hayhooks_gunicorn.chat.upstream import BadRequest, end_to_end, host_header, send_bad_request, target
from hayhooks_gunicorn.chat.websocket import forward_websocket

UNAVAILABLE = b'{"detail":"The chat UI is restarting; try again in a moment"}'
# Connections to the host one worker holds at most; a long poll holds one for up to engine.io's ping interval
# (25 s), so a request past the bound waits up to POOL_WAIT for one, then is answered 503.
MAX_CONNECTIONS = 256
POOL_WAIT = 10.0


class ClientGone(Exception):
    """The client went away while its request body was being forwarded."""


class ChatForwarder:
    """An ASGI app that hands every request it gets to the chat host listening on *socket_path*."""

    def __init__(self, socket_path: Path) -> None:
        self.socket_path = socket_path
        self._client: httpx.AsyncClient | None = None

    def client(self) -> httpx.AsyncClient:
        # Created in the worker's event loop, on first use; idle connections beyond 20 are closed. The limits go to
        # the transport: a client given its own transport does not apply its ``limits`` to it (httpx ``_client.py``).
        if self._client is None:
            limits = httpx.Limits(max_connections=MAX_CONNECTIONS, max_keepalive_connections=20)
            self._client = httpx.AsyncClient(
                transport=httpx.AsyncHTTPTransport(uds=str(self.socket_path), limits=limits),
                timeout=httpx.Timeout(None, connect=5.0, pool=POOL_WAIT),
            )
        return self._client

    async def aclose(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            try:
                target(scope), host_header(scope)
            except BadRequest as e:
                await send_bad_request(send, str(e))
                return
            await self.forward_http(scope, receive, send)
        elif scope["type"] == "websocket":
            await forward_websocket(self.socket_path, scope, receive, send)

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
        headers = end_to_end(scope["headers"])
        client = self.client()
        request = client.build_request(scope["method"], "http://chat" + target(scope), headers=headers, content=body)
        try:
            response = await client.send(request, stream=True)
        except httpx.TransportError:
            await send_unavailable(send)
            return
        try:
            response_headers = end_to_end(response.headers.raw)
            await send({"type": "http.response.start", "status": response.status_code, "headers": response_headers})
            async for chunk in response.aiter_raw():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        except httpx.TransportError:
            pass  # the host went away mid-response: the client sees the response cut short, as it would directly
        finally:
            await response.aclose()


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


def close_at_shutdown(app: Any, forwarder: ChatForwarder) -> None:
    """Close the forwarder's connections when the app's lifespan ends; a mounted app gets no lifespan of its own.

    Call it after the app's lifespan is final: it wraps the one in place.
    """
    inner = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(app: ASGIApp) -> AsyncIterator[Any]:
        async with inner(app) as state:
            try:
                yield state
            finally:
                await forwarder.aclose()

    app.router.lifespan_context = lifespan
