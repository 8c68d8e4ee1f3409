"""Clients of hayhooks' Chainlit UI for the tests: raw engine.io polling sessions, and a python-socketio chat."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from datetime import datetime, timezone

import httpx

WORKER_HEADER = "x-hayhooks-worker"
SOCKET_PATH = "/chat/ws/socket.io/"


def auth_payload() -> dict[str, object]:
    """What Chainlit's web client sends with its socket.io CONNECT (``chainlit/socket.py::connect`` reads it)."""
    return {"clientType": "webapp", "sessionId": str(uuid.uuid4()), "threadId": None, "userEnv": "{}"}


def polling_session(base_url: str, expect: str, timeout: float = 30.0) -> list[str]:
    """One engine.io v4 polling session, every request on a fresh connection: open, CONNECT, start the chat, and
    poll until a packet holds *expect*. Returns the worker that answered each request; raises when a request fails.
    """
    workers: list[str] = []
    deadline = time.monotonic() + timeout

    def call(method: str, query: str, body: str | None = None) -> str:
        with httpx.Client(base_url=base_url, timeout=timeout) as client:
            response = client.request(method, f"{SOCKET_PATH}?EIO=4&transport=polling{query}", content=body)
        workers.append(response.headers.get(WORKER_HEADER, "?"))
        if time.monotonic() > deadline:
            raise AssertionError(f"no {expect!r} within {timeout}s")
        if response.status_code != 200:
            raise AssertionError(f"{method} {query}: {response.status_code} {response.text[:200]}")
        return response.text

    opened = call("GET", "")
    assert opened.startswith("0"), opened
    sid = json.loads(opened[1:])["sid"]
    connect = call("POST", f"&sid={sid}", "40" + json.dumps(auth_payload()))
    assert connect.lower() == "ok", connect
    received = ""
    while not received.startswith("40"):  # the CONNECT acknowledgement
        received = call("GET", f"&sid={sid}")
    assert call("POST", f"&sid={sid}", '42["connection_successful"]').lower() == "ok"
    while expect not in received:
        packets = call("GET", f"&sid={sid}")
        if "\x1e2" in "\x1e" + packets:  # a PING from the server: answer it, as a client must
            call("POST", f"&sid={sid}", "3")
        received += packets
    call("POST", f"&sid={sid}", "41")  # DISCONNECT
    return workers


class SocketIOChat:
    """A chat through python-socketio, as Chainlit's web client holds one: it announces itself on every (re)connect
    with the same session id, so a reconnect resumes the session the host keeps. Connections are not reused, so
    polling requests spread over the workers."""

    def __init__(self, base_url: str, transport: str, timeout: float = 30.0) -> None:
        self.base_url, self.transport, self.timeout = base_url, transport, timeout
        self.outputs: dict[str, str] = {}
        self.connects = 0
        self._changed = asyncio.Event()
        self._auth = auth_payload()

    async def __aenter__(self) -> SocketIOChat:
        import aiohttp
        import socketio

        self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True))
        self.sio = socketio.AsyncClient(http_session=self._session, reconnection_delay=0.2)
        self.sio.on("connect", self._connected)
        self.sio.on("new_message", self._message)
        self.sio.on("update_message", self._message)
        self.sio.on("stream_token", self._token)
        await self.sio.connect(self.base_url, socketio_path=SOCKET_PATH, transports=[self.transport], auth=self._auth)
        await self.wait_for("Connected to")
        return self

    async def __aexit__(self, *exc: object) -> None:
        # Not sio.disconnect(): over polling it waits for the pending long poll, which the server answers only at
        # its next ping (25 s), with hayhooks alone as under the kit.
        await self.sio.eio.disconnect(abort=True)
        await self._session.close()

    async def _connected(self) -> None:
        self.connects += 1
        await self.sio.emit("connection_successful")

    def _message(self, step: dict[str, str]) -> None:
        self.outputs[step["id"]] = step.get("output", "")
        self._changed.set()

    def _token(self, data: dict[str, str]) -> None:
        self.outputs[data["id"]] = self.outputs.get(data["id"], "") + data["token"]
        self._changed.set()

    def count(self, text: str) -> int:
        return sum(1 for output in self.outputs.values() if text in output)

    async def wait_for(self, text: str) -> None:
        async def seen() -> None:
            while not self.count(text):
                self._changed.clear()
                await self._changed.wait()

        await asyncio.wait_for(seen(), self.timeout)

    async def say(self, text: str) -> None:
        """Send *text* and wait for the pipeline's answer ``Echo: <text>``."""
        sent = {
            "id": str(uuid.uuid4()),
            "threadId": "",
            "name": "User",
            "type": "user_message",
            "output": text,
            "createdAt": datetime.now(timezone.utc).isoformat(),
        }
        await self.sio.emit("client_message", {"message": sent, "fileReferences": []})
        await self.wait_for(f"Echo: {text}")
