"""``python -m hayhooks_gunicorn``: the ``hayhooks-gunicorn`` command, for when its script is not on PATH."""

from hayhooks_gunicorn.cli import main

main(prog_name="hayhooks-gunicorn")
