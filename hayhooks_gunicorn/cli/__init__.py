"""The ``hayhooks-gunicorn`` command line (click), run in the user's shell, never in the server's processes.

``run`` starts gunicorn with the kit's configuration; ``pipelines`` holds ``deploy``, ``undeploy``, ``status``
and ``check`` (``pipeline_ops`` does their work); ``server_ops`` holds ``restart`` (rolling) and ``systemd``
(``systemd_units`` renders the unit templates). Commands import hayhooks only when they run.
"""

from __future__ import annotations

import click

from hayhooks_gunicorn.cli.pipelines import check, deploy, status, undeploy
from hayhooks_gunicorn.cli.run import run
from hayhooks_gunicorn.cli.server_ops import restart, systemd

__all__ = ["main"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="hayhooks-gunicorn")
def main() -> None:
    """Run Hayhooks under gunicorn with workers that all follow one shared pipelines directory."""


for command in (run, restart, systemd, deploy, undeploy, status, check):
    main.add_command(command)
