"""The data path, in every worker: scan the pipelines directory -> reconcile -> load -> swap routes.

``scan`` reads the directory into named sources with content revisions; ``names`` says which names can be
served; ``loader`` imports and sets up one source (hayhooks' own loader, from the real directory); ``routes``
swaps a loaded pipeline into this process's registry and route table without a gap; ``reconcile`` drives all of
that for the whole directory; ``watcher`` calls it on every change; ``runtime`` ties them together for a worker.

Importing this package imports neither Haystack nor the loader: the gunicorn master and the CLI use ``scan``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from hayhooks_gunicorn.reload.scan import YAML_SUFFIXES, PipelineSource, fingerprint, ignored, pipeline_files, scan

if TYPE_CHECKING:
    from hayhooks_gunicorn.reload.outcomes import Change
    from hayhooks_gunicorn.reload.reconcile import Reconciler
    from hayhooks_gunicorn.reload.runtime import WorkerRuntime, start_runtime

_LAZY = {
    "Change": "outcomes",
    "Reconciler": "reconcile",
    "WorkerRuntime": "runtime",
    "start_runtime": "runtime",
}

__all__ = [
    "YAML_SUFFIXES",
    "Change",
    "PipelineSource",
    "Reconciler",
    "WorkerRuntime",
    "fingerprint",
    "ignored",
    "pipeline_files",
    "scan",
    "start_runtime",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
