"""The one thread a worker renders ``GET /metrics`` on, apart from the pool that runs pipeline calls.

hayhooks runs every sync ``run_api`` on Starlette's thread pool (``server/utils/deploy_utils.py::
_execute_pipeline_run``, anyio's default limiter: 40 threads a process). A scrape rendered through
``run_in_threadpool`` waited for one of those threads: while a worker's pool was full of slow calls, a Prometheus
scrape timed out and the worker looked down exactly when it was busiest. Rendering reads files, so it stays off the
event loop, on a thread of its own: scrapes wait only for each other.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")

_executor: ThreadPoolExecutor | None = None
_executor_pid: int | None = None


def _scrape_executor() -> ThreadPoolExecutor:
    """Created in the process that scrapes: an executor built before gunicorn forks (``preload_app``) would hand
    the worker a thread that exists only in the master."""
    global _executor, _executor_pid
    if _executor is None or _executor_pid != os.getpid():
        _executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="metrics-scrape")
        _executor_pid = os.getpid()
    return _executor


async def run_on_scrape_thread(function: Callable[[], T]) -> T:
    """Run *function* on this process's scrape thread, never on the pool that runs pipeline calls."""
    return await asyncio.get_running_loop().run_in_executor(_scrape_executor(), function)
