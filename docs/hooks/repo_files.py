"""MkDocs hook: serve the benchmark charts from where the benchmark run writes them (``benchmarks/results/*.png``).

MkDocs serves only files under ``docs/``; copying the charts there would leave two copies to keep in step. The
pages link them as ``benchmarks/results/<name>.png``, the path ``python -m benchmarks --readme`` writes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mkdocs.structure.files import File, Files

REPO = Path(__file__).resolve().parents[2]


def on_files(files: Files, config: Any) -> Files:
    for chart in sorted((REPO / "benchmarks" / "results").glob("*.png")):
        files.append(File.generated(config, f"benchmarks/results/{chart.name}", abs_src_path=str(chart)))
    return files
