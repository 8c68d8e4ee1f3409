"""Pipeline commands of ``hayhooks-gunicorn``: ``deploy``, ``undeploy``, ``status`` and ``check``.

Only the options live here; ``pipeline_ops`` does the work and is imported when a command runs, so ``run`` and
``--help`` do not pay for importing hayhooks.
"""

from __future__ import annotations

from pathlib import Path

import click


def default_pipelines_dir() -> Path:
    """hayhooks' own value (environment, ``.env``, else ``./pipelines``), read only when a command runs."""
    from hayhooks_gunicorn.settings import pipelines_dir

    return pipelines_dir()


def default_url() -> str:
    from hayhooks.settings import settings

    from hayhooks_gunicorn.cluster.lookup import server_url

    return server_url(settings.host, settings.port)


pipelines_dir_option = click.option(
    "--pipelines-dir",
    envvar="HAYHOOKS_PIPELINES_DIR",
    type=click.Path(file_okay=False, path_type=Path),
    default=default_pipelines_dir,
    show_default="HAYHOOKS_PIPELINES_DIR, else ./pipelines",
    help="The shared pipelines directory the workers follow.",
)
url_option = click.option(
    "--url",
    default=default_url,
    show_default="http://HAYHOOKS_HOST:HAYHOOKS_PORT",
    help="A running server to read the cluster view from (else the state directory on this host).",
)
wait_option = click.option(
    "--wait",
    type=click.FloatRange(min=0),
    default=None,
    show_default="HAYHOOKS_GUNICORN_DEPLOY_WAIT, else 30",
    help="Seconds to wait for every live worker.",
)


@click.command()
@click.argument("path", type=click.Path(exists=True, path_type=Path))
@click.option("--name", "-n", help="Pipeline name  [default: the directory name, or the YAML file's stem]")
@click.option("--overwrite", "-o", is_flag=True, help="Replace the pipeline when it exists.")
@pipelines_dir_option
@url_option
@wait_option
def deploy(path: Path, name: str | None, overwrite: bool, pipelines_dir: Path, url: str, wait: float | None) -> None:
    """Write the pipeline at PATH (a wrapper directory or a YAML file) into the pipelines directory.

    The pipeline is loaded once in a separate process first; one that fails to load is not written.
    """
    from hayhooks_gunicorn.cli import pipeline_ops

    pipeline_ops.deploy(path, name, overwrite, pipelines_dir, url, wait)


@click.command()
@click.argument("name")
@pipelines_dir_option
@url_option
@wait_option
def undeploy(name: str, pipelines_dir: Path, url: str, wait: float | None) -> None:
    """Remove pipeline NAME from the pipelines directory; every worker stops serving it."""
    from hayhooks_gunicorn.cli import pipeline_ops

    pipeline_ops.undeploy(name, pipelines_dir, url, wait)


@click.command()
@pipelines_dir_option
@url_option
@click.option("--json", "as_json", is_flag=True, help="Print the cluster view as JSON.")
def status(pipelines_dir: Path, url: str, as_json: bool) -> None:
    """Show every live worker and the revision it serves of each pipeline; exit 1 unless all agree with the disk."""
    from hayhooks_gunicorn.cli import pipeline_ops

    pipeline_ops.status(pipelines_dir, url, as_json)


@click.command()
@click.argument("directory", required=False, type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    show_default="HAYHOOKS_GUNICORN_LOAD_TIMEOUT, else 600",
    help="Seconds one pipeline may take to load.",
)
@click.option(
    "--jobs", "-j", type=click.IntRange(min=1), default=4, show_default=True, help="Pipelines loading at once."
)
def check(directory: Path | None, timeout: float | None, jobs: int) -> None:
    """Load every pipeline of DIRECTORY, each in its own process, and report ok or the error; exit 1 on any error.

    DIRECTORY defaults to HAYHOOKS_PIPELINES_DIR, else ./pipelines. Run it in CI before a rollout.
    """
    from hayhooks_gunicorn.cli import pipeline_ops

    pipeline_ops.check(directory or default_pipelines_dir(), timeout, jobs)
