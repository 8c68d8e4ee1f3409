"""The package's imports go one way: ``hayhooks_gunicorn``'s import graph, read from its source, has no cycle.

How the graph is drawn (``ast`` over every module of the package, nothing imported):

- a node is a module of the package; a package is its ``__init__``;
- every import statement is an edge, wherever it stands: at module level, inside a function (the deploy path's
  cycle ran through ``deploys/preflight``'s import of ``worker/app`` inside a function) and under
  ``if TYPE_CHECKING:`` (``app_context`` -> ``worker/durable`` was one: a type the lower module needs from a higher
  one is a dependency that goes upwards all the same);
- ``import a.b`` and ``from a.b import x`` lead to ``a.b``; ``from a import b`` leads to ``a`` (its ``__init__``
  runs and is read) and to ``a.b`` when ``b`` is a module;
- an import of one of the importer's own packages is no edge: Python initialises (or is initialising) a module's
  packages before its body runs, so such an import orders nothing.

So inside the package, a module imports the module that defines a name, not a package that re-exports it (a
package's ``__init__`` re-exports for the code outside, lazily, as ``reload/__init__.py`` does).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "hayhooks_gunicorn"


def module_files(root: Path = PACKAGE) -> dict[str, Path]:
    files: dict[str, Path] = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        files[".".join(parts)] = path
    return files


def imported(module: str, path: Path, known: set[str]) -> set[str]:
    """The package's modules that *module*'s import statements lead to (anywhere in its body)."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    targets: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            targets.add(base)
            targets.update(f"{base}.{alias.name}" for alias in node.names)
    ancestors = {".".join(module.split(".")[:i]) for i in range(1, module.count(".") + 1)}
    return {t for t in targets if t in known and t != module and t not in ancestors}


def import_graph() -> dict[str, set[str]]:
    files = module_files()
    return {module: imported(module, path, set(files)) for module, path in files.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str]:
    """One cycle of *graph* as the list of its modules (first one repeated at the end), or ``[]``."""
    done: set[str] = set()
    for start in sorted(graph):
        path: list[str] = []
        on_path: set[str] = set()
        stack = [(start, iter(sorted(graph[start])))]
        path.append(start)
        on_path.add(start)
        while stack:
            node, children = stack[-1]
            child = next(children, None)
            if child is None:
                stack.pop()
                on_path.discard(path.pop())
                done.add(node)
            elif child in on_path:
                return [*path[path.index(child) :], child]
            elif child not in done:
                stack.append((child, iter(sorted(graph[child]))))
                path.append(child)
                on_path.add(child)
    return []


def test_the_package_import_graph_has_no_cycle() -> None:
    graph = import_graph()
    assert len(graph) > 50, "the walk found the package's modules"
    cycle = find_cycle(graph)
    assert not cycle, "import cycle: " + " -> ".join(cycle)


def test_the_walk_sees_function_level_and_type_checking_imports(tmp_path: Path) -> None:
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "sub" / "__init__.py").write_text("from pkg.sub import a\n")
    (package / "sub" / "a.py").write_text("from pkg.sub import b\n")  # its own package: no edge
    (package / "sub" / "b.py").write_text("def f():\n    from pkg import c\n")
    (package / "c.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg.sub.a import x\n")
    files = module_files(package)
    graph = {module: imported(module, path, set(files)) for module, path in files.items()}
    assert graph["pkg.sub.a"] == {"pkg.sub.b"}
    assert graph["pkg.sub.b"] == {"pkg.c"}  # "pkg" is its own package
    assert find_cycle(graph) == ["pkg.c", "pkg.sub.a", "pkg.sub.b", "pkg.c"]


LIGHT = """
import sys
import hayhooks_gunicorn.deploys.preflight, hayhooks_gunicorn.master.hooks, hayhooks_gunicorn.traces.peer
heavy = ("hayhooks.server.app", "hayhooks.server.routers", "haystack", "uvicorn_worker", "hayhooks_gunicorn.worker.")
print(sorted(m for m in sys.modules if m.startswith(heavy)))
"""
NAMES = """
from hayhooks_gunicorn import HayhooksWorker
from hayhooks_gunicorn.deploys import install_deploy_routes
from hayhooks_gunicorn.traces import install_traces
from hayhooks_gunicorn.worker import HayhooksWorker as Worker, post_worker_init
from hayhooks_gunicorn.worker.gunicorn_worker import post_worker_init as defined
assert HayhooksWorker is Worker and post_worker_init is defined and callable(install_deploy_routes)
print(install_traces.__module__)
"""


def test_the_master_and_the_preflight_caller_import_no_server_and_the_packages_keep_their_names() -> None:
    """The master's hooks, the pre-flight's caller side and the trace peer import neither hayhooks' server app and
    routers, nor Haystack, nor the worker: the packages' ``__init__`` re-export lazily, and still by the same names."""
    light = subprocess.run([sys.executable, "-c", LIGHT], capture_output=True, text=True, check=True, timeout=120)
    assert light.stdout.strip() == "[]"
    names = subprocess.run([sys.executable, "-c", NAMES], capture_output=True, text=True, timeout=120)
    assert names.stdout.strip() == "hayhooks_gunicorn.traces.route", names.stderr
