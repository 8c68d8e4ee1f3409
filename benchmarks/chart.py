"""The PNG chart of a run (``latest.png``) and the bars the memory chart shares: needs the ``bench`` extra."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from benchmarks.report import Goal, _get, goals


def chart(results: dict[str, Any], path: Path) -> str | None:
    """A PNG of the main figures; None when matplotlib (the `bench` extra) is missing, else an error text."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed (pip install '.[bench]'): no chart"
    s = results["summary"]
    overhead = _get(results["scenarios"], "overhead", "details") or {}
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.6))
    names = [
        ("naive", "naive"),
        ("hayhooks_run", "hayhooks run"),
        ("kit", "kit"),
        ("kit_lean", "kit (lean)"),
        ("kit_metrics_off", "kit (metrics off)"),
    ]
    # A diagnostic that was not measured is left out; a missing figure with a goal shows as n/a.
    rps = [(label, value) for key, label in names if (value := _get(overhead, key, "rps_median")) is not None]
    _bars(axes[0], rps, "Throughput, trivial pipeline, 2 workers (rps, median)", None)
    by_key = {g.key: g for g in goals(results.get("poll_interval_s", 0.5))}
    from benchmarks.scenarios import overhead, scaling

    ratio_keys = (*overhead.SCENARIO.keys, *scaling.SCENARIO.keys)
    second_keys = ("reload_p50_s", "reload_p99_s", "reload_poll_p50_s", "deploy_converged_p50_s", "boot_s")
    for ax, all_keys, title in ((axes[1], ratio_keys, "Ratios"), (axes[2], second_keys, "Seconds")):
        keys = [k for k in all_keys if s.get(k) is not None or by_key[k].op]
        items = [(key.removesuffix("_s").replace("_", " "), s.get(key)) for key in keys]
        _bars(ax, items, f"{title} (dashed: goal; green met, red not met)", [by_key[k] for k in keys])
    fig.suptitle(
        f"hayhooks-gunicorn benchmarks ({results['mode']}, {results['date'][:10]}, "
        f"{results['machine']['nproc']} cores; client and server share the machine)"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return None


COLORS = {True: "#55A868", False: "#C44E52", None: "#4C72B0"}


def _bars(ax: Any, items: list[tuple[str, Any]], title: str, targets: list[Goal] | None) -> None:
    labels = [label for label, _ in items]
    values = [value if isinstance(value, int | float) else 0 for _, value in items]
    met = [goal.met(value) for goal, (_, value) in zip(targets, items, strict=True)] if targets else [None] * len(items)
    bars = ax.bar(range(len(items)), values, color=[COLORS[m] for m in met])
    for bar, (_, value) in zip(bars, items, strict=True):
        text = "n/a" if value is None else f"{value:g}"
        ax.annotate(text, (bar.get_x() + bar.get_width() / 2, bar.get_height()), ha="center", va="bottom", fontsize=8)
    for index, goal in enumerate(targets or []):
        if goal.op and goal.target is not None:
            ax.hlines(goal.target, index - 0.4, index + 0.4, colors="black", linestyles="--")
    ax.set_xticks(range(len(items)), labels, rotation=20, ha="right", fontsize=8)
    ax.set_title(title, fontsize=10)
