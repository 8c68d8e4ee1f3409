"""Write hayhooks-dashboard.json, the Grafana dashboard of hayhooks-gunicorn, from the panels listed below.

    python deploy/grafana/build_dashboard.py            # rewrite hayhooks-dashboard.json beside this file
    python deploy/grafana/build_dashboard.py --stdout   # print it instead

Standard library only; edit the panels here, never the JSON. The queries use two dashboard variables,
``${datasource}`` (a Prometheus data source) and ``$pipeline`` (one or more pipelines, matched as a regex), and
Grafana's own ``$__rate_interval``. A test runs every query against a real Prometheus scraping a real kit.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

OUTPUT = Path(__file__).with_name("hayhooks-dashboard.json")
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
GRID_WIDTH = 24

P = 'pipeline=~"$pipeline"'
RATE = "[$__rate_interval]"
REQUESTS = f"rate(hayhooks_pipeline_requests_total{{{P}}}{RATE})"
ERRORS = f'rate(hayhooks_pipeline_requests_total{{{P},status=~"5.."}}{RATE})'
RELOADS = f"hayhooks_pipeline_reloads_total{{{P}}}{RATE}"
REVISIONS = f"hayhooks_pipeline_revision_info{{{P}}}"


def quantile(q: float, histogram: str) -> str:
    return f"histogram_quantile({q}, sum by (pipeline, le) (rate({histogram}_bucket{{{P}}}{RATE})))"


@dataclass
class Panel:
    title: str
    description: str
    # (PromQL, legend) pairs
    queries: list[tuple[str, str]]
    unit: str = "short"
    kind: str = "timeseries"  # or "stat", "table", "bars"
    width: int = 12
    height: int = 8
    # (colour, from value) steps, for a stat that turns red
    thresholds: list[tuple[str, float | None]] = field(default_factory=list)


def stat(title: str, description: str, expr: str, unit: str = "short", red_from: float | None = None) -> Panel:
    thresholds = [("green", None), ("red", red_from)] if red_from is not None else []
    return Panel(title, description, [(expr, "")], unit, kind="stat", width=6, height=4, thresholds=thresholds)


def percentiles(histogram: str, qs: tuple[float, ...]) -> list[tuple[str, str]]:
    return [(quantile(q, histogram), f"{{{{pipeline}}}} p{round(q * 100)}") for q in qs]


ROWS: list[tuple[str, list[Panel]]] = [
    (
        "Overview",
        [
            stat("Request rate", "Pipeline calls per second, all workers.", f"sum({REQUESTS})", "reqps"),
            stat(
                "5xx ratio",
                "Share of calls answered with a 5xx status.",
                f"sum({ERRORS}) / sum({REQUESTS})",
                "percentunit",
            ),
            stat("Live workers", "Worker processes loading or serving, all masters.", "sum(hayhooks_workers)"),
            stat(
                "Failed loads",
                "Workers whose last load of a pipeline failed (alert HayhooksPipelineLoadFailed).",
                f"sum(hayhooks_pipeline_load_failed{{{P}}})",
                red_from=1,
            ),
        ],
    ),
    (
        "Traffic",
        [
            Panel(
                "Request rate by pipeline",
                "Calls per second to each pipeline.",
                [(f"sum by (pipeline) ({REQUESTS})", "{{pipeline}}")],
                "reqps",
            ),
            Panel(
                "Requests by status",
                "Calls per second by HTTP status (499: the client left before the answer started).",
                [(f"sum by (pipeline, status) ({REQUESTS})", "{{pipeline}} {{status}}")],
                "reqps",
            ),
            Panel(
                "5xx ratio by pipeline",
                "Share of each pipeline's calls answered with a 5xx status.",
                [(f"sum by (pipeline) ({ERRORS}) / sum by (pipeline) ({REQUESTS})", "{{pipeline}}")],
                "percentunit",
            ),
            Panel(
                "Latency by pipeline",
                "From the request to the last byte of the answer, streams included.",
                percentiles("hayhooks_pipeline_request_duration_seconds", (0.5, 0.9, 0.99)),
                "s",
            ),
        ],
    ),
    (
        "Workers and revisions",
        [
            Panel(
                "Live workers by master",
                "Live workers of each master (scrape target), and hayhooks:workers_expected from the rules.",
                [("sum by (instance) (hayhooks_workers)", "{{instance}}"), ("hayhooks:workers_expected", "expected")],
            ),
            Panel(
                "Revisions served per pipeline",
                "More than 1: the workers disagree on the pipeline's revision.",
                [(f"count by (pipeline) (count by (pipeline, revision) ({REVISIONS}))", "{{pipeline}}")],
            ),
            Panel(
                "Revision of each worker",
                "The revision (content hash) each live worker serves.",
                [(f"max by (pipeline, revision, worker) ({REVISIONS})", "")],
                kind="table",
            ),
            Panel(
                "Convergence lag",
                "From a change in the pipelines directory to a worker serving it.",
                percentiles("hayhooks_pipeline_convergence_seconds", (0.5, 0.99)),
                "s",
            ),
        ],
    ),
    (
        "Reloads",
        [
            Panel(
                "Reload results",
                "Loads in each worker: loaded (boot included), failed, removed.",
                [(f"sum by (pipeline, result) (increase({RELOADS}))", "{{pipeline}} {{result}}")],
                kind="bars",
            ),
            Panel(
                "Load failures by pipeline",
                "Live workers whose last load of the pipeline failed.",
                [(f"sum by (pipeline) (hayhooks_pipeline_load_failed{{{P}}})", "{{pipeline}}")],
            ),
            Panel(
                "Load time",
                "Time a successful load and its setup() took.",
                percentiles("hayhooks_pipeline_load_duration_seconds", (0.9,)),
                "s",
            ),
            Panel(
                "Alerts",
                "Alerts of deploy/prometheus/hayhooks-rules.yml, pending or firing.",
                [('ALERTS{alertname=~"Hayhooks.*"}', "")],
                kind="table",
            ),
        ],
    ),
]


def panel_json(panel: Panel, panel_id: int, x: int, y: int) -> dict:
    table = panel.kind == "table"
    targets = [
        {"refId": chr(ord("A") + i), "datasource": DATASOURCE, "expr": expr, "legendFormat": legend}
        | ({"format": "table", "instant": True} if table else {})
        for i, (expr, legend) in enumerate(panel.queries)
    ]
    defaults: dict = {"unit": panel.unit}
    if panel.thresholds:
        steps = [{"color": color, "value": value} for color, value in panel.thresholds]
        defaults["thresholds"] = {"mode": "absolute", "steps": steps}
    if panel.kind == "bars":
        defaults["custom"] = {"drawStyle": "bars", "fillOpacity": 80, "stacking": {"mode": "normal"}}
    options: dict = {"legend": {"displayMode": "list", "placement": "bottom", "showLegend": True}}
    if panel.kind == "stat":
        options = {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False}}
    elif table:
        options = {"showHeader": True}
    return {
        "id": panel_id,
        "type": "timeseries" if panel.kind == "bars" else panel.kind,
        "title": panel.title,
        "description": panel.description,
        "datasource": DATASOURCE,
        "gridPos": {"h": panel.height, "w": panel.width, "x": x, "y": y},
        "fieldConfig": {"defaults": defaults, "overrides": []},
        "options": options,
        "targets": targets,
    } | ({"transformations": [{"id": "organize", "options": {"excludeByName": {"Time": True}}}]} if table else {})


def dashboard() -> dict:
    panels: list[dict] = []
    y = 0
    for row_title, row in ROWS:
        grid = {"h": 1, "w": GRID_WIDTH, "x": 0, "y": y}
        panels.append({"id": len(panels) + 1, "type": "row", "title": row_title, "gridPos": grid, "panels": []})
        y += 1
        x = 0
        for panel in row:
            if x + panel.width > GRID_WIDTH:
                x, y = 0, y + panel.height
            panels.append(panel_json(panel, len(panels) + 1, x, y))
            x += panel.width
        y += row[-1].height
    pipeline_query = "label_values(hayhooks_pipeline_reloads_total, pipeline)"
    return {
        "title": "hayhooks-gunicorn",
        "uid": "hayhooks-gunicorn",
        "description": "Pipelines served by hayhooks-gunicorn: traffic, latency, workers, revisions and reloads.",
        "tags": ["hayhooks", "haystack", "gunicorn"],
        "editable": True,
        "graphTooltip": 1,
        "refresh": "30s",
        "schemaVersion": 39,
        "time": {"from": "now-1h", "to": "now"},
        "timezone": "browser",
        "templating": {
            "list": [
                {"name": "datasource", "label": "Data source", "type": "datasource", "query": "prometheus"},
                {
                    "name": "pipeline",
                    "label": "Pipeline",
                    "type": "query",
                    "datasource": DATASOURCE,
                    "query": {"query": pipeline_query, "refId": "pipeline"},
                    "definition": pipeline_query,
                    "refresh": 2,
                    "includeAll": True,
                    "multi": True,
                    "allValue": ".*",
                    "current": {"text": ["All"], "value": ["$__all"]},
                    "sort": 1,
                },
            ]
        },
        "panels": panels,
    }


def render() -> str:
    return json.dumps(dashboard(), indent=2) + "\n"


if __name__ == "__main__":
    if sys.argv[1:] == ["--stdout"]:
        sys.stdout.write(render())
    elif sys.argv[1:]:
        sys.exit(__doc__)
    else:
        OUTPUT.write_text(render())
