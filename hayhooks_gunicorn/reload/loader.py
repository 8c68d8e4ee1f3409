"""Turn one pipeline source into a prepared (set up, not yet served) hayhooks pipeline.

Wrappers load from their own directory in the shared pipelines directory, not from a temp copy as hayhooks'
startup deploy does, so ``__file__`` stays valid: files beside the wrapper and lazy relative imports work at
run time. Pipeline sources never go through bytecode caches, so an edit is never served stale because a
``.pyc`` had the same size and mtime second, and nothing is written into the shared directory.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import os
import sys
import threading
from collections.abc import Callable
from contextlib import AbstractContextManager
from importlib.abc import PathEntryFinder
from importlib.machinery import EXTENSION_SUFFIXES, SOURCE_SUFFIXES, ExtensionFileLoader, FileFinder, SourceFileLoader
from pathlib import Path
from types import ModuleType
from typing import Any

# haystack.tools and haystack.components.agents import each other: two pipelines first importing them from two
# loading threads at once fail with "cannot import name 'ComponentTool'". Imported here, once, before any load.
# ``Agent`` too: hayhooks' ``models.deployment_type`` resolves it lazily while it holds a wrapper, and the lazy
# module's optional-dependency import keeps its failure with the traceback (haystack's ``LazyImport``), which
# would pin the first wrapper loaded in a process for ever.
import haystack.tools  # noqa: F401
from hayhooks.server.utils.deploy_utils import prepare_pipeline_yaml
from hayhooks.server.utils.models import PreparedPipeline
from hayhooks.server.utils.module_loader import _PipelineModuleLoader, create_pipeline_wrapper_instance
from hayhooks.settings import settings as hayhooks_settings
from haystack.components.agents import Agent  # noqa: F401

from hayhooks_gunicorn.errors import PipelineLoadError
from hayhooks_gunicorn.reload.modules import (
    forget_finders_within_roots,
    invalidate_import_caches,
    pipeline_modules,
    unload_pipeline_modules,
)
from hayhooks_gunicorn.reload.roots import add_root, within_roots
from hayhooks_gunicorn.reload.scan import PipelineSource


class SourceOnlyLoader(SourceFileLoader):
    """Compile from source every time: without stats, importlib neither reads nor writes a ``.pyc``."""

    def path_stats(self, path: str) -> dict[str, Any]:
        raise OSError("bytecode caching is off for pipeline sources")


class _WrapperModuleLoader(_PipelineModuleLoader):
    """hayhooks' package-style loader, with the wrapper module compiled from source and the old modules unloaded
    safely while other threads import (``reload.modules``)."""

    def _clear_existing_modules(self) -> None:
        unload_pipeline_modules(self.package_name)

    def _load_wrapper_module(self) -> ModuleType:
        wrapper_path = str(self.dir_path / "pipeline_wrapper.py")
        spec = importlib.util.spec_from_file_location(
            self.wrapper_module_name,
            wrapper_path,
            loader=SourceOnlyLoader(self.wrapper_module_name, wrapper_path),
            submodule_search_locations=[],
        )
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        module.__package__ = self.package_name
        sys.modules[self.wrapper_module_name] = module
        self._modules_registered.append(self.wrapper_module_name)
        spec.loader.exec_module(module)
        return module


# What surrounds each load on its own thread (``cluster.quarantine.Quarantine.loading``)
Guard = Callable[[], AbstractContextManager[object]]

_make_finder = FileFinder.path_hook((SourceOnlyLoader, SOURCE_SUFFIXES), (ExtensionFileLoader, EXTENSION_SUFFIXES))
_hook_lock = threading.Lock()
_hook_installed = False


def _source_only_hook(path: str) -> PathEntryFinder:
    """One path hook for every pipelines root this process has followed (``roots``); others fall through."""
    if not within_roots(path):
        raise ImportError("not a pipelines directory path")
    return _make_finder(path)


def install_source_only_imports(pipelines_dir: Path) -> None:
    """Make every import of a file under *pipelines_dir* (helpers, lazy relative imports) skip bytecode.

    Called again for each directory a swapped link leads to; one hook serves them all.
    """
    global _hook_installed
    root = pipelines_dir.resolve()
    if not add_root(root):
        return
    with _hook_lock:
        if not _hook_installed:
            sys.path_hooks.insert(0, _source_only_hook)
            _hook_installed = True
    forget_finders_within_roots()


def forget_deleted_roots() -> None:
    """Drop ``sys.path`` entries hayhooks' loader added for a release that no longer exists (git-sync and the
    kubelet delete the one they swapped away from); without this ``sys.path`` grows by one entry per release."""
    # One removal at a time: loads on other threads insert into sys.path meanwhile.
    for entry in [p for p in sys.path if p and within_roots(p) and not os.path.isdir(p)]:
        with contextlib.suppress(ValueError):
            sys.path.remove(entry)


def prepare(source: PipelineSource) -> PreparedPipeline:
    """Import and set up *source*; on failure the modules of the version serving before are put back, unless a
    newer load of the name began meanwhile (this one was abandoned after the load timeout): then the modules are
    that load's, and stay."""
    if source.error:
        raise PipelineLoadError(source.error)
    if source.kind == "yaml":
        try:
            text = source.path.read_text(encoding="utf-8")
            return prepare_pipeline_yaml(source.name, source_code=text, options={"save_file": False})
        except BaseException as e:
            raise _load_error(e, f"Failed to load YAML pipeline {source.name!r}: ") from e

    attempt = _begin(source.name)
    serving_modules = pipeline_modules(source.name)
    forget_deleted_roots()
    invalidate_import_caches()
    try:
        module = _WrapperModuleLoader(source.name, source.path).load()
        # Durable wrappers load only in durable mode, as in hayhooks (module_loader.py: allow_durable); there the
        # kit's loader runs only to check a new set before the master rolls it out (master/roll_on_change.py).
        wrapper = create_pipeline_wrapper_instance(module, allow_durable=bool(hayhooks_settings.durable_mode))
    except BaseException as e:
        with _attempts_lock:
            if _attempts[source.name] == attempt:
                unload_pipeline_modules(source.name)
                sys.modules.update(serving_modules)
        raise _load_error(e) from e
    return PreparedPipeline(name=source.name, wrapper=wrapper)


# pipeline name -> number of the latest load begun in this process
_attempts: dict[str, int] = {}
_attempts_lock = threading.Lock()


def _begin(name: str) -> int:
    with _attempts_lock:
        _attempts[name] = _attempts.get(name, 0) + 1
        return _attempts[name]


def _load_error(error: BaseException, prefix: str = "") -> BaseException:
    """What a failed load raises: a ``PipelineLoadError``, also for a ``SystemExit`` (a ``setup()`` or component
    calling ``sys.exit()``), which raised on would end the load thread silently and leave the pipeline "loading"
    for ever; ``KeyboardInterrupt`` goes on."""
    if isinstance(error, KeyboardInterrupt):
        return error
    message = str(error) if isinstance(error, Exception) else f"{type(error).__name__}({error}) while loading"
    return PipelineLoadError(prefix + message)


def prepare_with_deadline(
    source: PipelineSource, timeout: float, guard: Guard = contextlib.nullcontext
) -> PreparedPipeline:
    """Run :func:`prepare` in a daemon thread, inside ``guard()``, and give up after *timeout* seconds.

    A thread cannot be killed: a hung ``setup()`` is left behind (daemon, so it never blocks the worker's exit),
    and the pipeline is reported failed while every other pipeline serves. The guard (``cluster.quarantine``'s
    loading mark) lasts as long as that thread runs, not as long as the caller waits: an abandoned ``setup()`` that
    kills the process later still names its revision.
    """
    box: dict[str, PreparedPipeline | BaseException] = {}

    def run() -> None:
        try:
            with guard():
                box["result"] = prepare(source)
        except BaseException as e:  # handed to the caller below
            box["error"] = e

    thread = threading.Thread(target=run, name=f"load-{source.name}", daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        raise PipelineLoadError(f"Loading pipeline {source.name!r} did not finish within {timeout:g}s")
    result = box.get("result") or box.get("error")
    if isinstance(result, PreparedPipeline):
        return result
    raise result if result is not None else PipelineLoadError(f"Loading pipeline {source.name!r} gave no result")


def prepare_first(
    source: PipelineSource, timeout: float, guard: Guard = contextlib.nullcontext
) -> tuple[PreparedPipeline, PipelineSource]:
    """The first of *source* and its fallbacks that loads, and which one it was.

    A name defined twice is served as hayhooks' startup deploy serves it (``server/app.py::deploy_pipelines``):
    the YAML file if it loads, else the directory (see ``reload.scan``).
    """
    errors: list[str] = []
    candidate: PipelineSource | None = source
    while candidate is not None:
        try:
            return prepare_with_deadline(candidate, timeout, guard), candidate
        except PipelineLoadError as e:
            if source.fallback is None:
                raise
            errors.append(f"'{candidate.entry}': {e}")
        candidate = candidate.fallback
    raise PipelineLoadError(f"No entry of pipeline {source.name!r} loads: " + "; ".join(errors))
