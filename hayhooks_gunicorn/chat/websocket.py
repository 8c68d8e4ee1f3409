"""Forward one websocket between a client and the chat host, frame by frame, in both directions.

The connection to the host is opened before the client's handshake is answered: a host that is not running
makes the handshake fail (uvicorn answers 403 to a close before accept) and socket.io's client falls back or retries.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from starlette.types import Receive, Scope, Send
from websockets.asyncio.client import ClientConnection, unix_connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from hayhooks_gunicorn.chat.upstream import BadRequest, handshake_headers, host_header, send_bad_request, target

OPEN_TIMEOUT = 5.0


async def forward_websocket(socket_path: Path, scope: Scope, receive: Receive, send: Send) -> None:
    if (await receive())["type"] != "websocket.connect":
        return
    try:
        # The URI carries the client's Host to the host (websockets sends its authority as Host); checked to be a
        # host and port only, so the path is the request's own.
        uri = f"ws://{host_header(scope)}{target(scope)}"
    except BadRequest as e:
        if "websocket.http.response" in scope.get("extensions", {}):
            await send_bad_request(send, str(e), prefix="websocket.http")
        else:
            await send({"type": "websocket.close", "code": 1008})  # before accept: uvicorn answers 403
        return
    try:
        upstream = await unix_connect(
            str(socket_path),
            uri=uri,
            additional_headers=handshake_headers(scope),
            subprotocols=scope.get("subprotocols") or None,
            user_agent_header=None,  # the client's own User-Agent is among the forwarded headers
            compression=None,
            ping_interval=None,  # the client and the host run their own pings (engine.io's, at least)
            max_size=None,
            open_timeout=OPEN_TIMEOUT,
        )
    except (OSError, InvalidHandshake, TimeoutError):
        await send({"type": "websocket.close", "code": 1011})
        return
    async with upstream:
        await send({"type": "websocket.accept", "subprotocol": upstream.subprotocol})
        to_host = asyncio.create_task(client_to_host(receive, upstream))
        to_client = asyncio.create_task(host_to_client(upstream, send))
        _, pending = await asyncio.wait({to_host, to_client}, return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            task.cancel()
        # Either side may have gone mid-send (uvicorn's ClientDisconnected, websockets' ConnectionClosed): the
        # forward is over either way, and each task's outcome is collected so none is reported as unretrieved.
        await asyncio.gather(to_host, to_client, return_exceptions=True)


async def client_to_host(receive: Receive, upstream: ClientConnection) -> None:
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            await upstream.close(message.get("code", 1000))
            return
        if message["type"] == "websocket.receive":
            data = message.get("text")
            try:
                await upstream.send(data if data is not None else message.get("bytes", b""))
            except ConnectionClosed:
                return


async def host_to_client(upstream: ClientConnection, send: Send) -> None:
    try:
        async for data in upstream:
            if isinstance(data, str):
                await send({"type": "websocket.send", "text": data})
            else:
                await send({"type": "websocket.send", "bytes": data})
    except ConnectionClosed:
        pass
    code = upstream.close_code
    await send({"type": "websocket.close", "code": code if code and code not in (1005, 1006) else 1000})
