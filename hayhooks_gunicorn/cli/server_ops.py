"""Operations commands of ``hayhooks-gunicorn``: ``restart`` (rolling, zero-wait) and ``systemd`` (render units)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from hayhooks_gunicorn.errors import KitError


def _default_bind() -> str:
    from hayhooks.settings import settings as hayhooks

    return f"{hayhooks.host}:{hayhooks.port}"


@click.command()
@click.option(
    "--bind",
    default=None,
    help="The master's first bind address, which names its control socket [default: HAYHOOKS_HOST:HAYHOOKS_PORT].",
)
@click.option(
    "--control-socket",
    type=click.Path(dir_okay=False),
    default=None,
    help="The master's control socket, when it was started with --control-socket.",
)
@click.option(
    "--timeout",
    type=float,
    default=None,
    help="Seconds one new worker may take to load [default: HAYHOOKS_GUNICORN_LOAD_TIMEOUT + 120].",
)
def restart(bind: str | None, control_socket: str | None, timeout: float | None) -> None:
    """Replace every worker, one at a time: a new worker loads the pipelines, then an old one stops.

    No request waits for a pipeline load, unlike gunicorn's HUP, which stops the old workers at once.
    This is the ExecReload of the systemd unit (`systemctl reload hayhooks`).
    """
    from hayhooks.settings import settings as hayhooks

    from hayhooks_gunicorn.master.instance import for_socket
    from hayhooks_gunicorn.master.rolling import rolling_restart
    from hayhooks_gunicorn.settings import kit_settings

    instance = for_socket(control_socket, bind or _default_bind())
    load_timeout = timeout if timeout is not None else kit_settings().load_timeout + 120
    try:
        report = rolling_restart(
            instance,
            load_timeout=load_timeout,
            retire_timeout=hayhooks.graceful_shutdown_timeout + 30,
            echo=click.echo,
        )
    except KitError as e:
        click.echo(f"Error: {e}", err=True)
        sys.exit(1)
    click.echo(f"Restarted {len(report.replaced)} worker(s); every worker loaded the pipelines before serving.")


@click.command()
@click.option("--name", default="hayhooks", show_default=True, help="Unit name: <name>.service and <name>.socket.")
@click.option("--user", default=None, help="User the service runs as [default: the current user].")
@click.option("--group", default=None, help="Group [default: the user's primary group].")
@click.option(
    "--working-dir",
    type=click.Path(file_okay=False),
    default=None,
    help="WorkingDirectory (its .env is read) [default: the current directory].",
)
@click.option(
    "--pipelines-dir",
    type=click.Path(file_okay=False),
    default=None,
    help="Shared pipelines directory [default: HAYHOOKS_PIPELINES_DIR, else ./pipelines].",
)
@click.option("--env-file", default=None, help="EnvironmentFile [default: /etc/<name>/<name>.env].")
@click.option("--host", default=None, help="Address of the socket unit [default: HAYHOOKS_HOST].")
@click.option("--port", type=int, default=None, help="Port of the socket unit [default: HAYHOOKS_PORT].")
@click.option(
    "--graceful-timeout",
    type=int,
    default=None,
    help="Seconds in-flight requests get on stop [default: HAYHOOKS_GRACEFUL_SHUTDOWN_TIMEOUT].",
)
@click.option(
    "--output",
    "-o",
    type=click.Path(file_okay=False),
    default=None,
    help="Write the files into this directory instead of printing them.",
)
def systemd(
    name: str,
    user: str | None,
    group: str | None,
    working_dir: str | None,
    pipelines_dir: str | None,
    env_file: str | None,
    host: str | None,
    port: int | None,
    graceful_timeout: int | None,
    output: str | None,
) -> None:
    """Render <name>.service, <name>.socket, <name>.env.example and <name>-durable.env.example for this install
    (this virtualenv's gunicorn).

    Example: hayhooks-gunicorn systemd --user hayhooks --pipelines-dir /srv/pipelines -o /etc/systemd/system
    """
    from hayhooks_gunicorn.cli.systemd_units import for_this_install, render, write

    options = for_this_install(
        name=name,
        user=user,
        group=group,
        working_dir=str(Path(working_dir).absolute()) if working_dir else None,
        pipelines_dir=str(Path(pipelines_dir).absolute()) if pipelines_dir else None,
        env_file=str(Path(env_file).absolute()) if env_file else f"/etc/{name}/{name}.env",
        host=host,
        port=port,
        graceful_timeout=graceful_timeout,
    )
    try:
        if output:
            for path in write(options, Path(output)):
                click.echo(f"Wrote {path}")
            return
        for file_name, text in render(options).items():
            click.echo(f"# ---- {file_name} ----\n{text}")
    except (KitError, OSError) as e:
        click.echo(f"Error: {e}", err=True)
        sys.exit(1)
