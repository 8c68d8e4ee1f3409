"""What the chat forwarders send on to the host, and what they refuse: shared by HTTP (``forward``) and
websocket (``websocket``) forwarding, so neither imports the other.

The client picks nothing but its own request: the upstream path is the request's path (dot segments refused), the
``Host`` is a host and port and nothing more, and hop-by-hop headers, with those the ``Connection`` header names,
stay on the client's connection (RFC 9110 section 7.6.1).
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Iterable
from urllib.parse import unquote

from starlette.types import Scope, Send

Header = tuple[bytes, bytes]
HOP_BY_HOP = frozenset(
    {b"connection", b"keep-alive", b"proxy-connection", b"te", b"trailer", b"transfer-encoding", b"upgrade"}
)
# The websocket handshake's own headers: the connection to the host has its own key, version and extensions.
HANDSHAKE = HOP_BY_HOP | {
    b"host",
    b"sec-websocket-key",
    b"sec-websocket-version",
    b"sec-websocket-extensions",
    b"sec-websocket-protocol",
}
# RFC 9110 section 7.2: uri-host [":" port], the host a name or an IP literal in brackets; no path, query or user.
HOST = re.compile(r"(?:[A-Za-z0-9._~-]+|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?")


class BadRequest(Exception):
    """A request the forwarder will not pass on: the message says why, the client gets a 400."""


def target(scope: Scope) -> str:
    """The request target as the client sent it: the raw path (under any mount), then the query.

    Raises :class:`BadRequest` for a path with ``.`` or ``..`` segments (percent-encoded too): the host's router
    does not normalise them, and whatever sits between a client and the host might.
    """
    path: bytes = scope.get("raw_path") or scope["path"].encode()
    if any(segment in (".", "..") for segment in unquote(path.decode("latin-1")).split("/")):
        raise BadRequest("The chat path must not contain '.' or '..' segments")
    query: bytes = scope.get("query_string", b"")
    return (path + (b"?" + query if query else b"")).decode("latin-1")


def end_to_end(headers: Iterable[Header], drop: frozenset[bytes] = HOP_BY_HOP) -> list[Header]:
    """*headers* without the hop-by-hop ones and those the ``Connection`` header names (RFC 9110 section 7.6.1)."""
    headers = list(headers)
    named = {
        token.strip().lower().encode("latin-1")
        for key, value in headers
        if key.lower() == b"connection"
        for token in value.decode("latin-1").split(",")
    }
    return [(k, v) for k, v in headers if k.lower() not in drop and k.lower() not in named]


async def send_bad_request(send: Send, detail: str, prefix: str = "http") -> None:
    """A 400; *prefix* ``websocket`` answers a handshake (ASGI's ``websocket.http.response`` extension)."""
    body = json.dumps({"detail": detail}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": f"{prefix}.response.start", "status": 400, "headers": headers})
    await send({"type": f"{prefix}.response.body", "body": body})


def handshake_headers(scope: Scope) -> list[tuple[str, str]]:
    return [(k.decode("latin-1"), v.decode("latin-1")) for k, v in end_to_end(scope["headers"], HANDSHAKE)]


def host_header(scope: Scope) -> str:
    """The request's one ``Host``, checked to be a host and port and nothing more; raises :class:`BadRequest`."""
    hosts: list[str] = [value.decode("latin-1") for key, value in scope["headers"] if key.lower() == b"host"]
    if not hosts:
        return "localhost"
    host = hosts[0]
    if len(hosts) > 1 or not HOST.fullmatch(host):
        raise BadRequest(f"Malformed Host header {host[:100]!r}")
    if host.startswith("["):
        try:
            ipaddress.IPv6Address(host[1 : host.index("]")])
        except ValueError as e:
            raise BadRequest(f"Malformed Host header {host[:100]!r}") from e
    return host
