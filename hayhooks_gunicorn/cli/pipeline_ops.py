"""What ``hayhooks-gunicorn deploy | undeploy | status | check`` do; ``cli.pipelines`` only parses their options.

``deploy`` and ``undeploy`` write straight into the pipelines directory with the same validation, pre-flight,
atomic write and lock as a forward-mode deploy call, so they need file access, not the admin token; then they
wait until every live worker has caught up when a server (or the state directory) shows any. Imported lazily:
it pulls in hayhooks.
"""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import click

from hayhooks_gunicorn.cluster.lookup import fetch_view, wait_for_workers
from hayhooks_gunicorn.cluster.view import ClusterView, Progress
from hayhooks_gunicorn.deploys.preflight import CheckResult, check_in_subprocess
from hayhooks_gunicorn.deploys.shared_dir import Workspace, write_submission
from hayhooks_gunicorn.deploys.submission import Limits, Submission, check_removable, validate
from hayhooks_gunicorn.errors import DeployError
from hayhooks_gunicorn.reload import YAML_SUFFIXES, pipeline_files, scan
from hayhooks_gunicorn.settings import kit_settings


class AdminError(click.ClickException):
    """Printed as 'Error: ...' with exit code 1."""


def read_submission(path: Path, name: str | None) -> Submission:
    """A wrapper directory (every file but hidden ones and caches, as bytes) or one YAML file."""
    if path.is_file():
        if path.suffix not in YAML_SUFFIXES:
            raise AdminError(f"'{path}' is neither a pipeline directory nor a .yml/.yaml file")
        return Submission.yaml(name or path.stem, path.read_bytes())
    files = {str(rel): (path / rel).read_bytes() for rel in pipeline_files(path)}
    return Submission.wrapper(name or path.resolve().name, files)


def report_wait(view: ClusterView, progress: Progress, done: str) -> None:
    """One line on how the wait ended; exit 1 when some worker is behind or failed."""
    if not view.workers:
        click.echo(f"No live workers found ({view.source}); servers load it from the directory when they start.")
        return
    if progress.serving:
        click.echo(f"{done} on all {len(progress.workers)} live worker(s).")
        return
    lines = [f"  {worker}: {error}" for worker, error in progress.failed.items()]
    lines += [f"  {worker}: not yet" for worker in progress.behind if worker not in progress.failed]
    raise AdminError("Not every live worker caught up:\n" + "\n".join(lines))


def deploy(path: Path, name: str | None, overwrite: bool, pipelines_dir: Path, url: str, wait: float | None) -> None:
    settings = kit_settings()
    submission = read_submission(path, name)
    try:
        validate(submission, pipelines_dir.absolute(), Limits(settings.max_files, settings.max_bytes))
        revision = write_submission(submission, pipelines_dir.absolute(), overwrite, settings, server_routes=True)
    except DeployError as e:
        raise AdminError(str(e)) from e
    click.echo(f"Wrote pipeline '{submission.name}' (rev {revision}) to '{pipelines_dir}'.")
    timeout = settings.deploy_wait if wait is None else wait
    view, progress = wait_for_workers(submission.name, revision, url, pipelines_dir, settings, timeout)
    report_wait(view, progress, f"Pipeline '{submission.name}' (rev {revision}) serves")


def undeploy(name: str, pipelines_dir: Path, url: str, wait: float | None) -> None:
    settings = kit_settings()
    workspace = Workspace(pipelines_dir.absolute())
    try:
        check_removable(name)
        workspace.check_writable()
        removed = workspace.remove(name)
    except DeployError as e:
        raise AdminError(str(e)) from e
    if not removed:
        raise AdminError(f"Pipeline '{name}' is not in '{pipelines_dir}'")
    click.echo(f"Removed {', '.join(repr(p.name) for p in removed)} from '{pipelines_dir}'.")
    timeout = settings.deploy_wait if wait is None else wait
    view, progress = wait_for_workers(name, None, url, pipelines_dir, settings, timeout)
    report_wait(view, progress, f"Pipeline '{name}' is gone")


def status(pipelines_dir: Path, url: str, as_json: bool) -> None:
    view = fetch_view(url, pipelines_dir, kit_settings())
    if as_json:
        click.echo(json.dumps({**view.to_json(), "source": view.source}, indent=2))
    else:
        click.echo(render(view))
    if not view.converged:
        raise SystemExit(1)


def render(view: ClusterView) -> str:
    now = time.time()
    lines = [f"{len(view.workers)} live worker(s), from {view.source}"]
    for w in view.workers:
        state = "serving" if w.booted else "booting"
        where = f", from {w.serves_from}" if w.serves_from else ""
        lines.append(f"  {w.id}  {state}{where}, up {now - w.started_at:.0f}s, heartbeat {now - w.heartbeat:.1f}s ago")
    names = sorted(set(view.disk) | {n for w in view.workers for n in (*w.pipelines, *w.failures)})
    header = ["PIPELINE", "DISK", *(w.id for w in view.workers)]
    rows = [header]
    for name in names:
        row = [name, view.disk.get(name, "-")]
        for w in view.workers:
            failure = w.failures.get(name)
            served = w.pipelines.get(name, "-")
            row.append(f"{served} (failed {failure.revision})" if failure else served)
        rows.append(row)
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines += ["", *("  ".join(cell.ljust(width) for cell, width in zip(r, widths, strict=True)).rstrip() for r in rows)]
    for w in view.workers:
        lines += [f"{w.id} failed to load '{n}' (rev {f.revision}): {f.error}" for n, f in w.failures.items()]
    behind = {worker: names for worker, names in view.behind.items() if names}
    lines.append("")
    if view.converged:
        lines.append("Converged: every live worker serves what is on disk.")
    elif not view.workers:
        lines.append("Not converged: no live workers.")
    else:
        lines.append("Not converged: " + "; ".join(f"{w} behind on {', '.join(n)}" for w, n in behind.items()))
    return "\n".join(lines)


def check(directory: Path, timeout: float | None, jobs: int) -> None:
    directory = directory.absolute()
    if not directory.is_dir():
        raise AdminError(f"'{directory}' is not a directory")
    timeout = kit_settings().load_timeout if timeout is None else timeout
    sources = list(scan(directory).values())
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        results: list[CheckResult] = list(pool.map(lambda s: check_in_subprocess(s, directory, timeout), sources))
    for result in results:
        if result.ok:
            click.echo(f"ok     {result.name} (rev {result.revision}, {result.seconds:.1f}s)")
        else:
            click.echo(f"error  {result.name} (rev {result.revision}): {result.error}")
    failed = [r for r in results if not r.ok]
    click.echo(f"{len(results) - len(failed)} ok, {len(failed)} failed in '{directory}'")
    if failed:
        raise SystemExit(1)
