"""Import, in the master before it forks, the libraries every worker would import on its own.

A worker's memory is mostly what its imports build on the heap: hayhooks' app, Haystack, and whatever the
pipelines import (torch, transformers, ... for a model). Imported once in the master, those pages are shared
copy-on-write by every worker instead of built N times. Measured with the MiniLM embedder: total PSS with
4 workers was 2.11x that of 1 worker when each worker imported its own libraries, 1.28x with the libraries
imported in a bare parent first (see docs/memory.md).

Only imports run here, never a pipeline's own code: the modules come from the wrappers' ``import`` statements,
read with ``ast`` (not executed), and from YAML pipelines' component ``type:`` paths. A module that fails to
import is left to the workers, which report the failure as they load. No inference runs in the master and
importing starts no threads (torch's pools start on the first operation), so forking after it is safe. Then
``gc.freeze()`` moves everything to the permanent generation, so the workers' collections do not write to (and
so copy) the shared pages.
"""

from __future__ import annotations

import ast
import gc
import importlib
import importlib.util
import sys
import threading
from collections.abc import Iterable
from pathlib import Path

import yaml

# What every worker imports to build its app, whatever the pipelines are.
SERVER_MODULES = ("hayhooks.server.app", "haystack", "hayhooks_gunicorn.worker.app")


def wrapper_imports(source: str) -> set[str]:
    """Absolute module names a Python source imports, anywhere in it (``setup()`` often imports lazily)."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return set()
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def yaml_component_modules(source: str) -> set[str]:
    """Modules of a YAML pipeline's components (``type: haystack.components.builders.PromptBuilder``)."""
    try:
        data = yaml.safe_load(source)
    except yaml.YAMLError:
        return set()
    components = data.get("components") if isinstance(data, dict) else None
    if not isinstance(components, dict):
        return set()
    types = [c.get("type") for c in components.values() if isinstance(c, dict)]
    return {t.rsplit(".", 1)[0] for t in types if isinstance(t, str) and "." in t}


def pipeline_imports(pipelines_dir: Path) -> set[str]:
    """Every module the pipelines of *pipelines_dir* import, except their own (local) modules."""
    from hayhooks_gunicorn.reload import ignored

    names: set[str] = set()
    local: set[str] = set()
    try:
        entries = sorted(pipelines_dir.iterdir())
    except OSError:
        return set()
    for entry in entries:
        if ignored(entry.name):
            continue
        local.add(entry.name if entry.is_dir() else entry.stem)
        try:
            if entry.is_dir():
                for path in entry.rglob("*.py"):
                    if not any(ignored(part) for part in path.relative_to(entry).parts):
                        names |= wrapper_imports(path.read_text(errors="replace"))
            elif entry.suffix in (".yml", ".yaml"):
                names |= yaml_component_modules(entry.read_text(errors="replace"))
        except OSError:
            continue
    return {n for n in names if n.split(".", 1)[0] not in local}


def importable(name: str) -> bool:
    """Whether *name* resolves to an installed module, without importing it (only its parents)."""
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError, AttributeError):
        return False


def preload(modules: Iterable[str]) -> tuple[list[str], dict[str, str]]:
    """Import each module; returns what was imported and, by name, why a module was not."""
    imported: list[str] = []
    failed: dict[str, str] = {}
    for name in sorted(set(modules)):
        if name in sys.modules:
            continue
        if not importable(name):
            continue  # a name the pipeline's own code defines, or an object: the worker will see
        try:
            importlib.import_module(name)
            imported.append(name)
        except BaseException as e:  # an import's own sys.exit() must not stop the master
            if isinstance(e, KeyboardInterrupt):
                raise
            failed[name] = f"{type(e).__name__}: {e}"
    return imported, failed


def preload_for(pipelines_dir: Path) -> tuple[list[str], dict[str, str], list[str]]:
    """Import the server's and the pipelines' libraries, then freeze the heap for forking.

    Returns what was imported, what failed (name -> error), and the names of threads the imports started
    (a fork copies none of them: a library that needs its thread in the worker starts it again).
    """
    before = {t.ident for t in threading.enumerate()}
    imported, failed = preload([*SERVER_MODULES, *pipeline_imports(pipelines_dir)])
    started = [t.name for t in threading.enumerate() if t.ident not in before]
    gc.collect()
    gc.freeze()
    return imported, failed, started
