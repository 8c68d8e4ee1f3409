"""Which pipeline names the kit accepts: one URL segment that shadows neither a module nor a server route."""

from __future__ import annotations

import functools
import re
import sys
from importlib.machinery import PathFinder
from pathlib import Path
from types import SimpleNamespace

from fastapi import FastAPI
from starlette.routing import BaseRoute

from hayhooks_gunicorn.errors import InvalidPipelineError
from hayhooks_gunicorn.reload.roots import known_roots, within_roots

NAME_PATTERN = re.compile(r"[A-Za-z0-9_-]+")
# Characters of a pipeline name: on disk the kit adds at most a few (``<name>.yaml``, ``<name>.lock``), and every
# filesystem allows names of 143 bytes or more (255 on most).
MAX_NAME_LENGTH = 128


def check_name(name: str, pipelines_dir: Path, server_routes: list[BaseRoute] | None = None) -> None:
    """Raise :class:`InvalidPipelineError` when *name* cannot be served safely.

    hayhooks loads a wrapper as the top-level package ``<name>`` (``server/utils/module_loader.py``), so a
    pipeline called ``json`` would replace the standard library module for every pipeline in the process.
    """
    if not NAME_PATTERN.fullmatch(name):
        msg = f"Invalid pipeline name {name!r}: use only letters, digits, '_' and '-'"
        raise InvalidPipelineError(msg)
    check_length(name)
    if shadows_module(name, pipelines_dir):
        msg = f"Pipeline name {name!r} shadows the importable Python module {name!r}; rename the pipeline"
        raise InvalidPipelineError(msg)
    if server_routes is not None and shadows_route(name, server_routes):
        msg = f"Pipeline name {name!r} clashes with a server route (/{name}/run is taken); rename the pipeline"
        raise InvalidPipelineError(msg)


def check_length(name: str) -> None:
    if len(name) > MAX_NAME_LENGTH:
        msg = f"Pipeline name {name[:40]!r}... is {len(name)} characters long; the limit is {MAX_NAME_LENGTH}"
        raise InvalidPipelineError(msg)


def shadows_module(name: str, pipelines_dir: Path) -> bool:
    """Whether ``import <name>`` already means something outside the pipelines directory."""
    if name in sys.stdlib_module_names or name in sys.builtin_module_names:
        return True
    root = pipelines_dir.resolve()
    module = sys.modules.get(name)
    if module is not None:
        return not any(_ours(p, root) for p in getattr(module, "__path__", []) or [])
    try:
        return PathFinder.find_spec(name, list(_search_path(root, tuple(sys.path), known_roots()))) is not None
    except (ImportError, ValueError):
        return False


def _ours(path: str, root: Path) -> bool:
    """This directory, or one a swapped link led to before (``roots``)."""
    return _inside(Path(path or "."), root) or within_roots(path)


@functools.lru_cache(maxsize=8)
def _search_path(root: Path, sys_path: tuple[str, ...], roots: frozenset[Path]) -> tuple[str, ...]:
    """``sys.path`` without the pipelines directories: the same for every name of a scan, so worked out once
    (resolving every entry for every name made a scan of 200 pipelines take 200 ms)."""
    return tuple(p for p in sys_path if not _ours(p, root))


def shadows_route(name: str, server_routes: list[BaseRoute]) -> bool:
    """Whether a fixed server route would answer ``POST /<name>/run`` before the pipeline's route."""
    from hayhooks.server.app import _matches_existing_route

    # hayhooks' own check, run against the server's fixed routes only (not the pipelines' run routes).
    # It reads nothing of the app but ``app.router.routes``.
    fixed = SimpleNamespace(router=SimpleNamespace(routes=server_routes))
    return _matches_existing_route(fixed, f"/{name}/run")  # type: ignore[arg-type]


def fixed_routes(app: FastAPI) -> list[BaseRoute]:
    """Snapshot of the server's own routes, taken before any pipeline is served."""
    return list(app.router.routes)


def _inside(path: Path, root: Path) -> bool:
    try:
        resolved = path.resolve()
    except OSError:
        return False
    return resolved == root or resolved.is_relative_to(root)
