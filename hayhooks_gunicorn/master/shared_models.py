"""``HAYHOOKS_GUNICORN_SHARE_MODELS``: the master loads the pipelines before it forks, and every worker serves
the master's copy, so N workers hold one copy of a model's weights (copy-on-write pages) instead of N.

The master must survive whatever a pipeline does, so each pipeline is first loaded in a separate process
(``deploys.preflight``); only one that loads there, and neither leaves a thread running (threads do not survive a
fork) nor initialises CUDA (which cannot be used in a child forked after it), is loaded in the master. Any other
is loaded by each worker as usual, with one log line saying why. While the master loads, torch runs on one
thread: a parent that ran an inference on torch's default thread pool before forking made every child hang on
its first inference (OpenMP after fork); each worker gets its threads back after the fork (``restore_threads``).

The arbiter stays gunicorn's single-threaded arbiter as far as pipeline code goes: after a change the master
loads on its watcher thread (``roll_on_change``) while the arbiter's main loop may fork a replacement worker at any
moment, and a child forked then would inherit half-built modules and locks held by the loading thread. So forks
are held off while pipeline code runs in the master (``forking.no_fork_meanwhile``): a fork asked for meanwhile
waits for the load to end, at most ``HAYHOOKS_GUNICORN_LOAD_TIMEOUT``. A load abandoned at that timeout goes on
in its daemon thread, unguarded: holding forks off for ever would be worse. The checks before it run in separate
processes and need no such guard. Replaced versions are freed in the master: ``gc.collect()`` after each change,
and ``gc.unfreeze()`` after each fork (``master.hooks.thaw_after_fork``).
"""

from __future__ import annotations

import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from hayhooks_gunicorn.deploys.preflight import check_in_subprocess
from hayhooks_gunicorn.errors import PipelineLoadError
from hayhooks_gunicorn.forking import no_fork_meanwhile
from hayhooks_gunicorn.reload import PipelineSource, inherited, scan
from hayhooks_gunicorn.reload.loader import install_source_only_imports, prepare_with_deadline
from hayhooks_gunicorn.reload.release import release_memory
from hayhooks_gunicorn.settings import KitSettings

_torch_threads: int | None = None


def limit_threads() -> None:
    """One torch thread in the master while it loads (see the module docstring); remembers the default."""
    global _torch_threads
    torch = sys.modules.get("torch")
    if torch is not None and _torch_threads is None:
        _torch_threads = torch.get_num_threads()
        torch.set_num_threads(1)


def restore_threads() -> None:
    """In a worker after the fork: torch's default number of threads again."""
    torch = sys.modules.get("torch")
    if torch is not None and _torch_threads is not None:
        torch.set_num_threads(_torch_threads)


def load_in_master(pipelines_dir: Path, settings: KitSettings, log: Any) -> dict[str, str]:
    """Bring what the master holds for the workers in line with *pipelines_dir*: load what is new or changed
    (if it can be shared), drop what is gone. Returns name -> error for each pipeline that failed to load."""
    try:
        sources = [s for s in scan(pipelines_dir).values() if s.error is None]
    except OSError as e:
        return {"*": f"cannot read '{pipelines_dir}': {e}"}
    held = {**inherited.handed_down(), **inherited.failed()}
    for gone in set(held) - {s.name for s in sources}:
        inherited.forget(gone)
    changed = [s for s in sources if held.get(s.name) != s.revision]
    install_source_only_imports(pipelines_dir)
    with ThreadPoolExecutor(max_workers=4) as pool:
        checks = list(pool.map(lambda s: check_in_subprocess(s, pipelines_dir, settings.load_timeout, False), changed))
    failed: dict[str, str] = {}
    for source, check in zip(changed, checks, strict=True):
        inherited.forget(source.name)  # the old revision is no longer what the workers should serve
        if not check.ok:
            failed[source.name] = check.error or "failed to load"
            inherited.hand_down_failure(source, failed[source.name])
            log.warning("Pipeline '%s' is not shared: it failed to load (%s)", source.name, check.error)
            continue
        reason = check.fork_unsafe or _load(source, settings.load_timeout)
        if reason is not None:
            log.warning("Pipeline '%s' is not shared: %s; each worker loads its own copy", source.name, reason)
    if changed or set(held) - {s.name for s in sources}:
        release_memory()  # the versions forgotten above are cycles: collected now, not whenever gen 2 runs
    if changed and (shared := [s.name for s in changed if s.name in inherited.handed_down()]):
        log.info("Loaded %d pipeline(s) in the master, shared by every worker: %s", len(shared), ", ".join(shared))
    return failed


def _load(source: PipelineSource, timeout: float) -> str | None:
    """Import and set up *source* in the master, with forks held off meanwhile (see the module docstring)."""
    limit_threads()
    started = time.monotonic()
    try:
        with no_fork_meanwhile():
            prepared = prepare_with_deadline(source, timeout)
    except PipelineLoadError as e:
        return f"it failed to load in the master ({e})"
    inherited.hand_down(source, prepared)
    del prepared
    if time.monotonic() - started > timeout:
        inherited.forget(source.name)
        return "it took longer than HAYHOOKS_GUNICORN_LOAD_TIMEOUT"
    return None
