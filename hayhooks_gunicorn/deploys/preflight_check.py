"""The checking process's side of a pre-flight (``preflight``): load one pipeline the way a worker would, report.

Runs in a child of the warm helper (``preflight_helper``) or, the cold way, as
``python -m hayhooks_gunicorn.deploys.preflight_check NAME PATH KIND PIPELINES_DIR [--server-routes]``, which prints
one marked JSON line. Only this side imports the loader, Haystack and (for ``--server-routes``) the worker's app.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from dataclasses import asdict
from pathlib import Path

from hayhooks_gunicorn.deploys.preflight import LOADING_MARK, MARK, CheckResult
from hayhooks_gunicorn.reload.scan import Kind, PipelineSource, fingerprint

# Threads a library starts again by itself in a process that lacks them: tqdm's monitor (tqdm/_monitor.py),
# started with the first progress bar, is re-created by the next bar of a forked worker.
THREADS_THAT_RESTART = frozenset({"tqdm_monitor"})


def check_here(name: str, path: Path, kind: Kind, pipelines_dir: Path, server_routes: bool) -> CheckResult:
    from hayhooks_gunicorn.reload.loader import install_source_only_imports, prepare
    from hayhooks_gunicorn.reload.names import check_name

    started = time.monotonic()
    revision = ""
    try:
        revision = fingerprint(path)
        install_source_only_imports(path.parent)
        routes = None
        if server_routes:
            # The server's own routes, as a worker sees them (built in this child only, never in a worker).
            from hayhooks_gunicorn.app_context import app_context
            from hayhooks_gunicorn.worker.app import create_app

            routes = app_context(create_app()).server_routes
        check_name(name, pipelines_dir, routes)
        threads_before = set(threading.enumerate())
        loading_starts()
        prepare(PipelineSource(name, path, kind, revision))
    except BaseException as e:  # a setup() calling sys.exit() is a failed load too
        error = str(e) if isinstance(e, Exception) else f"{type(e).__name__}({e}) while loading"
        return CheckResult(name, revision, False, time.monotonic() - started, error)
    return CheckResult(name, revision, True, time.monotonic() - started, fork_unsafe=fork_hazards(threads_before))


def loading_starts() -> None:
    """Right before the pipeline's code runs: say so (a death after this line is the pipeline's, ``LOADING_MARK``),
    and be the kernel's first choice when memory runs out, before a serving worker (``oom_score_adj``: raising
    one's own needs no privilege)."""
    try:
        Path("/proc/self/oom_score_adj").write_text("1000")
    except OSError:
        pass  # not Linux, or a sandbox that forbids it
    sys.stdout.write(f"{LOADING_MARK}\n")
    sys.stdout.flush()


def fork_hazards(threads_before: set[threading.Thread]) -> str | None:
    """What a fork right after this load would break: threads do not survive it, nor does CUDA
    (``torch.cuda`` cannot be used in a child forked after it was initialised)."""
    started = [
        t.name
        for t in threading.enumerate()
        if t not in threads_before and t.is_alive() and t.name not in THREADS_THAT_RESTART
    ]
    torch = sys.modules.get("torch")
    cuda = torch is not None and bool(getattr(getattr(torch, "cuda", None), "is_initialized", lambda: False)())
    reasons = [f"it started thread(s) {', '.join(started)}"] if started else []
    reasons += ["it initialised CUDA"] if cuda else []
    return "; ".join(reasons) or None


def main(argv: list[str]) -> None:
    name, path, kind, pipelines_dir = argv[:4]
    if kind not in ("files", "yaml"):
        raise SystemExit(f"unknown pipeline kind {kind!r}")
    result = check_here(name, Path(path), "yaml" if kind == "yaml" else "files", Path(pipelines_dir), len(argv) > 4)
    sys.stdout.write(f"\n{MARK}{json.dumps(asdict(result))}\n")
    sys.stdout.flush()
    # Skip interpreter shutdown: threads a setup() started must not keep this process alive.
    os._exit(0)


if __name__ == "__main__":
    main(sys.argv[1:])
