"""In the master: follow the pipelines directory and roll every change out by replacing workers one at a time.

Used when the workers must not reload in place: under ``HAYHOOKS_GUNICORN_SHARE_MODELS`` a worker that loaded a
new version itself would hold its own copy of the weights, so instead the master loads the new set (after a
pre-flight in a separate process), then replaces its workers one at a time from that set (``rolling``); in durable
mode a worker serves the fixed set hayhooks built for it, so each changed pipeline is loaded once in a separate
process (``check_changed``) and the workers are replaced. Each new worker serves before an old one retires, so
capacity never drops; a new durable worker would serve the set without the pipeline that failed to load
(``worker.durable_set``), which the check prevents. A set that fails to load stops the roll: the
workers serving now go on serving, the log says why, and the next change of the directory tries again.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hayhooks_gunicorn.master.control import RestartError
from hayhooks_gunicorn.master.instance import Instance
from hayhooks_gunicorn.master.rolling import ArbiterPool, rolling_replace
from hayhooks_gunicorn.reload import scan
from hayhooks_gunicorn.reload.release import release_memory
from hayhooks_gunicorn.reload.watcher import DirectoryWatcher
from hayhooks_gunicorn.settings import KitSettings

# Loads the new set in the master; returns name -> error for what failed (an empty dict: go ahead and roll).
Refresh = Callable[[], dict[str, str]]


@dataclass(frozen=True)
class RollPlan:
    """What one look at the directory asks of the master: the names to roll out (none: nothing to do), and why."""

    changed: tuple[str, ...]
    reason: str


def plan_roll(now: Mapping[str, str], rolled: Mapping[str, str], failed_at: Mapping[str, str] | None) -> RollPlan:
    """Decide from revisions alone (name -> revision): the set on disk *now*, the one the workers serve (*rolled*),
    and the one whose roll last failed (*failed_at*, tried again only once the directory changes again)."""
    if now == rolled:
        return RollPlan((), "the workers serve this set")
    if failed_at is not None and now == failed_at:
        return RollPlan((), "this set failed to roll out; waiting for the next change")
    changed = sorted(name for name in {*now, *rolled} if now.get(name) != rolled.get(name))
    return RollPlan(tuple(changed), "changed: " + ", ".join(changed))


class RollOnChange:
    def __init__(
        self, arbiter: Any, instance: Instance, pipelines_dir: Path, settings: KitSettings, refresh: Refresh
    ) -> None:
        self.arbiter = arbiter
        self.instance = instance
        self.pipelines_dir = pipelines_dir
        self.settings = settings
        self.refresh = refresh
        self.lock = threading.Lock()
        # The directory as the current workers serve it, and as it was when a roll last failed
        self.rolled = self.revisions()
        self.failed_at: dict[str, str] | None = None
        self.watcher = DirectoryWatcher(
            pipelines_dir, self.changed, settings.watch, settings.poll_interval_ms, settings.debounce_ms
        )

    def start(self) -> None:
        self.watcher.start()

    def revisions(self) -> dict[str, str]:
        try:
            return {name: source.revision for name, source in scan(self.pipelines_dir).items()}
        except OSError:
            return {}

    def changed(self) -> None:
        """The watcher's callback: roll when the directory differs from what the workers serve."""
        with self.lock:
            now = self.revisions()
            plan = plan_roll(now, self.rolled, self.failed_at)
            if not plan.changed:
                return
            log = self.arbiter.log
            log.info(
                "The pipelines directory %s: loading the new set in the master before replacing workers", plan.reason
            )
            try:
                self._roll(now)
            finally:
                # Garbage of the versions replaced, some of it frozen by gc.freeze() at the roll's forks
                # (master.hooks.pre_fork) and thawed into the oldest generation, which an idle master never collects.
                release_memory()

    def _roll(self, now: dict[str, str]) -> None:
        """Load the new set (``refresh``), then replace the workers one at a time; on failure keep what serves."""
        log = self.arbiter.log
        failed = self.refresh()
        if failed:
            self.failed_at = now
            errors = "; ".join(f"'{name}': {error}" for name, error in failed.items())
            log.error("Roll stopped, the workers keep serving the previous set: %s", errors)
            return
        try:
            report = rolling_replace(
                ArbiterPool(self.arbiter),
                self.instance,
                load_timeout=self.settings.load_timeout + 60,
                retire_timeout=self.arbiter.cfg.graceful_timeout + 30,
                echo=log.info,
            )
        except RestartError as e:
            self.failed_at = now
            log.error("Roll stopped: %s", e)
            return
        self.rolled, self.failed_at = now, None
        log.info("Rolled the change out: replaced %d worker(s), one at a time", len(report.replaced))

    def stop(self) -> None:
        self.watcher.stop()


def check_changed(rolled: dict[str, str], pipelines_dir: Path, settings: KitSettings) -> dict[str, str]:
    """Load every pipeline that differs from *rolled* once, each in its own process; name -> error of the failed."""
    from hayhooks_gunicorn.deploys.preflight import check_in_subprocess

    try:
        sources = [s for s in scan(pipelines_dir).values() if rolled.get(s.name) != s.revision]
    except OSError as e:
        return {"*": f"cannot read '{pipelines_dir}': {e}"}
    failed: dict[str, str] = {}
    for source in sources:
        result = check_in_subprocess(source, pipelines_dir, settings.load_timeout, server_routes=False)
        if not result.ok:
            failed[source.name] = result.error or "failed to load"
    return failed
