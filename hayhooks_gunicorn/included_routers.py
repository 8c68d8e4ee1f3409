"""FastAPI's layout of included routers in ``app.router.routes``, and replacing one router by another in its slot.

Recent FastAPI (0.165 here) keeps each included router as one entry of the app's route list
(``routing._IncludedRouter``) pointing at the router it was given (hayhooks' module-level routers, which the kit
never changes in place). Older FastAPI copied the router's routes themselves into the list, as plain routes. The
kit's deploy routes (``deploys.routes``) and merged ``/traces`` (``traces.route``) swap hayhooks' routers for
their own in the same slot, so the order in which routes match is the one hayhooks built.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, FastAPI
from starlette.routing import BaseRoute


def included_router(entry: BaseRoute) -> APIRouter | None:
    """The router an entry of the app's route list stands for; ``None`` for a plain route."""
    router: APIRouter | None = getattr(entry, "original_router", None)
    return router


def include_options(entry: BaseRoute) -> dict[str, Any]:
    """The ``include_router`` arguments an included router was given (prefix, tags, dependencies)."""
    context = getattr(entry, "include_context", None)
    return {
        "prefix": getattr(context, "prefix", ""),
        "tags": list(getattr(context, "tags", []) or []),
        "dependencies": list(getattr(context, "dependencies", []) or []),
    }


def include_in_slot(app: FastAPI, router: APIRouter, index: int | None, **options: Any) -> None:
    """Include *router* (with ``include_router``'s *options*) and move the entry that adds into slot *index* of the
    route list, replacing what stood there; ``None``: leave it last."""
    routes = app.router.routes
    app.include_router(router, **options)
    entry = routes.pop()
    if index is None:
        routes.append(entry)
    else:
        routes[index] = entry
