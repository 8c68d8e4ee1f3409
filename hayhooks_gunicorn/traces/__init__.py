"""Live traces for the whole server: each worker serves its buffer to the others (``peer``), and whichever worker
answers ``GET /traces`` merges them all (``route``).

Importing this package does not import the route (hayhooks' traces router): ``peer`` is used on its own.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hayhooks_gunicorn.traces.route import install_traces

_LAZY = {"install_traces": "hayhooks_gunicorn.traces.route"}

__all__ = ["install_traces"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
