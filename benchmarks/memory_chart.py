"""``python -m benchmarks.memory_chart RESULTS.json OUT.png``: the chart of docs/memory.md from a memory run."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from benchmarks.chart import _bars
from benchmarks.report import _get, goals

VARIANTS = (
    ("naive", "naive recipe"),
    ("kit_no_preload", "kit, nothing\nin the master"),
    ("kit_default", "kit defaults\n(libraries shared)"),
    ("kit", "kit, SHARE_MODELS"),
)


def draw(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    memory = _get(results, "scenarios", "memory") or {}
    details, keys = memory.get("details") or {}, memory.get("keys") or {}
    by_key = {g.key: g for g in goals()}
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.4))
    ratios = [(label, _get(details, name, "ratio")) for name, label in VARIANTS]
    target = by_key["pss_4w_over_1w"]
    _bars(axes[0], ratios, "Total PSS, 4 workers / 1 (MiniLM embedder; dashed: goal)", [target] * len(ratios))
    growth = [
        ("plain hayhooks,\n20 redeploys", keys.get("naive_reload_rss_growth_mb")),
        ("kit, 20 hot reloads", keys.get("reload_rss_growth_mb")),
    ]
    _bars(axes[1], growth, "Worker RSS growth, MiB (pipeline holding 20 MB)", [by_key["reload_rss_growth_mb"]] * 2)
    fig.suptitle(f"hayhooks-gunicorn memory ({results['date'][:10]}, {results['machine']['nproc']} cores)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    draw(json.loads(Path(sys.argv[1]).read_text()), Path(sys.argv[2]))
