"""The interpreter's import state, shared by loads running on several threads at once.

A worker loads pipelines on parallel threads (``reload.reconcile``) while requests import lazily (a wrapper's
``from .helper import X`` in ``run_api``), so ``sys.modules`` and ``sys.path_importer_cache`` change under a load.
Two of the calls a load makes were not safe with that, and failed a pipeline's load at random on a busy machine,
most often at boot where every pipeline loads at once (seen in ``test_a_dangling_link_a_broken_release_and_
deploy_calls`` as one worker answering 404 for a pipeline the other served):

- hayhooks' ``module_loader.pipeline_modules`` walks ``sys.modules`` in a comprehension: an import on another
  thread raises "dictionary changed size during iteration". Here the walk reads a copy (``dict.copy`` runs no
  Python code, so no other thread runs in between).
- ``importlib.invalidate_caches()`` deletes the ``None`` entries of ``sys.path_importer_cache`` from a list it
  took first (``importlib._bootstrap_external.PathFinder.invalidate_caches``): two threads calling it at once
  delete the same entry and one gets ``KeyError: '.../python311.zip'`` (the same race in salt:
  https://github.com/saltstack/salt/pull/69790). Here the calls take turns.
"""

from __future__ import annotations

import importlib
import sys
import threading
from types import ModuleType

from hayhooks_gunicorn.reload.roots import within_roots

_import_caches_lock = threading.Lock()


def pipeline_modules(name: str) -> dict[str, ModuleType]:
    """The ``sys.modules`` entries of pipeline package *name*: the package itself and its submodules."""
    return {m: module for m, module in sys.modules.copy().items() if m == name or m.startswith(f"{name}.")}


def unload_pipeline_modules(name: str) -> None:
    """Remove pipeline package *name* and its submodules from ``sys.modules``."""
    for module in pipeline_modules(name):
        sys.modules.pop(module, None)


def invalidate_import_caches() -> None:
    """``importlib.invalidate_caches()``, one thread at a time."""
    with _import_caches_lock:
        importlib.invalidate_caches()


def forget_finders_within_roots() -> None:
    """Drop the cached path finders of every pipelines root, so the source-only path hook is asked again.

    Under the same lock as :func:`invalidate_import_caches`: an entry removed while it runs would be its
    ``KeyError``.
    """
    with _import_caches_lock:
        for cached in [p for p in list(sys.path_importer_cache) if within_roots(p)]:
            sys.path_importer_cache.pop(cached, None)
