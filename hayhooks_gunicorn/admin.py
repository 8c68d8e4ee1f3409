"""Who may call the mutating routes: hayhooks runs uploaded Python, so a deploy call is code execution.

hayhooks itself has no authentication on ``/deploy_files`` (``server/routers/deploy.py``). Here, with
``HAYHOOKS_GUNICORN_ADMIN_TOKEN`` set, these routes require ``Authorization: Bearer <token>``; without it they
answer only requests that reach the server on a loopback address, so the ``hayhooks`` CLI keeps working locally.
"""

from __future__ import annotations

import hmac
import ipaddress

from fastapi import HTTPException, Request

TOKEN_ENV = "HAYHOOKS_GUNICORN_ADMIN_TOKEN"


def is_loopback(host: str | None) -> bool:
    """A Unix socket (no host) is local too; ``0.0.0.0`` and every routable address are not."""
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


def bearer_token(request: Request) -> str:
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    return value.strip() if scheme.lower() == "bearer" else ""


async def require_admin(request: Request) -> None:
    """Dependency of every mutating route; runs before the route's own work."""
    token: str | None = request.app.state.kit_admin_token
    if token:
        # Constant-time: the comparison leaks at most the token's length.
        if not hmac.compare_digest(bearer_token(request).encode(), token.encode()):
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
