"""Durable mode, checked once in the master before any worker forks: one sentence instead of a traceback per worker.

In durable mode every worker builds hayhooks' Redis clients and its store connects in the app's lifespan
(``durable/runtime.py::DurableDeployment.start`` -> ``store.initialize()``): without the ``redis`` package, or with
Redis away, each worker fails to boot with its own traceback and gunicorn exits with "Worker failed to boot". With
durable mode off, the kit's loader refuses a durable wrapper in every worker (``module_loader.py``:
``allow_durable=False``). The master checks both first. It reads hayhooks' settings only (pydantic, no server).
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from hayhooks_gunicorn.errors import KitError
from hayhooks_gunicorn.reload.scan import scan

# How long the master waits for Redis to answer at boot.
PING_TIMEOUT = 3.0
# A wrapper that opts in to durable execution (hayhooks' BasePipelineWrapper.durable_revision), read as text:
# the master never imports pipeline code.
DURABLE_REVISION = re.compile(r"^\s+durable_revision\s*(:[^=]*)?=\s*(?!None\b)\S", re.MULTILINE)


def redacted(url: str) -> str:
    """*url* without its password (``redis://user:***@host:6379/0``)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    netloc = f"{user}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def check_redis(url: str) -> None:
    """Raise ``KitError`` when the ``redis`` package is missing or Redis at *url* does not answer."""
    try:
        import redis
    except ImportError as e:
        msg = "HAYHOOKS_DURABLE_MODE=true needs the redis package: pip install 'hayhooks-gunicorn[durable]'"
        raise KitError(msg) from e
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=PING_TIMEOUT, socket_timeout=PING_TIMEOUT)
        try:
            client.ping()
        finally:
            client.close()
    except (redis.RedisError, ValueError, OSError) as e:
        msg = (
            f"Redis at {redacted(url)} is unreachable ({e}): start it, or point HAYHOOKS_DURABLE_REDIS_URL at it; "
            "durable mode keeps every execution there"
        )
        raise KitError(msg) from e


def durable_wrappers(pipelines_dir: Path) -> list[str]:
    """Names of the wrappers in *pipelines_dir* that set a ``durable_revision``."""
    found = []
    for name, source in scan(pipelines_dir).items():
        wrapper = source.path / "pipeline_wrapper.py"
        if (
            source.kind == "files"
            and wrapper.is_file()
            and DURABLE_REVISION.search(wrapper.read_text(errors="replace"))
        ):
            found.append(name)
    return found


def check_durable(pipelines_dir: Path) -> str | None:
    """Raise ``KitError`` for what stops durable mode from booting; return a warning for a durable wrapper that
    the workers will refuse because durable mode is off (the other pipelines still serve)."""
    from hayhooks.settings import settings

    if settings.durable_mode:
        if settings.durable_store == "redis":
            check_redis(settings.durable_redis_url)
        return None
    try:
        names = durable_wrappers(pipelines_dir)
    except OSError:
        return None  # the workers say what is wrong with the directory
    if not names:
        return None
    return (
        f"Pipeline(s) {', '.join(repr(n) for n in names)} set a durable_revision: they are served only with "
        "HAYHOOKS_DURABLE_MODE=true (and Redis); every worker will refuse to load them"
    )
