"""Served pipelines whose entry a pass found missing, and when to withdraw them.

A pipeline replaced with two renames (old aside, new in: ``mv x .old && mv .stage x``, rsync-style scripts, the
tests' ``write_wrapper``) is missing for a moment. A pass landing in that moment withdrew it, and requests saw
404 until the new version had loaded (half of the calls of ``test_swaps_under_load_never_fail_a_request`` on a
busy machine). So an entry must stay missing for a grace period before its pipeline is withdrawn; the last good
version serves meanwhile, and a new version that appears is swapped into its route slot without a gap.

The pass that finds an entry missing does not wait (a sleep there held back every other pipeline's reload); it
schedules one follow-up pass on a timer thread instead, so the withdrawal, or the reload of what came back,
happens even when no file event arrives after the second rename.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable

# Longer than the gap between two renames on a busy machine; a deleted pipeline answers 404 this much later.
WITHDRAW_GRACE_SECONDS = 1.0


class MissingEntries:
    """Called by every pass, under the reconciler's lock, with the served names whose entry it did not find."""

    def __init__(self, follow_up: Callable[[], None], grace: float = WITHDRAW_GRACE_SECONDS) -> None:
        self.follow_up = follow_up
        self.grace = grace
        self._since: dict[str, float] = {}  # name -> when a pass first found its entry missing
        self._timer: threading.Timer | None = None
        self._stopped = False

    def due(self, missing: Iterable[str]) -> list[str]:
        """The names to withdraw now: missing for *grace* seconds. For the others a follow-up pass is scheduled;
        names not in *missing* (back again, or no longer served) are forgotten."""
        now = time.monotonic()
        missing = list(missing)
        self._since = {name: self._since.get(name, now) for name in missing}
        due = [name for name, since in self._since.items() if now - since >= self.grace]
        for name in due:
            del self._since[name]
        if self._since and self._timer is None and not self._stopped:
            delay = min(self._since.values()) + self.grace - now
            self._timer = threading.Timer(max(delay, 0.0), self._run_follow_up)
            self._timer.name = "withdraw-follow-up"
            self._timer.daemon = True
            self._timer.start()
        return due

    def stop(self) -> None:
        """No follow-up pass from now on (the worker is stopping)."""
        self._stopped = True
        if self._timer is not None:
            self._timer.cancel()

    def _run_follow_up(self) -> None:
        # Cleared before the pass, so the pass itself can schedule the next one for names missing since later.
        self._timer = None
        self.follow_up()
