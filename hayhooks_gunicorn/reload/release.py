"""Give the memory of a replaced or withdrawn pipeline back, so a hot reload frees the version it replaced.

What kept every superseded version alive (found with ``gc.get_referrers`` on a weakref to the old wrapper): FastAPI
classifies each endpoint once and caches the answer in ``lru_cache``s keyed by the endpoint function itself
(``fastapi/dependencies/models.py``: ``_is_gen_callable_cached``, ``_is_async_gen_callable_cached``,
``_is_coroutine_callable_cached``, 4096 entries each). hayhooks' run endpoint closes over the wrapper
(``deploy_utils.create_run_endpoint_handler``), so each cache entry held a whole old pipeline, model weights
included, until 4096 newer endpoints pushed it out. These caches only save a classification that is cheap to
redo, so they are cleared after a swap.

Wrappers, their modules and classes form reference cycles, so the old version is freed by the cyclic collector,
not by reference counting; and glibc keeps freed memory in its arenas. After a swap the collector runs and
``malloc_trim(0)`` hands free pages back to the OS, once at once and once more a little later, when requests
that were still running on the old version have finished.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import threading
from collections.abc import Callable
from typing import Any

# Requests still running on the old version when it was replaced hold it until they finish.
LATER_SECONDS = 5.0

_malloc_trim: Callable[[int], int] | None = None
_later: threading.Timer | None = None
_later_lock = threading.Lock()


def _load_malloc_trim() -> Callable[[int], int] | None:
    name = ctypes.util.find_library("c")
    try:
        function: Any = ctypes.CDLL(name).malloc_trim  # glibc only; musl has none
    except (OSError, AttributeError, TypeError):
        return None
    function.argtypes = [ctypes.c_size_t]
    function.restype = ctypes.c_int
    return function  # type: ignore[no-any-return]


def forget_endpoint_caches() -> None:
    """Drop FastAPI's per-endpoint classification caches (see the module docstring)."""
    from fastapi.dependencies import models

    for name in ("_is_gen_callable_cached", "_is_async_gen_callable_cached", "_is_coroutine_callable_cached"):
        cached = getattr(models, name, None)
        if cached is not None and hasattr(cached, "cache_clear"):
            cached.cache_clear()


def release_memory() -> None:
    """Collect cyclic garbage and return free heap pages to the OS."""
    global _malloc_trim
    gc.collect()
    if _malloc_trim is None:
        _malloc_trim = _load_malloc_trim() or (lambda _pad: 0)
    _malloc_trim(0)


def release_replaced() -> None:
    """After a swap or a withdrawal: forget what pins the old version, free it now and again a little later."""
    global _later
    forget_endpoint_caches()
    release_memory()
    with _later_lock:
        if _later is not None and _later.is_alive():
            return  # one pending later pass covers every swap until it runs
        _later = threading.Timer(LATER_SECONDS, release_memory)
        _later.daemon = True
        _later.name = "release-memory"
        _later.start()
