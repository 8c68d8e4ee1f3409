"""Check, once at startup, that the installed hayhooks has every internal the kit builds on."""

from __future__ import annotations

import importlib
from importlib.metadata import version

from hayhooks_gunicorn.errors import UnsupportedHayhooksError

SUPPORTED_HAYHOOKS = ">=2.1,<2.2"

# module -> attributes the kit uses; private names move between hayhooks releases, so name them all here.
REQUIRED = {
    "hayhooks.server.app": ("create_app", "_matches_existing_route", "build_immutable_host"),
    "hayhooks.server.exceptions": ("PipelinePathError",),
    "hayhooks.server.logger": ("log",),
    "hayhooks.server.pipelines.models": ("create_pipeline_metadata",),
    # Durable mode's set is loaded one pipeline at a time (worker/durable_set.py).
    "hayhooks.server.pipelines.loader": (
        "REGISTRY_ROOT",
        "YAML_SUFFIXES",
        "_PIPELINE_NAME",
        "_load_candidate",
        "_package_name",
    ),
    "hayhooks.server.pipelines.registry": ("registry",),
    # Deploy routes keep hayhooks' request and response models.
    "hayhooks.server.routers.deploy": ("DeployResponse", "PipelineFilesRequest", "YamlDeployRequest"),
    "hayhooks.server.routers.undeploy": ("UndeployResponse",),
    # HAYHOOKS_GUNICORN_SYNC_RUN=inline replaces how these run a pipeline's sync methods (worker/sync_run.py).
    "hayhooks.server.routers.openai": ("run_in_threadpool",),
    "hayhooks.server.utils.deploy_utils": (
        "_build_run_route",
        "_deploy_lock",
        "prepare_pipeline_yaml",
        "run_in_threadpool",
    ),
    "hayhooks.server.utils.models": ("PreparedPipeline",),
    "hayhooks.server.utils.module_loader": ("_PipelineModuleLoader", "create_pipeline_wrapper_instance"),
    "hayhooks.server.utils.pipeline_paths": ("require_contained_path", "validate_file_keys", "validate_pipeline_name"),
    "hayhooks.settings": ("settings", "StartupDeployStrategy"),
}


def check_hayhooks() -> None:
    """Raise one clear error naming the supported range when an internal is missing."""
    missing: list[str] = []
    for module_name, attributes in REQUIRED.items():
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            missing.append(module_name)
            continue
        missing.extend(f"{module_name}.{name}" for name in attributes if not hasattr(module, name))

    from hayhooks.server.pipelines.registry import registry

    missing.extend(f"registry.{name}" for name in ("_pipelines", "_metadata") if not hasattr(registry, name))
    if missing:
        msg = (
            f"hayhooks {version('hayhooks')} is not supported by hayhooks-gunicorn (supported: hayhooks"
            f"{SUPPORTED_HAYHOOKS}); missing: {', '.join(missing)}"
        )
        raise UnsupportedHayhooksError(msg)
