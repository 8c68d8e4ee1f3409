"""Count and time pipeline calls by pipeline: ``POST /{name}/run`` and the OpenAI-compatible routes.

The OpenAI-compatible routes (``fastapi_openai_compat``: ``/v1/chat/completions``, ``/chat/completions``,
``/v1/responses``, ``/responses``) name the pipeline in the ``model`` field of the JSON body, so for those the
body is read here and replayed to the app unchanged. Only names of pipelines this worker serves become label
values: a label per arbitrary URL or model string would let any client grow the metrics without bound.
"""

from __future__ import annotations

import asyncio
import json
import re
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hayhooks_gunicorn.metrics.instruments import instruments

RUN_PATH = re.compile(r"/([^/]+)/run")
MODEL_PATHS = frozenset({"/v1/chat/completions", "/chat/completions", "/v1/responses", "/responses"})
# nginx's code for a client that went away before the response started
CLIENT_CLOSED = 499


def route_path(scope: Scope) -> str:
    """The path the router matches: without hayhooks' ``HAYHOOKS_ROOT_PATH`` prefix, as Starlette strips it."""
    path, root = str(scope["path"]), str(scope.get("root_path", ""))
    return path[len(root) :] if root and path.startswith(root) else path


def served(name: str | None) -> bool:
    from hayhooks.server.pipelines.registry import registry

    return name is not None and registry.get(name) is not None


async def read_body(receive: Receive) -> list[Message]:
    """Every message up to the end of the request body (or the client's disconnect)."""
    messages: list[Message] = []
    while True:
        message = await receive()
        messages.append(message)
        if message["type"] != "http.request" or not message.get("more_body", False):
            return messages


def model_of(messages: list[Message]) -> str | None:
    body = b"".join(m.get("body", b"") for m in messages if m["type"] == "http.request")
    try:
        model = json.loads(body).get("model")
    except (ValueError, AttributeError):
        return None
    return model if isinstance(model, str) else None


def replay(messages: list[Message], receive: Receive) -> Receive:
    """A ``receive`` that hands out the buffered messages first, then whatever the client sends next."""
    pending = list(messages)

    async def replayed() -> Message:
        return pending.pop(0) if pending else await receive()

    return replayed


class PipelineMetricsMiddleware:
    """Pure ASGI: a streaming response is counted when its last chunk is sent, with the status it started with."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        path = route_path(scope)
        name = None
        if path in MODEL_PATHS:
            messages = await read_body(receive)
            name, receive = model_of(messages), replay(messages, receive)
        elif match := RUN_PATH.fullmatch(path):
            name = match.group(1)
        if not served(name):
            await self.app(scope, receive, send)
            return
        await self._measure(str(name), scope, receive, send)

    async def _measure(self, name: str, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        status: int | None = None
        recorded = False

        def record(code: int) -> None:
            nonlocal recorded
            if recorded:
                return
            recorded = True
            metrics = instruments()
            metrics.requests.labels(name, str(code)).inc()
            metrics.request_duration.labels(name).observe(time.perf_counter() - started)

        async def measured_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body" and not message.get("more_body", False):
                # Counted before the last chunk leaves: a client holding its whole response finds it counted.
                record(status or 500)
            await send(message)

        try:
            await self.app(scope, receive, measured_send)
        except asyncio.CancelledError:
            record(status or CLIENT_CLOSED)
            raise
        except Exception:
            # Starlette's ServerErrorMiddleware, outside this one, answers 500 unless a response had started.
            record(status or 500)
            raise
        record(status or 500)
