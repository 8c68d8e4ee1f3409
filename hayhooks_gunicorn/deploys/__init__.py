"""The deploy path, in every worker (HTTP) and in the CLI: a deploy call becomes a write into the shared directory.

``routes`` swaps hayhooks' mutating routes for the kit's, by ``HAYHOOKS_GUNICORN_DEPLOY_MODE``: ``forward_mode``
(validate -> ``preflight`` in a separate process, which runs ``preflight_check`` -> ``shared_dir`` writes it in
one rename -> wait until every worker serves it), ``warn`` (hayhooks' own single-worker deploy, said loudly) or
``reject``. The package's ``auth`` decides who may call them; ``submission`` checks a request before anything
touches the disk. The workers' watchers (``reload``) then do the rest: a deploy never loads anything into a worker
directly.

Importing this package imports none of the routes (FastAPI, hayhooks' routers): the master and the pre-flight
helper use ``preflight`` and ``helper_handle`` only.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hayhooks_gunicorn.deploys.routes import install_deploy_routes

_LAZY = {"install_deploy_routes": "hayhooks_gunicorn.deploys.routes"}

__all__ = ["install_deploy_routes"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
