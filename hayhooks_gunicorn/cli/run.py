"""``hayhooks-gunicorn run``: gunicorn with the kit's configuration, options passed on as environment variables."""

from __future__ import annotations

import os
import sys

import click

CONFIG_MODULE = "python:hayhooks_gunicorn.gunicorn_conf"


def gunicorn_command(config: str = CONFIG_MODULE, extra: tuple[str, ...] = ()) -> list[str]:
    return [sys.executable, "-m", "gunicorn", "-c", config, *extra]


@click.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.option("--host", envvar="HAYHOOKS_HOST", default="localhost", show_default=True, help="Address to bind.")
@click.option("--port", envvar="HAYHOOKS_PORT", default=1416, show_default=True, type=int, help="Port to bind.")
@click.option(
    "--workers", "-w", type=int, default=None, help="Worker processes [default: WEB_CONCURRENCY, else one per core]."
)
@click.option(
    "--pipelines-dir",
    envvar="HAYHOOKS_PIPELINES_DIR",
    type=click.Path(file_okay=False),
    default=None,
    help="Shared pipelines directory [default: HAYHOOKS_PIPELINES_DIR, else ./pipelines].",
)
@click.option("--timeout", type=int, default=None, help="gunicorn worker timeout in seconds [default: 60].")
@click.option(
    "--deploy-mode",
    type=click.Choice(["forward", "warn", "reject"]),
    default=None,
    help="What deploy calls do [default: HAYHOOKS_GUNICORN_DEPLOY_MODE, else forward].",
)
@click.option(
    "--watch",
    type=click.Choice(["auto", "inotify", "poll", "off"]),
    default=None,
    help="How workers notice changes [default: HAYHOOKS_GUNICORN_WATCH, else auto].",
)
@click.option(
    "--sync-run",
    type=click.Choice(["threadpool", "inline"]),
    default=None,
    help="Where sync pipeline methods run; inline suits CPU-bound pipelines "
    "[default: HAYHOOKS_GUNICORN_SYNC_RUN, else threadpool].",
)
@click.option(
    "--with-chainlit",
    is_flag=True,
    default=False,
    help="Serve hayhooks' Chainlit UI at HAYHOOKS_CHAINLIT_PATH (/chat), one host for every worker "
    "(same as HAYHOOKS_CHAINLIT_ENABLED=true; needs the 'chainlit' extra).",
)
@click.argument("gunicorn_args", nargs=-1, type=click.UNPROCESSED)
def run(
    host: str,
    port: int,
    workers: int | None,
    pipelines_dir: str | None,
    timeout: int | None,
    deploy_mode: str | None,
    watch: str | None,
    sync_run: str | None,
    with_chainlit: bool,
    gunicorn_args: tuple[str, ...],
) -> None:
    """Start gunicorn with the kit's configuration; arguments after the options go to gunicorn unchanged.

    Example: hayhooks-gunicorn run --port 8000 -w 4 -- --max-requests 1000
    """
    # Workers rebuild their settings from the environment, so every option travels as a variable.
    env = dict(os.environ, HAYHOOKS_HOST=host, HAYHOOKS_PORT=str(port))
    if pipelines_dir:
        env["HAYHOOKS_PIPELINES_DIR"] = os.path.abspath(pipelines_dir)
    if deploy_mode:
        env["HAYHOOKS_GUNICORN_DEPLOY_MODE"] = deploy_mode
    if watch:
        env["HAYHOOKS_GUNICORN_WATCH"] = watch
    if sync_run:
        env["HAYHOOKS_GUNICORN_SYNC_RUN"] = sync_run
    if with_chainlit:
        env["HAYHOOKS_CHAINLIT_ENABLED"] = "true"
    extra: list[str] = []
    if workers is not None:
        extra += ["--workers", str(workers)]
    if timeout is not None:
        extra += ["--timeout", str(timeout)]
    command = gunicorn_command(extra=(*extra, *gunicorn_args))
    # exec, so signals from systemd or a shell reach the gunicorn master directly.
    os.execvpe(command[0], command, env)
