"""Polling until a condition holds: the one loop behind every "wait for the workers / the lock / the socket"."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def poll_until(predicate: Callable[[], T | None], timeout: float | None, interval: float = 0.05) -> T:
    """Call *predicate* every *interval* seconds until it returns something truthy, and return that.

    Raises ``TimeoutError`` once *timeout* seconds have passed (``None``: wait for ever); the predicate always
    runs at least once, so a zero timeout is a single check.
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if deadline is not None and time.monotonic() >= deadline:
            raise TimeoutError(f"condition not met within {timeout:g}s")
        time.sleep(interval)
