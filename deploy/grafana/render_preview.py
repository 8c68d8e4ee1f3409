"""Draw the dashboard's panels, laid out as in Grafana, from query results a real Prometheus gave.

    HAYHOOKS_DASHBOARD_DATA=/tmp/dashboard.json python -m pytest tests/test_observability.py -k dashboard_queries
    python deploy/grafana/render_preview.py /tmp/dashboard.json docs/dashboard.png

The integration test saves every panel of hayhooks-dashboard.json with the answers to its queries (a 2-worker kit
scraped every second for a minute); this draws them with matplotlib (the ``bench`` extra). It is a picture of the
data behind the dashboard, not a Grafana screenshot.
"""

from __future__ import annotations

import json
import math
import re
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import PercentFormatter  # noqa: E402

WIDTH_IN = 18.0
UNIT_HEIGHT_IN = 0.36
UNITS = {"s": "seconds", "reqps": "requests/s"}
# Labels a table leaves out: the same for every row here.
TABLE_HIDES = {"__name__", "job", "instance", "namespace", "pod", "severity"}


def legend(fmt: str, metric: dict[str, str]) -> str:
    labels = {k: v for k, v in metric.items() if k != "__name__"}
    if not fmt:
        return ", ".join(f"{k}={v}" for k, v in labels.items()) or "value"
    return re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: labels.get(m.group(1), ""), fmt)


def series(panel: dict, start: float) -> list[tuple[str, list[float], list[float]]]:
    out = []
    for target in panel["targets"]:
        for s in target["result"]:
            xs = [float(t) - start for t, _ in s["values"]]
            ys = [float(v) for _, v in s["values"]]
            out.append((legend(target["legendFormat"], s["metric"]), xs, ys))
    return out


def last(values: list[float]) -> float:
    return next((v for v in reversed(values) if math.isfinite(v)), math.nan)


def formatted(value: float, unit: str) -> str:
    if unit == "percentunit":
        return f"{value:.1%}"
    if unit == "s":
        return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.2f} s"
    return f"{value:.3g}" + (" req/s" if unit == "reqps" else "")


def draw(panel: dict, ax: plt.Axes, start: float) -> None:
    defaults = panel["fieldConfig"]["defaults"]
    unit = defaults.get("unit", "short")
    data = series(panel, start)
    ax.set_title(panel["title"], loc="left", fontsize=10, fontweight="bold")
    if panel["type"] == "stat":
        ax.axis("off")
        value = last(data[0][2]) if data else math.nan
        steps = defaults.get("thresholds", {}).get("steps", [])
        red = any(s["value"] is not None and value >= s["value"] for s in steps if s["color"] == "red")
        text = formatted(value, unit) if math.isfinite(value) else "No data"
        ax.text(0.5, 0.4, text, ha="center", va="center", fontsize=26, color="tab:red" if red else "tab:green")
    elif panel["type"] == "table":
        # Grafana runs a table's query at the dashboard's end time: keep the series present there.
        ax.axis("off")
        end = max((s["values"][-1][0] for t in panel["targets"] for s in t["result"]), default=None)
        rows = [
            "   ".join(f"{k}={v}" for k, v in s["metric"].items() if k not in TABLE_HIDES)
            for t in panel["targets"]
            for s in t["result"]
            if s["values"][-1][0] == end
        ]
        ax.text(0, 0.95, "\n".join(rows[:8] or ["No data"]), va="top", family="monospace", fontsize=8)
    else:
        bars = defaults.get("custom", {}).get("drawStyle") == "bars"
        for name, xs, ys in data:
            if bars:
                ax.bar(xs, ys, width=1.0, label=name, alpha=0.8)
            else:
                ax.plot(xs, ys, label=name, linewidth=1.2)
        if unit == "percentunit":
            ax.yaxis.set_major_formatter(PercentFormatter(1.0))
        ax.set_ylabel(UNITS.get(unit, ""), fontsize=8)
        ax.set_xlabel("seconds since the traffic started", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
        if data:
            ax.legend(fontsize=7, loc="upper left", ncol=2)


def main(data_path: str, png_path: str) -> None:
    saved = json.loads(Path(data_path).read_text())
    panels = saved["panels"]
    grid_height = max(p["gridPos"]["y"] + p["gridPos"]["h"] for p in panels)
    header_in = 0.8
    height_in = grid_height * UNIT_HEIGHT_IN + header_in
    fig = plt.figure(figsize=(WIDTH_IN, height_in))
    fig.suptitle(
        "hayhooks-gunicorn dashboard: the answers a real Prometheus gave to each panel's queries, scraping a 2-worker "
        "kit in the test suite\n(drawn with matplotlib from deploy/grafana/hayhooks-dashboard.json; not a Grafana "
        "screenshot)",
        fontsize=11,
        y=1 - 0.15 / height_in,
    )
    for panel in panels:
        g = panel["gridPos"]
        left, width = g["x"] / 24, g["w"] / 24
        top = 1 - (header_in + g["y"] * UNIT_HEIGHT_IN) / height_in
        height = g["h"] * UNIT_HEIGHT_IN / height_in
        if panel["type"] == "row":
            fig.text(0.01, top - height / 2, panel["title"], fontsize=12, fontweight="bold", va="center")
            continue
        pad_x, pad_top, pad_bottom = 0.035, 0.45 / height_in, 0.5 / height_in
        box = [left + pad_x, top - height + pad_bottom, width - 1.4 * pad_x, height - pad_top - pad_bottom]
        draw(panel, fig.add_axes(box), saved["start"])
    fig.savefig(png_path, dpi=80)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(*sys.argv[1:])
