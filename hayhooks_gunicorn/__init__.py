"""Run Hayhooks under a gunicorn master whose Uvicorn workers all follow one shared pipelines directory.

Importing this package imports neither the worker (uvicorn-worker, FastAPI) nor hayhooks: the names below load on
first use, so the CLI and the master's modules stay light.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hayhooks_gunicorn.worker.gunicorn_worker import HayhooksWorker

_LAZY = {"HayhooksWorker": "hayhooks_gunicorn.worker.gunicorn_worker"}

__all__ = ["HayhooksWorker", "__version__"]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
