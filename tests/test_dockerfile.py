"""deploy/Dockerfile, read statically: no Docker daemon runs where the tests do, and a build would need the base image
and the package index. What can be checked without them is: the stages, the build arguments each stage declares,
the constrained installs, the dependency list the first stage computes (run here on the real pyproject.toml), the
build context ``.dockerignore`` leaves, and that the durable overlay's docs build with the durable extra."""

from __future__ import annotations

import fnmatch
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
DOCKERFILE = REPO / "deploy" / "Dockerfile"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order, continuation lines joined, comments dropped."""
    joined = re.sub(
        r"\\\n\s*",
        " ",
        "\n".join(line for line in DOCKERFILE.read_text().splitlines() if not line.lstrip().startswith("#")),
    )
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in joined.splitlines() if line.strip()]


def stages() -> list[list[tuple[str, str]]]:
    result: list[list[tuple[str, str]]] = []
    for instruction in instructions():
        if instruction[0] == "FROM":
            result.append([])
        if result:
            result[-1].append(instruction)
    return result


def test_a_wheelhouse_stage_and_a_runtime_that_installs_from_it_without_keeping_it() -> None:
    build, runtime = stages()
    assert re.fullmatch(r"\$\{PYTHON_IMAGE\} AS (\w+)", build[0][1])
    name = build[0][1].split()[-1]
    assert runtime[0][1] == "${PYTHON_IMAGE}"
    # The runtime copies nothing in: the wheelhouse is mounted for the install only.
    assert not [args for op, args in runtime if op in {"COPY", "ADD"}]
    install = next(args for op, args in runtime if op == "RUN" and "pip install" in args)
    assert f"--mount=type=bind,from={name},source=/wheels,target=/wheels" in install
    assert "--no-index" in install and "-c /wheels/constraints.txt" in install
    assert '"hayhooks-gunicorn[${EXTRAS}]"' in install
    # Every pip call of the build stage is constrained by the tested versions.
    for op, args in build:
        if op == "RUN" and "pip wheel" in args:
            assert "-c constraints.txt" in args or "--no-deps" in args, args
    # The dependency layer comes before the code (and the README): editing them keeps it cached.
    copies = [args for op, args in build if op == "COPY"]
    assert copies[0] == "pyproject.toml constraints.txt ./"
    assert build.index(("COPY", copies[0])) < next(i for i, (op, a) in enumerate(build) if "pip wheel" in a)


def test_each_stage_declares_the_build_arguments_it_uses() -> None:
    """An ARG before the first FROM is visible to FROM lines only; a stage sees the ones it declares again."""
    first = instructions().index(("FROM", stages()[0][0][1]))
    assert [args for op, args in instructions()[:first] if op == "ARG"] == ["PYTHON_IMAGE=python:3.11-slim"]
    for stage in stages():
        declared = {args.split("=")[0] for op, args in stage if op == "ARG"}
        used = {name for op, args in stage[1:] if op != "ENV" for name in re.findall(r"\$\{(\w+)\}", args)}
        used |= {name for op, args in stage if op == "RUN" for name in re.findall(r'os\.environ\["(\w+)"\]', args)}
        assert "EXTRAS" in used and used <= declared, (stage[0], used, declared)


def requirements_for(extras: str, tmp_path: Path) -> list[str]:
    """Run the build stage's dependency command on the repository's pyproject.toml."""
    command = next(args for op, args in stages()[0] if op == "RUN" and "tomllib" in args).split(" > requirements.txt")[
        0
    ]
    argv = shlex.split(command)
    assert argv[:2] == ["python", "-c"]
    (tmp_path / "pyproject.toml").write_bytes((REPO / "pyproject.toml").read_bytes())
    env = {**os.environ, "EXTRAS": extras, "PIPELINE_PACKAGES": ""}
    result = subprocess.run([sys.executable, "-c", argv[2]], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return [line for line in result.stdout.splitlines() if line]


@pytest.mark.skipif(sys.version_info < (3, 11), reason="the image's command reads pyproject.toml with tomllib (3.11+)")
def test_extras_select_the_kits_optional_dependencies(tmp_path: Path) -> None:
    import tomllib

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert requirements_for("", tmp_path) == project["dependencies"]
    durable = requirements_for("durable", tmp_path)
    assert durable == project["dependencies"] + project["optional-dependencies"]["durable"]
    assert any(r.startswith("hayhooks[durable]") for r in durable)  # hayhooks' extra that brings the redis client
    assert requirements_for(" durable , chainlit", tmp_path)[-3:] == project["optional-dependencies"]["chainlit"]
    with pytest.raises(AssertionError):
        requirements_for("no-such-extra", tmp_path)  # a misspelled extra fails the build


def test_dockerignore_leaves_out_caches_tests_and_benchmarks_but_not_what_the_build_copies() -> None:
    patterns = [p for p in (REPO / ".dockerignore").read_text().splitlines() if p and not p.startswith("#")]
    for needed in (".mypy_cache", "tests", "benchmarks", ".venv", ".git", ".pytest_cache", ".ruff_cache"):
        assert needed in patterns, needed
    copied = [path for stage in stages() for op, args in stage if op == "COPY" for path in args.split()[:-1]]
    assert copied
    for path in copied:
        assert not any(fnmatch.fnmatch(path, pattern) for pattern in patterns), path


def test_durable_overlay_and_its_docs_build_the_image_with_the_durable_extra() -> None:
    overlay = (REPO / "deploy" / "kubernetes" / "overlays" / "durable" / "kustomization.yaml").read_text()
    build = "docker build -f deploy/Dockerfile --build-arg EXTRAS=durable"
    assert build in overlay
    assert build in (REPO / "docs" / "operations.md").read_text()  # where the overlays are described
    assert "--build-arg EXTRAS=durable" in DOCKERFILE.read_text()
