"""Reload results as metrics: every worker records what it loaded, failed or removed, and how long a change on
disk took to reach it."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from hayhooks_gunicorn.cluster.identity import worker_id, worker_slot
from hayhooks_gunicorn.metrics.instruments import instruments
from hayhooks_gunicorn.reload.follow import links_on
from hayhooks_gunicorn.reload.scan import entries_named, pipeline_files

if TYPE_CHECKING:
    from hayhooks_gunicorn.reload import Change, WorkerRuntime


def changed_at(pipelines_dir: Path, name: str) -> float | None:
    """When a pipeline's content last landed in the directory: the newest change time of its entries, or of a
    link on the pipelines path (a release swapped in with ``ln -sfn`` or by git-sync was unpacked earlier).

    ``st_ctime``, not ``st_mtime``: ``cp -p``, ``rsync -a`` and ``tar`` keep old mtimes, while every write,
    rename or copy sets the change time. A removal leaves nothing to look at; the directory's own change time
    (set by the removal) stands in.
    """
    content = _content_changed_at(pipelines_dir, name)
    links = [_lstat_ctime(link) for link, _ in links_on(pipelines_dir)]
    times = [t for t in (content, *links) if t is not None]
    return max(times) if content is not None and times else None


def _content_changed_at(pipelines_dir: Path, name: str) -> float | None:
    for path in entries_named(pipelines_dir, name):
        try:
            if path.is_dir():
                return max([path.stat().st_ctime] + [(path / rel).stat().st_ctime for rel in pipeline_files(path)])
            if path.is_file():
                return path.stat().st_ctime
        except OSError:
            return None
    try:
        return pipelines_dir.stat().st_ctime
    except OSError:
        return None


def _lstat_ctime(path: Path) -> float | None:
    try:
        return path.lstat().st_ctime
    except OSError:
        return None


def _slot_label() -> str:
    """The worker's slot as a label value: kept by its replacement, so dashboards can follow a place, not a pid."""
    slot = worker_slot()
    return "" if slot is None else str(slot)


def record_fixed_set(pipelines: dict[str, str], serves_from: Path, failed: Iterable[str] = ()) -> None:
    """A durable worker's counterpart of ``record_reloads``: count it alive, with the fixed set it serves.

    Its set never changes (it is replaced instead), so there is nothing to record after boot.
    """
    metrics = instruments()
    worker, slot = worker_id(), _slot_label()
    metrics.workers.set(1)
    metrics.pipelines_dir_info.labels(worker, slot, str(serves_from)).set(1)
    for name, revision in pipelines.items():
        metrics.revision_info.labels(name, revision, worker, slot).set(1)
    for name in failed:
        metrics.load_failed.labels(name).set(1)


def record_reloads(runtime: WorkerRuntime) -> None:
    """Boot callback (``AppContext.on_boot``): count this worker alive and record every reconcile result it produces."""
    metrics = instruments()
    worker, slot = worker_id(), _slot_label()
    metrics.workers.set(1)
    serving: dict[str, str] = {}
    # Loads finish on their own threads and report from there.
    lock = threading.Lock()
    pipelines_dir = runtime.reconciler.pipelines_dir
    served_from: list[str] = []

    def on_dir(path: Path) -> None:
        with lock:
            # Set to 0, not removed: in multiprocess mode remove() only warns and the value stays in the file.
            for old in served_from:
                metrics.pipelines_dir_info.labels(worker, slot, old).set(0)
            served_from[:] = [str(path)]
            metrics.pipelines_dir_info.labels(worker, slot, str(path)).set(1)

    def stop_serving(name: str) -> None:
        if (old := serving.pop(name, None)) is not None:
            metrics.revision_info.labels(name, old, worker, slot).set(0)
            metrics.revision_info.remove(name, old, worker, slot)

    def on_change(change: Change) -> None:
        with lock:
            record(change)

    def record(change: Change) -> None:
        name = change.name
        metrics.reloads.labels(name, change.outcome).inc()
        if change.outcome == "failed":
            metrics.load_failed.labels(name).set(1)
            return
        metrics.load_failed.labels(name).set(0)
        stop_serving(name)
        if change.outcome == "loaded":
            serving[name] = change.revision
            metrics.revision_info.labels(name, change.revision, worker, slot).set(1)
            metrics.load_duration.labels(name).observe(change.seconds)
        # Loads at boot follow no change: only a worker already serving measures how long a change took.
        if runtime.booted_at is not None and (at := changed_at(pipelines_dir, name)) is not None:
            metrics.convergence.labels(name).observe(max(0.0, time.time() - at))

    runtime.reconciler.listeners.append(on_change)
    runtime.reconciler.dir_listeners.append(on_dir)
