"""The deploy path, in every worker (HTTP) and in the CLI: a deploy call becomes a write into the shared directory.

``routes`` swaps hayhooks' mutating routes for the kit's, by ``HAYHOOKS_GUNICORN_DEPLOY_MODE``: ``forward_mode``
(validate -> ``preflight`` in a separate process -> ``shared_dir`` writes it in one rename -> wait until every
worker serves it), ``warn`` (hayhooks' own single-worker deploy, said loudly) or ``reject``. The package's
``auth`` decides who may call them; ``submission`` checks a request before anything touches the disk. The workers'
watchers (``reload``) then do the rest: a deploy never loads anything into a worker directly.
"""

from __future__ import annotations

from hayhooks_gunicorn.deploys.routes import install_deploy_routes

__all__ = ["install_deploy_routes"]
