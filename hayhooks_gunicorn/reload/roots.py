"""Every real directory this process has loaded pipelines from.

After a link swap from ``rel-a`` to ``rel-b`` the package loaded from ``rel-a/x`` stays in ``sys.modules`` until
``x`` is loaded again, and hayhooks' loader leaves ``rel-a`` on ``sys.path`` (``module_loader.py``,
``_PipelineModuleLoader._add_parent_to_sys_path``). Whatever asks "is this inside the pipelines directory?"
(name shadowing in ``names``, source-only imports in ``loader``) must count all of them, not only the directory
followed now: otherwise every pipeline of ``rel-b`` would be refused as shadowing the ``rel-a`` module of its own
name.
"""

from __future__ import annotations

import threading
from pathlib import Path

_roots: set[Path] = set()
_lock = threading.Lock()


def add_root(root: Path) -> bool:
    """Remember *root* (already resolved); True when it was not known."""
    with _lock:
        if root in _roots:
            return False
        _roots.add(root)
        return True


def known_roots() -> frozenset[Path]:
    """The roots known now (they only grow: a change of this set is a new root)."""
    with _lock:
        return frozenset(_roots)


def within_roots(path: str | Path) -> bool:
    """Whether *path* is a known root or lies below one (links resolved; a deleted release still counts)."""
    try:
        resolved = Path(path or ".").resolve()
    except (OSError, RuntimeError):
        return False
    with _lock:
        return any(p in _roots for p in (resolved, *resolved.parents))
