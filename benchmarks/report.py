"""Results as JSON (``latest.json``), a markdown table (``latest.md``, in docs/benchmarks.md) and a PNG chart."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.stats import rounded

RESULTS_DIR = Path(__file__).resolve().parent / "results"
README_START = "<!-- benchmarks:latest:start -->"
README_END = "<!-- benchmarks:latest:end -->"
SHARED_MACHINE = (
    "Client and server share the machine, so compare the ratios (measured side by side in the same run), "
    "not the absolute figures."
)


@dataclass(frozen=True)
class Goal:
    key: str
    op: str  # ">=", "<=", "==" or "" (recorded, no goal)
    target: float | None
    meaning: str

    def met(self, value: float | None) -> bool | None:
        if not self.op or self.target is None or value is None:
            return None
        if self.op == ">=":
            return value >= self.target
        if self.op == "<=":
            return value <= self.target
        return value == self.target

    @property
    def text(self) -> str:
        return f"{self.op} {self.target:g}" if self.op and self.target is not None else "recorded"


def goals(poll_interval_s: float = 0.5) -> list[Goal]:
    return [
        Goal("overhead_vs_naive", ">=", 0.97, "throughput, kit / naive gunicorn recipe"),
        Goal("ratio_vs_hayhooks_run", ">=", 1.0, "throughput, kit / `hayhooks run --workers 2`"),
        Goal("p99_ratio_vs_naive", "<=", 1.05, "p99 latency, kit / naive"),
        Goal("lean_vs_naive", "", None, "throughput, kit with the lean profile / naive"),
        Goal("metrics_off_vs_naive", "", None, "throughput, kit with HAYHOOKS_GUNICORN_METRICS=off / naive"),
        Goal("cpu_per_request_vs_naive", "", None, "server CPU time per request, kit / naive (lower is better)"),
        Goal("cpu_scaling_2v1", ">=", 1.8, "CPU-bound throughput, 2 workers / 1, HAYHOOKS_GUNICORN_SYNC_RUN=inline"),
        Goal("cpu_scaling_2v1_threadpool", "", None, "same with the default SYNC_RUN=threadpool (hayhooks' way)"),
        Goal("reload_p50_s", "<=", 0.5, "atomic write -> every worker serves it, inotify, p50"),
        Goal("reload_p99_s", "<=", 1.0, "same, p99"),
        Goal("reload_poll_p50_s", "<=", round(poll_interval_s + 0.5, 3), "same with polling, p50"),
        Goal("failed_during_reload", "==", 0, "failed requests during repeated reloads (kit)"),
        Goal("baseline_failed_during_reload", "", None, "same, naive recipe redeployed via /deploy_files"),
        Goal("deploy_converged_p50_s", "<=", 1.0, "POST /deploy_files -> every worker serves it, p50"),
        Goal("boot_s", "", None, "start -> every worker ready, 10 pipelines, 2 workers"),
        Goal("uss_first_worker_mb", "", None, "USS of the worker of a 1-worker server, MiB"),
        Goal("uss_extra_worker_mb", "", None, "USS of the second worker of a 2-worker server, MiB"),
        Goal("pss_4w_over_1w", "<=", 1.35, "total PSS, 4 workers / 1, MiniLM embedder, SHARE_MODELS=true (full run)"),
        Goal("pss_4w_over_1w_default", "", None, "same with the kit's defaults (libraries shared, weights per worker)"),
        Goal("naive_pss_4w_over_1w", "", None, "same, naive recipe"),
        Goal("pss_4w_over_1w_after_reload", "<=", 1.35, "same after the wrapper was replaced under load"),
        Goal("reload_rss_growth_mb", "<=", 60, "largest worker RSS growth, 20 reloads of a 20 MB pipeline, MiB"),
        Goal("naive_reload_rss_growth_mb", "", None, "same, plain hayhooks redeployed via /deploy_files"),
        Goal("scale_readyz_p50_ms_large_file", "<=", 10, "/readyz p50 ms, a 300 MB file beside a wrapper"),
        Goal("scale_cluster_p50_ms_large_file", "<=", 10, "/cluster p50 ms, same"),
        Goal("scale_idle_cpu_s_large_file", "<=", 0.3, "idle worker CPU s per 20 s, same"),
        Goal("scale_readyz_p50_ms_200", "<=", 10, "/readyz p50 ms, 200 pipelines"),
        Goal("scale_cluster_p50_ms_200", "<=", 10, "/cluster p50 ms, 200 pipelines"),
        Goal("scale_idle_cpu_s_200", "<=", 0.3, "idle worker CPU s per 20 s, 200 pipelines"),
        Goal("scale_edit_s_200", "<=", 0.3, "edit -> every worker serves it, p50, 200 pipelines"),
        Goal("scale_edit_200_over_20", "<=", 1.5, "same, 200 pipelines / 20"),
        Goal("scale_boot_s_1000", "", None, "start -> every worker ready, 1000 pipelines"),
        Goal("scale_worker_rss_mb_1000", "", None, "largest worker RSS, 1000 pipelines, MiB"),
        Goal(
            "gpu_rps_2v1", "", None, "embedding throughput per GPU, 2 workers per GPU / 1 (HAYHOOKS_GUNICORN_GPUS=auto)"
        ),
        Goal("gpu_memory_2v1", "", None, "same, memory used per GPU"),
        Goal("trial_reload_p50_s", "", None, "edit -> every worker serves it, p50, HAYHOOKS_GUNICORN_TRIAL_LOADS=true"),
        Goal("trial_reload_over_default", "", None, "same, with trial loads / without"),
        Goal("trial_peak_extra_mb", "", None, "peak PSS of the server's process tree during that reload, above before"),
        Goal("trial_peak_over_default", "", None, "same, with trial loads / without"),
        Goal(
            "quarantined_readyz_p99_ms",
            "<=",
            50,
            "/readyz p99 ms, a pipeline that killed its workers quarantined",
        ),
    ]


def _get(data: dict[str, Any], *path: str) -> Any:
    for part in path:
        if not isinstance(data, dict):
            return None
        data = data.get(part)  # type: ignore[assignment]
    return data


def _scaling(details: dict[str, Any], mode: str) -> str:
    m = details.get(mode) or {}
    return (
        f"{m.get('workers_2_rps_median')} vs {m.get('workers_1_rps_median')} rps, workers kept "
        f"{m.get('workers_2_cores_used')} vs {m.get('workers_1_cores_used')} cores busy (requests per busy core "
        f"2 workers / 1: {m.get('per_core_efficiency_2v1')}); {details.get('pipeline')}"
    )


def context(key: str, scenarios: dict[str, Any]) -> str:
    """One line saying what the figure is made of, from the scenario's details."""
    d = {name: s.get("details") or {} for name, s in scenarios.items()}
    o, c, r, a, v, b = (d.get(n, {}) for n in ("overhead", "scaling", "reload", "availability", "convergence", "boot"))
    m = d.get("memory", {})
    rps = {
        name: _get(o, name, "rps_median") for name in ("kit", "naive", "hayhooks_run", "kit_lean", "kit_metrics_off")
    }
    lines = {
        "overhead_vs_naive": f"kit {rps['kit']} rps, naive {rps['naive']} rps (medians; key: median of round ratios); "
        + "runs redone because one worker took every connection: "
        + ", ".join(f"{name} {_get(o, name, 'one_sided_runs_redone')}" for name in ("kit", "naive", "hayhooks_run")),
        "ratio_vs_hayhooks_run": f"`hayhooks run` {rps['hayhooks_run']} rps",
        "p99_ratio_vs_naive": (
            f"p99 kit {_get(o, 'kit', 'p99_ms_median')} ms, naive {_get(o, 'naive', 'p99_ms_median')} ms"
        ),
        "lean_vs_naive": f"kit lean {rps['kit_lean']} rps: no per-request INFO logs, no local trace capture",
        "metrics_off_vs_naive": f"{rps['kit_metrics_off']} rps: the cost of per-pipeline Prometheus recording"
        if rps["kit_metrics_off"] is not None
        else "measured in the full run only",
        "cpu_per_request_vs_naive": "µs per request (master + workers): "
        + ", ".join(
            f"{name} {_get(o, name, 'cpu_us_per_request_median')}"
            for name in ("kit", "naive", "hayhooks_run", "kit_lean", "kit_metrics_off")
        )
        + "; less sensitive to a busy machine than requests per second",
        "cpu_scaling_2v1": _scaling(c, "inline"),
        "cpu_scaling_2v1_threadpool": _scaling(c, "threadpool"),
        "reload_p50_s": (
            f"{r.get('changes_inotify')} changes; first worker p50 {r.get('inotify_first_worker_p50_s')} s"
        ),
        "reload_p99_s": f"max {r.get('inotify_max_s')} s, {r.get('missed_inotify')} missed",
        "reload_poll_p50_s": (
            f"{r.get('changes_poll')} changes, polling every {r.get('poll_interval_s')} s; "
            f"p99 {r.get('poll_p99_s')} s, {r.get('missed_poll')} not served within {r.get('timeout_s')} s"
        ),
        "failed_during_reload": (
            f"{_get(a, 'kit', 'requests')} requests, {_get(a, 'kit', 'swaps')} swaps, "
            f"{_get(a, 'kit', 'versions_served')} versions served"
        ),
        "baseline_failed_during_reload": (
            f"{_get(a, 'baseline_naive', 'requests')} requests, {_get(a, 'baseline_naive', 'swaps')} redeploys; "
            f"failures {_get(a, 'baseline_naive', 'failures')}"
        ),
        "deploy_converged_p50_s": (
            f"{v.get('deploys')} deploys; POST answered p50 {v.get('post_answered_p50_s')} s, "
            f"statuses {v.get('statuses')}"
        ),
        "boot_s": f"naive recipe {_get(b, 'naive', 'boot_s')} s",
        "uss_first_worker_mb": (
            f"naive recipe {_get(b, 'naive', 'uss_first_worker_mb')} MiB; master USS kit "
            f"{_get(b, 'kit', 'master_uss_mb')} MiB, naive {_get(b, 'naive', 'master_uss_mb')} MiB"
        ),
        "uss_extra_worker_mb": (
            f"naive recipe {_get(b, 'naive', 'uss_extra_worker_mb')} MiB; total PSS 1 -> 2 workers kit "
            f"{_get(b, 'kit', 'total_pss_1w_mb')} -> {_get(b, 'kit', 'total_pss_2w_mb')} MiB, naive "
            f"{_get(b, 'naive', 'total_pss_1w_mb')} -> {_get(b, 'naive', 'total_pss_2w_mb')} MiB"
        )
        + (f"; kit with --preload {_get(b, 'kit_preload', 'uss_extra_worker_mb')} MiB" if "kit_preload" in b else ""),
        "pss_4w_over_1w": (
            f"total PSS 1 / 4 workers {_get(m, 'kit', '1w', 'pss_mb')} / {_get(m, 'kit', '4w', 'pss_mb')} MiB"
        ),
        "pss_4w_over_1w_default": (
            f"{_get(m, 'kit_default', '1w', 'pss_mb')} / {_get(m, 'kit_default', '4w', 'pss_mb')} MiB; nothing "
            f"imported in the master: {_get(m, 'kit_no_preload', 'ratio')}"
        ),
        "naive_pss_4w_over_1w": f"{_get(m, 'naive', '1w', 'pss_mb')} / {_get(m, 'naive', '4w', 'pss_mb')} MiB",
        "pss_4w_over_1w_after_reload": (
            f"{_get(m, 'kit', '4w', 'failed_during_reload')} failed requests during the reload"
        ),
        "reload_rss_growth_mb": f"worker RSS before {rounded(_get(m, 'reload_rss_growth_mb', 'kit_before'), 1)} MiB",
        "naive_reload_rss_growth_mb": "hayhooks run, 1 worker",
        "gpu_rps_2v1": f"{_get(d, 'gpus', 'gpus')} GPU(s); rps per GPU {_get(d, 'gpus', 'rps_per_gpu')}",
        "gpu_memory_2v1": f"MiB per GPU {_get(d, 'gpus', 'memory_mib_per_gpu')}",
        "trial_reload_p50_s": (
            f"without trial loads {_get(d, 'trial_loads', 'default_reload_p50_s')} s; "
            f"{_get(d, 'trial_loads', 'changes')} changes of a {_get(d, 'trial_loads', 'model_mb')} MB model "
            f"whose setup() takes {_get(d, 'trial_loads', 'setup_s')} s, 2 workers"
        ),
        "trial_peak_extra_mb": f"without trial loads {_get(d, 'trial_loads', 'default_peak_extra_mb')} MiB",
        "quarantined_readyz_p99_ms": (
            f"p50 {_get(d, 'trial_loads', 'quarantined_readyz_p50_ms')} ms over "
            f"{_get(d, 'trial_loads', 'quarantined_readyz_calls')} calls, keep-alive, 2 workers"
        ),
    }
    from benchmarks.scenarios.scale import BASELINE_OF

    scale = d.get("scale", {})
    for scale_key, (setup, field) in BASELINE_OF.items():
        figure, base = _get(scale, setup, field), _get(scale, "baseline", field)
        lines[scale_key] = f"{setup.replace('_', ' ')} {_figure(figure)}, 1 small pipeline {_figure(base)}"
    return lines.get(key, "")


def _figure(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, int | float) else "—"


def summary(results: dict[str, Any]) -> dict[str, Any]:
    """The one-line JSON: every key, null where its scenario could not run."""
    return {goal.key: results["summary"].get(goal.key) for goal in goals()} | {"mode": results["mode"]}


def scenario_of(key: str, scenarios: dict[str, Any]) -> dict[str, Any]:
    for scenario in scenarios.values():
        if key in scenario.get("keys", {}):
            return scenario
    return {}


def _cell(value: Any) -> str:
    if value is None:
        return "—"
    return f"{value:g}" if isinstance(value, float) else str(value)


def markdown(results: dict[str, Any]) -> str:
    scenarios = results["scenarios"]
    m, v = results["machine"], results["versions"]
    lines = [
        f"Run `{results['mode']}` on {results['date']}, {results['elapsed_s']:.0f} s: {m['nproc']} cores "
        f"({m['cpu']}), {m['memory_gib']} GiB, load average at start {m['load_average_at_start']}; "
        f"load generator {results['load_generator']}.",
        "",
        "Versions: " + ", ".join(f"{name} {version}" for name, version in v.items()) + ".",
        "",
        f"**{SHARED_MACHINE}**",
        "",
        "| Key | Value | Goal | Met | Measured as |",
        "|---|---|---|---|---|",
    ]
    for goal in goals(results.get("poll_interval_s", 0.5)):
        value = results["summary"].get(goal.key)
        scenario = scenario_of(goal.key, scenarios)
        met = goal.met(value)
        mark = {True: "met", False: "**not met**", None: "—"}[met]
        how = scenario.get("error") if value is None and scenario.get("error") else context(goal.key, scenarios)
        if value is None and not scenario.get("error") and goal.key not in results["summary"]:
            how = "not run (scenario not selected)"
        lines.append(f"| `{goal.key}` | {_cell(value)} | {goal.text} | {mark} | {goal.meaning}: {how} |")
    notes = [f"- {name}: {note}" for name, s in scenarios.items() for note in s.get("notes", [])]
    if notes:
        lines += ["", "Notes:", *notes]
    for s in scenarios.values():
        if table := _get(s, "details", "table_md"):  # a scenario's own table (scale: one row per setup)
            lines += ["", f"{s['title']}:", "", table.rstrip("\n")]
    return "\n".join(lines) + "\n"


def write(results: dict[str, Any], directory: Path = RESULTS_DIR) -> dict[str, Path | str]:
    directory.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path | str] = {}
    json_path = directory / "latest.json"
    json_path.write_text(json.dumps(results, indent=2, default=str) + "\n")
    written["json"] = json_path
    md_path = directory / "latest.md"
    md_path.write_text(markdown(results))
    written["markdown"] = md_path
    png_path = directory / "latest.png"
    from benchmarks.chart import chart  # matplotlib, when installed, is imported only to draw

    problem = chart(results, png_path)
    written["chart"] = problem or png_path
    return written


def embed_in_readme(readme: Path, table: str, chart_link: str | None = "benchmarks/results/latest.png") -> bool:
    """Replace the text between the page's benchmark markers (docs/benchmarks.md) with the latest table and chart."""
    text = readme.read_text()
    pattern = re.compile(re.escape(README_START) + r".*?" + re.escape(README_END), re.DOTALL)
    if not pattern.search(text):
        return False
    image = f"\n![Benchmark chart]({chart_link})\n" if chart_link else ""
    block = f"{README_START}\n{table}{image}{README_END}"
    readme.write_text(pattern.sub(lambda _: block, text, count=1))
    return True
