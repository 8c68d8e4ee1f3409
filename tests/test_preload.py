"""What the master imports before it forks: the pipelines' libraries, read from their sources, never run."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

from hayhooks_gunicorn.master.preload import pipeline_imports, preload, wrapper_imports, yaml_component_modules

WRAPPER = textwrap.dedent(
    """
    import json, os.path
    from pathlib import Path
    from haystack import Pipeline
    from .helper import REPLY
    from . import data

    from hayhooks import BasePipelineWrapper

    Path(__file__).with_name("ran.txt").write_text("module code ran")


    class PipelineWrapper(BasePipelineWrapper):
        def setup(self) -> None:
            import wave
            from xml.dom import minidom
    """
)

YAML = """\
components:
  builder:
    type: haystack.components.builders.prompt_builder.PromptBuilder
    init_parameters: {}
  odd:
    type: NoDots
connections: []
"""


def test_wrapper_imports_are_read_from_the_source_lazy_ones_included() -> None:
    assert wrapper_imports(WRAPPER) == {"json", "os.path", "pathlib", "haystack", "hayhooks", "wave", "xml.dom"}
    assert wrapper_imports("def broken(:\n") == set()


def test_yaml_component_types_name_their_modules() -> None:
    assert yaml_component_modules(YAML) == {"haystack.components.builders.prompt_builder"}
    assert yaml_component_modules("components: [") == set()
    assert yaml_component_modules("- a list\n") == set()


def test_pipeline_imports_skip_the_pipelines_own_modules_and_hidden_entries(tmp_path: Path) -> None:
    (tmp_path / "rag").mkdir()
    (tmp_path / "rag" / "pipeline_wrapper.py").write_text(WRAPPER + "\nimport rag.extra\nimport other_pipe\n")
    (tmp_path / "rag" / "helper.py").write_text("import csv\nREPLY = 1\n")
    (tmp_path / "other_pipe.yml").write_text(YAML)
    (tmp_path / ".hidden").mkdir()
    (tmp_path / ".hidden" / "pipeline_wrapper.py").write_text("import tomllib\n")
    found = pipeline_imports(tmp_path)
    assert {"wave", "xml.dom", "csv", "haystack.components.builders.prompt_builder"} <= found
    assert not {"rag.extra", "other_pipe", "tomllib"} & found
    assert not (tmp_path / "rag" / "ran.txt").exists(), "a pipeline's own code ran in the master"


def test_preload_imports_what_it_can_and_reports_what_failed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "explodes_on_import.py").write_text("raise RuntimeError('no import for you')\n")
    (tmp_path / "exits_on_import.py").write_text("import sys\nsys.exit(4)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in ("explodes_on_import", "exits_on_import", "colorsys"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    imported, failed = preload(["colorsys", "explodes_on_import", "exits_on_import", "not_installed_anywhere"])
    assert imported == ["colorsys"] and "colorsys" in sys.modules
    assert failed["explodes_on_import"] == "RuntimeError: no import for you"
    assert failed["exits_on_import"] == "SystemExit: 4"
    assert "not_installed_anywhere" not in failed
