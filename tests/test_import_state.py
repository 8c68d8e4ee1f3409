"""Loads on parallel threads share the interpreter's import state (``reload.modules``): called from several threads
while others import, the helpers that read and change it never fail. hayhooks' ``pipeline_modules`` and plain
``importlib.invalidate_caches()`` fail these same loops (a few times in every run, more on a busy machine)."""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator

import pytest

from hayhooks_gunicorn.reload.modules import invalidate_import_caches, pipeline_modules


@pytest.fixture(autouse=True)
def switch_often() -> Iterator[None]:
    """Threads take turns every microsecond, as they in effect do on a busy machine."""
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        yield
    finally:
        sys.setswitchinterval(interval)


def test_pipeline_modules_while_another_thread_imports() -> None:
    stop = threading.Event()

    def imports() -> None:  # what an import on a request or load thread does to sys.modules
        i = 0
        while not stop.is_set():
            sys.modules[f"_import_state_probe_{i % 50}"] = sys
            sys.modules.pop(f"_import_state_probe_{(i + 25) % 50}", None)
            i += 1

    thread = threading.Thread(target=imports)
    thread.start()
    errors: list[BaseException] = []
    try:
        for _ in range(1_000):  # hayhooks' own function failed 109 times in 2,000 here
            try:
                pipeline_modules("no_such_pipeline")
            except RuntimeError as e:  # dictionary changed size during iteration
                errors.append(e)
    finally:
        stop.set()
        thread.join()
        for i in range(50):
            sys.modules.pop(f"_import_state_probe_{i}", None)
    assert errors == []


def test_invalidate_import_caches_from_parallel_loads() -> None:
    errors: list[BaseException] = []
    for _ in range(500):
        for i in range(5):  # what importing through a path that does not exist leaves behind
            sys.path_importer_cache[f"/no-such-dir-{i}"] = None
        barrier = threading.Barrier(4)

        def load(barrier: threading.Barrier) -> None:
            barrier.wait()
            try:
                invalidate_import_caches()
            except KeyError as e:  # KeyError: '/no-such-dir-2'
                errors.append(e)

        threads = [threading.Thread(target=load, args=(barrier,)) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert errors == []
