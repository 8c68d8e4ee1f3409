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


async def socketio_chat(base_url: str, transport: str, text: str, timeout: float = 30.0) -> dict[str, str]:
    """Open a chat with python-socketio over *transport*, send *text*, and return the messages' contents once the
    pipeline's answer ``Echo: <text>`` has arrived. Connections are not reused, so requests spread over workers."""
    import aiohttp
    import socketio

    outputs: dict[str, str] = {}
    connected, answered = asyncio.Event(), asyncio.Event()

    def check() -> None:
        for output in outputs.values():
            if "Connected to" in output:
                connected.set()
            if f"Echo: {text}" in output:
                answered.set()

    def message(step: dict[str, str]) -> None:
        outputs[step["id"]] = step.get("output", "")
        check()

    def token(data: dict[str, str]) -> None:
        outputs[data["id"]] = outputs.get(data["id"], "") + data["token"]
        check()

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as session:
        sio = socketio.AsyncClient(http_session=session, reconnection=False)
        sio.on("new_message", message)
        sio.on("update_message", message)
        sio.on("stream_token", token)
        await sio.connect(base_url, socketio_path=SOCKET_PATH, transports=[transport], auth=auth_payload())
        try:
            await sio.emit("connection_successful")
            await asyncio.wait_for(connected.wait(), timeout)
            sent = {
                "id": str(uuid.uuid4()),
                "threadId": "",
                "name": "User",
                "type": "user_message",
                "output": text,
                "createdAt": datetime.now(timezone.utc).isoformat(),
            }
            await sio.emit("client_message", {"message": sent, "fileReferences": []})
            await asyncio.wait_for(answered.wait(), timeout)
        finally:
            await sio.disconnect()
    return outputs
