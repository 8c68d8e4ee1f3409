"""Where a worker runs a pipeline's synchronous methods: hayhooks' thread pool (default) or inline on its loop.

hayhooks hands a sync ``run_api`` or ``run_chat_completion`` to Starlette's thread pool
(``server/utils/deploy_utils.py::_execute_pipeline_run``, ``server/routers/openai.py::_invoke_pipeline_method``).
For a CPU-bound pipeline under several busy workers that hop costs throughput: each call passes the GIL back and
forth between the event loop thread and a pool thread, and with every core busy each hand-over waits for a
core. ``inline`` runs the call on the event loop instead, one at a time per worker, as gunicorn's sync worker
does: a busy worker accepts nothing, so the kernel hands new connections to a free worker.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any, TypeVar

from hayhooks_gunicorn.settings import SyncRun

T = TypeVar("T")

# The modules whose ``run_in_threadpool`` runs a pipeline's sync methods (and nothing of the kit's).
PIPELINE_CALLERS = ("hayhooks.server.utils.deploy_utils", "hayhooks.server.routers.openai")


async def run_inline(func: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``run_in_threadpool``'s signature, run on the event loop: the worker serves nothing else meanwhile."""
    return func(*args, **kwargs)


def apply_sync_run(mode: SyncRun) -> None:
    """Make this process run pipelines' sync methods the way *mode* says; the thread pool is hayhooks' own."""
    if mode is SyncRun.INLINE:
        for module_name in PIPELINE_CALLERS:
            importlib.import_module(module_name).run_in_threadpool = run_inline  # type: ignore[attr-defined]
