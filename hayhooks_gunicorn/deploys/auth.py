"""Who may call the mutating routes: hayhooks runs uploaded Python, so a deploy call is code execution.

hayhooks itself has no authentication on ``/deploy_files`` (``server/routers/deploy.py``). Here, with
``HAYHOOKS_GUNICORN_ADMIN_TOKEN`` set, these routes require ``Authorization: Bearer <token>`` and the token alone
decides. Without it they answer only calls made on this host: the connection must arrive on a loopback address,
and no forwarding header (``Forwarded``, ``X-Forwarded-For``, ``X-Real-IP``) may name another client. A reverse
proxy on the same host connects from loopback too; the header it adds is what tells its remote clients apart.
"""

from __future__ import annotations

import ipaddress
import secrets
from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.datastructures import Headers

from hayhooks_gunicorn.app_context import app_context

TOKEN_ENV = "HAYHOOKS_GUNICORN_ADMIN_TOKEN"
FORWARDING_HEADERS = ("forwarded", "x-forwarded-for", "x-real-ip")

# auto_error=False: a missing or non-Bearer header is answered by the guard with the kit's own message.
bearer_scheme = HTTPBearer(auto_error=False, description=f"The server's {TOKEN_ENV}")

Guard = Callable[..., Awaitable[None]]
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)]


def token_matches(credentials: HTTPAuthorizationCredentials | None, token: str) -> bool:
    """Constant-time: the comparison leaks at most the token's length."""
    given = credentials.credentials if credentials is not None else ""
    return bool(token) and secrets.compare_digest(given.encode(), token.encode())


def bearer_guard(token: str, detail: str) -> Guard:
    """A dependency that answers 401 with *detail* unless the request carries ``Bearer <token>``."""

    async def guard(credentials: Credentials) -> None:
        if not token_matches(credentials, token):
            raise HTTPException(status_code=401, detail=detail, headers={"WWW-Authenticate": "Bearer"})

    return guard


def is_loopback(host: str | None) -> bool:
    """A Unix socket (no host) is local too; ``0.0.0.0``, names and every routable address are not."""
    if host is None or host == "localhost":
        return True
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    mapped = getattr(address, "ipv4_mapped", None)
    return (mapped or address).is_loopback


def local_host(request: Request) -> str | None:
    """The address this connection arrived on (the listening side), as the ASGI server reports it."""
    server = request.scope.get("server")
    return str(server[0]) if server and server[1] is not None else None


def strip_port(node: str) -> str:
    """``[2001:db8::1]:4711`` -> ``2001:db8::1``; ``192.0.2.1:80`` -> ``192.0.2.1``; anything else as it is."""
    node = node.strip().strip('"')
    if node.startswith("["):
        return node[1 : node.find("]")] if "]" in node else node
    if node.count(":") == 1:
        return node.split(":", 1)[0]
    return node


def forwarded_clients(headers: Headers) -> list[str]:
    """Every client address the forwarding headers name (RFC 7239 ``for=``, and the de-facto headers)."""
    clients: list[str] = []
    for value in headers.getlist("forwarded"):
        for element in value.split(","):
            for pair in element.split(";"):
                key, _, node = pair.partition("=")
                if key.strip().lower() == "for":
                    clients.append(strip_port(node))
    for name in ("x-forwarded-for", "x-real-ip"):
        for value in headers.getlist(name):
            clients.extend(strip_port(node) for node in value.split(",") if node.strip())
    return clients


async def require_admin(request: Request, credentials: Credentials) -> None:
    """Dependency of every mutating route; runs before the route's own work, so a refused call writes nothing."""
    admin_token = app_context(request.app).settings.admin_token
    token = admin_token.get_secret_value() if admin_token else ""
    if token:
        if not token_matches(credentials, token):
            detail = f"This call needs 'Authorization: Bearer <token>' with the server's {TOKEN_ENV}"
            raise HTTPException(status_code=401, detail=detail, headers={"WWW-Authenticate": "Bearer"})
        return
    host = local_host(request)
    if not is_loopback(host):
        detail = (
            f"Deploy calls are refused on the non-loopback address {host} because {TOKEN_ENV} is not set. "
            f"Set {TOKEN_ENV} on the server and send 'Authorization: Bearer <token>', or call it on 127.0.0.1."
        )
        raise HTTPException(status_code=403, detail=detail)
    remote = [client for client in forwarded_clients(request.headers) if not is_loopback(client)]
    if remote:
        detail = (
            f"Deploy calls forwarded for the remote client {remote[0]} (a reverse proxy) are refused because "
            f"{TOKEN_ENV} is not set. Set {TOKEN_ENV} on the server and send 'Authorization: Bearer <token>'."
        )
        raise HTTPException(status_code=403, detail=detail)
