"""The kit's own settings, all under ``HAYHOOKS_GUNICORN_``; hayhooks keeps reading its ``HAYHOOKS_*`` ones.

Workers are separate processes that rebuild settings from the environment, so the CLI passes its flags to
them as environment variables (the way hayhooks' own CLI does). Each process reads them once (``kit_settings``).
"""

from __future__ import annotations

import functools
from enum import Enum
from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

ENV_PREFIX = "HAYHOOKS_GUNICORN_"
# Not a setting: the master puts each worker's slot here before its app is built (master/slots)
WORKER_SLOT_ENV = f"{ENV_PREFIX}WORKER_SLOT"


class DeployMode(str, Enum):
    """What a deploy/undeploy HTTP call does when several workers serve."""

    FORWARD = "forward"  # write into the shared directory and wait until every worker serves it
    WARN = "warn"  # hayhooks' own behaviour (this worker only), with a Warning header
    REJECT = "reject"  # refuse; deploy through the directory or `hayhooks-gunicorn deploy`


class WatchMode(str, Enum):
    """How workers notice changes in the pipelines directory."""

    AUTO = "auto"  # inotify, or polling when the directory is on a network filesystem
    INOTIFY = "inotify"
    POLL = "poll"
    OFF = "off"  # read the directory once, at worker boot


class SyncRun(str, Enum):
    """Where a worker runs a pipeline's synchronous ``run_api`` / ``run_chat_completion`` (see ``dispatch``)."""

    THREADPOOL = "threadpool"  # hayhooks' behaviour: a thread per call, many calls at once per worker
    INLINE = "inline"  # on the worker's event loop, one call at a time: for CPU-bound pipelines


class MetricsMode(str, Enum):
    ON = "on"
    TOKEN = "token"  # /metrics requires the read token (or the admin token)
    OFF = "off"


class KitSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, env_file=".env", extra="ignore")

    # How deploy calls reach the other workers
    deploy_mode: DeployMode = DeployMode.FORWARD

    # How changes in the pipelines directory are noticed
    watch: WatchMode = WatchMode.AUTO
    # Polling interval when polling (forced or auto-detected)
    poll_interval_ms: int = Field(default=500, ge=50, le=60_000)
    # Quiet period after the last change before the directory is re-scanned: a multi-file copy loads once
    debounce_ms: int = Field(default=100, ge=10, le=10_000)
    # Seconds after which a background scan reads a file again even though its size, inode and timestamps are
    # unchanged (the safety net of revisions from metadata, docs/scale.md); 0 = read every file on every scan
    rehash_interval: float = Field(default=600.0, ge=0, le=86_400)

    # Deadline for one pipeline's load and setup(); a load past it is reported failed and the worker serves on
    load_timeout: float = Field(default=600.0, gt=0, le=86_400)
    # Load each changed revision once per server in a separate process before the serving workers load it, so one that
    # kills the process loading it (OOM, segfault, os._exit) kills no serving worker (cluster/trial_loads)
    trial_loads: bool = False

    # Bearer token required by mutating routes (deploy, undeploy); unset = loopback-only deploys. Accepted for reads too
    admin_token: SecretStr | None = None
    # Bearer token for reads: /cluster, /metrics in token mode, the CLI's read commands; unset (and no admin token) =
    # /cluster answers loopback only. Cannot deploy
    read_token: SecretStr | None = None

    # Where each worker records its state (shared path = every host sees every worker); unset = a private
    # per-user directory under the temp dir, keyed by the pipelines directory (cluster.state_files.state_dir)
    state_dir: Path | None = None
    # A worker whose heartbeat is older than this is left out of the cluster view
    heartbeat_ttl: float = Field(default=10.0, gt=0, le=3600)

    # Seconds a warm pre-flight helper (deploys.preflight_helper) waits for its next check before it exits and gives
    # its memory back (about 85 MiB); 0 = no helper, every check imports Haystack in a new process
    preflight_helper_idle: float = Field(default=60.0, ge=0, le=86_400)

    # How long GET /traces waits for the other workers' trace buffers; a worker slower than this is left out
    traces_peer_timeout: float = Field(default=1.0, gt=0, le=60)

    # Upload limits of deploy calls
    max_files: int = Field(default=200, ge=1)
    max_bytes: int = Field(default=20_000_000, ge=1)
    # How long a forwarded deploy waits for every worker before answering 202
    deploy_wait: float = Field(default=30.0, ge=0, le=3600)

    # /metrics: on, token (requires the read or the admin token) or off
    metrics: MetricsMode = MetricsMode.ON
    # Parent of the master's private prometheus_client multiprocess directory (default: the system temp dir)
    metrics_dir: Path | None = None

    # Seconds a change on disk may stay unloaded, with no load running, before /readyz answers 503 (behind)
    ready_grace: float = Field(default=30.0, ge=0, le=3600)

    # Import hayhooks and the pipelines' libraries in the master before forking, so workers share those pages
    preload_imports: bool = True
    # Load the pipelines in the master before forking, so workers share one copy of their models (master/shared_models)
    share_models: bool = False

    # GPU placement: unset = CUDA_VISIBLE_DEVICES as the operator set it; a list ("0,1" or GPU UUIDs) = the worker in
    # slot i gets CUDA_VISIBLE_DEVICES=list[i % len]; "auto" = the same over the GPUs the machine lists (master/gpus)
    gpus: str | None = None

    # Where sync pipeline methods run: threadpool (hayhooks' behaviour) or inline (CPU-bound pipelines)
    sync_run: SyncRun = SyncRun.THREADPOOL

    # Log format of the kit's own lines and of hayhooks' loguru sink: text or json
    log_format: str = Field(default="text", pattern="^(text|json)$")


@functools.cache
def kit_settings() -> KitSettings:
    """The settings of this process, read from the environment (and ``.env``) on first use.

    Forked workers inherit the master's copy, which was read from the same environment. Tests that change the
    environment call ``kit_settings.cache_clear()``.
    """
    return KitSettings()


def pipelines_dir(create: bool = False) -> Path:
    """hayhooks' ``HAYHOOKS_PIPELINES_DIR`` (environment, ``.env``, else ``./pipelines``) as an absolute path.

    *create* makes it when missing, as ``hayhooks run`` does (``server/app.py::init_pipeline_dir``); a failure
    to create it is left for the first read to report.
    """
    from hayhooks.settings import settings as hayhooks_settings

    path = Path(hayhooks_settings.pipelines_dir or ".").absolute()
    if create:
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError:
            pass
    return path
