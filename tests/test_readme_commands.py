"""The README's two commands are what CI runs, and they install the pinned versions, in either order."""

from __future__ import annotations

import re
import subprocess
from importlib import metadata
from pathlib import Path

import pytest
from conftest import REPO

READ_COMMANDS = REPO / ".ci" / "readme_commands"


def pins() -> dict[str, str]:
    """``constraints.txt`` as {normalised name: version}."""
    found: dict[str, str] = {}
    for line in (REPO / "constraints.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, version = line.partition("==")
            found[normalise(name)] = version.strip()
    return found


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_ci_reads_two_commands_from_the_readme_and_each_installs_with_the_pins() -> None:
    commands = subprocess.run([str(READ_COMMANDS)], capture_output=True, text=True, check=True).stdout.splitlines()
    serve, test = commands
    assert "pip install -c constraints.txt . " in serve and serve.endswith("gunicorn -c gunicorn.conf.py")
    assert 'pip install -c constraints.txt ".[test]"' in test and test.endswith("python -m pytest")
    ci = (REPO / ".ci" / "run").read_text()
    assert ".ci/readme_commands" in ci and "rm -rf .venv" not in ci


def test_a_readme_without_two_commands_fails_ci(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text("# x\n\n```bash\n# only one\npython3 -m venv .venv\n```\n")
    result = subprocess.run([str(READ_COMMANDS), str(readme)], capture_output=True, text=True)
    assert result.returncode == 1
    assert "holds 1 commands; expected two" in result.stderr


def test_every_requirement_of_the_test_extra_is_pinned() -> None:
    """A dependency added to pyproject.toml without its pin would resolve differently in each environment."""
    tomllib = pytest.importorskip("tomllib", reason="tomllib is in Python 3.11 and later")
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    requirements = [*project["dependencies"], *extras["test"], *extras["durable"], *extras["chainlit"]]
    names = {normalise(re.split(r"[\[<>=!~; ]", r, maxsplit=1)[0]) for r in requirements}
    assert names - set(pins()) == set()


def test_this_environment_holds_the_pinned_versions() -> None:
    """What the tests run against is what constraints.txt says (it was installed with ``-c constraints.txt``)."""
    pinned = pins()
    differ = {}
    for dist in metadata.distributions():
        name = normalise(dist.metadata["Name"])
        if name in pinned and pinned[name] != dist.version:
            differ[name] = (pinned[name], dist.version)
    assert differ == {}
