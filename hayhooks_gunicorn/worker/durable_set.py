"""Durable mode's fixed set, loaded as hayhooks loads it, minus what cannot load.

hayhooks' ``create_app()`` loads the whole directory or nothing (``server/pipelines/loader.py``:
``load_pipeline_registry`` raises on the first pipeline that fails): one broken file makes every durable worker
fail to boot, and gunicorn halts the arbiter on that (``arbiter.py::reap_workers``, ``APP_LOAD_ERROR``). A file
that lands while the server runs is harmless until a worker is replaced (a crash, ``max_requests``): then the
whole server stops. Outside durable mode one broken file costs only that pipeline; this module gives durable mode
the same rule. Each pipeline is loaded by hayhooks' own ``_load_candidate`` under its own import root, so
executions and checkpoints see the module paths hayhooks gives them; what fails (or is quarantined, see
``cluster.quarantine``) is left out of the registry and reported.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from importlib.machinery import ModuleSpec
from importlib.util import module_from_spec
from os import PathLike
from pathlib import Path
from typing import Any

from hayhooks.server.logger import log

from hayhooks_gunicorn.cluster.quarantine import Quarantine, refusal
from hayhooks_gunicorn.cluster.view import disk_revisions

# Where hayhooks' create_app() calls the loader, swapped for the duration of one create_app()
HOST_BUILDER = ("hayhooks.server.app", "build_immutable_host")


@contextmanager
def tolerant_loading(quarantine: Quarantine, failures: dict[str, str]) -> Iterator[None]:
    """Within the block, hayhooks' ``create_app()`` builds its durable host from what loads; *failures* gets the
    name and error of each pipeline left out."""
    import importlib

    module = importlib.import_module(HOST_BUILDER[0])
    original = getattr(module, HOST_BUILDER[1])

    def build_host(pipelines_dir: PathLike[str] | str, build: Callable[[Any], Any]) -> Any:
        from hayhooks.server.pipelines.loader import REGISTRY_ROOT
        from hayhooks.server.utils.module_loader import unload_pipeline_modules

        registry = load_what_loads(Path(pipelines_dir), quarantine, failures)
        try:
            return build(registry)
        except BaseException:
            unload_pipeline_modules(REGISTRY_ROOT)
            raise

    setattr(module, HOST_BUILDER[1], build_host)
    try:
        yield
    finally:
        setattr(module, HOST_BUILDER[1], original)


def load_what_loads(pipelines_dir: Path, quarantine: Quarantine, failures: dict[str, str]) -> Any:
    """hayhooks' ``load_pipeline_registry``, one pipeline at a time: a failure leaves that pipeline out."""
    from hayhooks.server.exceptions import PipelineModuleLoadError
    from hayhooks.server.pipelines import loader
    from hayhooks.server.pipelines.registry import ImmutablePipelineRegistry
    from hayhooks.server.utils.module_loader import unload_pipeline_modules

    candidates = discover(pipelines_dir, failures)
    _, revisions = disk_revisions(pipelines_dir)
    sys.dont_write_bytecode = True  # as hayhooks does: loading leaves the source tree unchanged
    unload_pipeline_modules(loader.REGISTRY_ROOT)
    sys.modules[loader.REGISTRY_ROOT] = module_from_spec(ModuleSpec(loader.REGISTRY_ROOT, None, is_package=True))
    registrations = []
    for name, path in candidates.items():
        revision = revisions.get(name, "")
        if (cause := quarantine.cause(name, revision)) is not None:
            failures[name] = refusal(revision, cause)
            continue
        try:
            with quarantine.loading(name, revision):
                registrations.append(loader._load_candidate(name, path))
        except PipelineModuleLoadError as e:
            failures[name] = str(e)
            unload_pipeline_modules(loader._package_name(name))
    for name, error in failures.items():
        log.error("Durable mode leaves pipeline '{}' out of this worker's set: {}", name, error)
    return ImmutablePipelineRegistry(registrations)


def discover(pipelines_dir: Path, failures: dict[str, str]) -> dict[str, Path]:
    """hayhooks' ``_discover_candidates``, where an invalid or twice-defined name costs only that name."""
    from hayhooks.server.pipelines import loader

    try:
        entries = sorted(pipelines_dir.iterdir())
    except OSError as e:
        failures["*"] = f"Pipelines directory '{pipelines_dir}' is not a readable directory: {e}"
        return {}
    candidates: dict[str, Path] = {}
    for entry in entries:
        if entry.name.startswith(".") or entry.name == "__pycache__":
            continue
        if not entry.is_dir() and entry.suffix not in loader.YAML_SUFFIXES:
            continue
        name = entry.name if entry.is_dir() else entry.stem
        if not loader._PIPELINE_NAME.fullmatch(name):
            failures[name] = f"Invalid pipeline name '{name}' derived from '{entry}': use letters, digits, '_' and '-'"
        elif name in candidates or name in failures:
            failures[name] = f"Pipeline '{name}' is defined twice: '{candidates.pop(name, name)}' and '{entry}'"
        else:
            candidates[name] = entry
    return candidates
