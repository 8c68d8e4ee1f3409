"""Load a pipeline in a separate Python process, the way a worker would, and report ok or the error.

A pipeline that crashes, hangs, exits or leaves threads behind cannot take the caller (``hayhooks-gunicorn
check``, ``hayhooks-gunicorn deploy``) with it, and pipelines never see each other's modules. The child runs
``python -m hayhooks_gunicorn.checker NAME PATH KIND PIPELINES_DIR`` and prints one marked JSON line.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from hayhooks_gunicorn.scan import PipelineSource

MARK = "hayhooks-gunicorn-check:"


@dataclass(frozen=True)
class CheckResult:
    name: str
    revision: str
    ok: bool
    seconds: float
    error: str | None = None


def check_in_subprocess(source: PipelineSource, pipelines_dir: Path, timeout: float) -> CheckResult:
    """Load *source* (which may sit in a staging directory) under its name, as served from *pipelines_dir*."""
    if source.error:
        return CheckResult(source.name, source.revision, False, 0.0, source.error)
    command = [sys.executable, "-m", "hayhooks_gunicorn.checker", source.name, str(source.path), source.kind]
    command.append(str(pipelines_dir))
    # Sources compile without writing __pycache__ beside them, as in the workers (loader.SourceOnlyLoader).
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    started = time.monotonic()
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=timeout, env=env, stdin=subprocess.DEVNULL
        )
    except subprocess.TimeoutExpired:
        error = f"Loading pipeline {source.name!r} did not finish within {timeout:g}s"
        return CheckResult(source.name, source.revision, False, time.monotonic() - started, error)
    for line in reversed(done.stdout.splitlines()):
        if line.startswith(MARK):
            return CheckResult(**json.loads(line[len(MARK) :]))
    tail = " | ".join((done.stderr or done.stdout).strip().splitlines()[-5:])
    error = f"The loading process exited with code {done.returncode} before reporting: {tail}"
    return CheckResult(source.name, source.revision, False, time.monotonic() - started, error)


def _check_here(name: str, path: Path, kind: str, pipelines_dir: Path) -> CheckResult:
    from hayhooks_gunicorn.app import create_app
    from hayhooks_gunicorn.loader import install_source_only_imports, prepare
    from hayhooks_gunicorn.names import check_name
    from hayhooks_gunicorn.scan import fingerprint

    started = time.monotonic()
    revision = fingerprint(path)
    try:
        install_source_only_imports(path.parent)
        # The server's own routes, as a worker sees them: a name must not shadow one of them.
        check_name(name, pipelines_dir, create_app().state.kit_server_routes)
        prepare(PipelineSource(name, path, kind, revision))  # type: ignore[arg-type]
    except BaseException as e:  # a setup() calling sys.exit() is a failed load too
        error = str(e) if isinstance(e, Exception) else f"{type(e).__name__}({e}) while loading"
        return CheckResult(name, revision, False, time.monotonic() - started, error)
    return CheckResult(name, revision, True, time.monotonic() - started)


def main(argv: list[str]) -> None:
    name, path, kind, pipelines_dir = argv
    result = _check_here(name, Path(path), kind, Path(pipelines_dir))
    sys.stdout.write(f"\n{MARK}{json.dumps(asdict(result))}\n")
    sys.stdout.flush()
    # Skip interpreter shutdown: threads a setup() started must not keep this process alive.
    os._exit(0)


if __name__ == "__main__":
    main(sys.argv[1:])
