"""Who may call the kit's routes, by role: reading the server's state, or changing its code.

hayhooks itself has no authentication on ``/deploy_files`` (``server/routers/deploy.py``), and a deploy call is code
execution. Two tokens, two roles:

- ``HAYHOOKS_GUNICORN_ADMIN_TOKEN`` (role ``admin``): deploy and undeploy calls;
- ``HAYHOOKS_GUNICORN_READ_TOKEN`` (role ``read``): ``/cluster``, ``/metrics`` in ``token`` mode and the CLI's read
  commands; the admin token is accepted there too, so one token can still do everything.

When a role has a token, ``Authorization: Bearer <token>`` alone decides. Without one, a call is answered only when
it was made on this host: it must arrive on a loopback address or a unix socket, and no forwarding header
(``Forwarded``, ``X-Forwarded-For``, ``X-Real-IP``) may name another client. A reverse proxy on the same host
connects from loopback too; the header it adds is what tells its remote clients apart. A request whose listening
address is unknown (no ``scope["server"]``) is not local: the rule fails closed.
"""

from __future__ import annotations

import ipaddress
import secrets
from collections.abc import Awaitable, Callable
from enum import Enum
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.datastructures import Headers

from hayhooks_gunicorn.app_context import app_context
from hayhooks_gunicorn.settings import KitSettings

TOKEN_ENV = "HAYHOOKS_GUNICORN_ADMIN_TOKEN"
READ_TOKEN_ENV = "HAYHOOKS_GUNICORN_READ_TOKEN"

# auto_error=False: a missing or non-Bearer header is answered by the guard with the kit's own message.
bearer_scheme = HTTPBearer(auto_error=False, description=f"{READ_TOKEN_ENV} (reads) or {TOKEN_ENV} (everything)")

Guard = Callable[..., Awaitable[None]]
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)]


class Role(str, Enum):
    READ = "read"
    ADMIN = "admin"


def role_tokens(settings: KitSettings, role: Role) -> list[str]:
    """The tokens that grant *role*: the admin token always, the read token for reads."""
    secrets_ = [settings.admin_token] + ([settings.read_token] if role is Role.READ else [])
    return [secret.get_secret_value() for secret in secrets_ if secret is not None and secret.get_secret_value()]


def token_matches(credentials: HTTPAuthorizationCredentials | None, token: str) -> bool:
    """Constant-time: the comparison leaks at most the token's length."""
    given = credentials.credentials if credentials is not None else ""
    return bool(token) and secrets.compare_digest(given.encode(), token.encode())


def refuse_without_token(role: Role, what: str) -> HTTPException:
    names = TOKEN_ENV if role is Role.ADMIN else f"{READ_TOKEN_ENV} or {TOKEN_ENV}"
    detail = f"{what} needs 'Authorization: Bearer <token>' with the server's {names}"
    return HTTPException(status_code=401, detail=detail, headers={"WWW-Authenticate": "Bearer"})


def require(role: Role, what: str, local_without_token: bool = True) -> Guard:
    """A dependency that lets a call through when it carries a token of *role*; when the server has none, only a call
    made on this host (or none at all, unless *local_without_token*). Runs before the route's own work."""

    async def guard(request: Request, credentials: Credentials) -> None:
        tokens = role_tokens(app_context(request.app).settings, role)
        if tokens:
            if not any(token_matches(credentials, token) for token in tokens):
                raise refuse_without_token(role, what)
            return
        if not local_without_token:
            raise refuse_without_token(role, what)
        refuse_remote(request, role, what)

    return guard


def is_loopback(host: str) -> bool:
    """``0.0.0.0``, names and every routable address are not."""
    if host == "localhost":
        return True
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    mapped = getattr(address, "ipv4_mapped", None)
    return (mapped or address).is_loopback


def local_host(request: Request) -> str | None:
    """Where this connection arrived (the listening side) if it was on this host: a loopback address, or ``"unix"``
    for a unix socket; ``None`` when it was not, or nothing says (the rule fails closed)."""
    server = request.scope.get("server")
    if not server:
        return None
    if server[1] is None:  # a unix socket: only this host's processes reach it (its mode says which)
        return "unix"
    host = str(server[0])
    return host if is_loopback(host) else None


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


def refuse_remote(request: Request, role: Role, what: str) -> None:
    """Without a token: 403 unless the call arrived on this host and no forwarding header names a remote client."""
    env = TOKEN_ENV if role is Role.ADMIN else f"{READ_TOKEN_ENV} (or {TOKEN_ENV})"
    how = f"Set {env} on the server and send 'Authorization: Bearer <token>'"
    if local_host(request) is None:
        server = request.scope.get("server")
        where = f"the non-loopback address {server[0]}" if server else "an address the server cannot tell"
        detail = f"{what} is refused on {where} because {env} is not set. {how}, or call it on 127.0.0.1."
        raise HTTPException(status_code=403, detail=detail)
    remote = [client for client in forwarded_clients(request.headers) if not is_loopback(client)]
    if remote:
        detail = (
            f"{what} forwarded for the remote client {remote[0]} (a reverse proxy) is refused because {env} is not "
            f"set. {how}."
        )
        raise HTTPException(status_code=403, detail=detail)


# Dependency of every mutating route; runs before the route's own work, so a refused call writes nothing.
require_admin = require(Role.ADMIN, "A deploy call")
# /cluster: worker PIDs, paths and load errors (which may quote secrets) are for the operator.
require_read = require(Role.READ, "/cluster")
