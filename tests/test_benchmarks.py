"""The benchmark harness's code paths on tiny inputs, so it does not rot; the figures live in benchmarks/results."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from benchmarks import __main__ as cli
from benchmarks import chart, load, procs, report
from benchmarks.load import LoadResult, parse_wrk, python_load
from benchmarks.pipelines import replace_wrapper, trivial, write_pipeline
from benchmarks.plan import tiny_plan
from benchmarks.scenarios import Measured, Scenario, Unavailable, clean, overhead, scale, trial_loads
from benchmarks.scenarios.overhead import summarize
from benchmarks.stats import median, paired_ratio, percentile, ratio

REPO = Path(__file__).resolve().parent.parent


def test_percentiles_interpolate_between_ranks() -> None:
    assert percentile([], 50) is None
    assert percentile([3.0], 99) == 3.0
    assert median([4, 1, 3, 2]) == 2.5
    assert percentile([1, 2, 3, 4, 5], 0) == 1
    assert percentile([1, 2, 3, 4, 5], 100) == 5
    assert percentile(list(range(101)), 99) == pytest.approx(99)
    with pytest.raises(ValueError):
        percentile([1], 101)


def test_ratios_pair_rounds_and_skip_zero_denominators() -> None:
    assert ratio(3, 0) is None
    assert ratio(None, 2) is None
    assert paired_ratio([2, 4, 9], [1, 4, 3]) == 2.0
    assert paired_ratio([1, 1], [0, 2]) == 0.5


def test_smaps_rollup_gives_uss_and_pss() -> None:
    text = "Rss:  4096 kB\nPss:  2048 kB\nShared_Clean: 1024 kB\nPrivate_Clean: 512 kB\nPrivate_Dirty: 1536 kB\n"
    memory = procs.parse_smaps_rollup(text)
    assert (memory.rss_mb, memory.pss_mb, memory.uss_mb) == (4.0, 2.0, 2.0)


def test_process_tree_and_memory_from_proc() -> None:
    parent = subprocess.Popen([sys.executable, "-c", "import subprocess, sys; subprocess.run(['sleep', '30'])"])
    try:
        deadline = time.monotonic() + 10
        while not procs.children(parent.pid) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert procs.descendants(parent.pid) == procs.children(parent.pid) != []
        assert procs.memory(parent.pid).uss_mb > 0
        assert procs.cpu_seconds(parent.pid) >= 0
    finally:
        tree = procs.descendants(parent.pid)
        parent.kill()
        parent.wait()
        for pid in tree:
            procs.signal_pid(pid, 9)
    assert not procs.alive(parent.pid)


def test_wrk_summary_is_parsed() -> None:
    line = (
        'WRK_JSON {"requests": 300, "duration_us": 2000000, "connect": 0, "read": 1, "write": 0, "status": 2, '
        '"timeout": 0, "p50_us": 1500, "p90_us": 2500, "p99_us": 9000, "mean_us": 1600.0, "max_us": 12000}'
    )
    result = parse_wrk("Running 2s test\n" + line + "\n")
    assert (result.requests, result.errors, result.rps, result.p99_ms) == (300, 3, 150.0, 9.0)
    with pytest.raises(RuntimeError):
        parse_wrk("no summary")


async def _fake_server(statuses: list[int]) -> tuple[asyncio.Server, int]:
    """Keep-alive HTTP/1.1 server answering with the given statuses in turn."""
    calls = iter(statuses * 10_000)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    (int(h.split(b":")[1]) for h in head.split(b"\r\n") if h.lower().startswith(b"content-length")), 0
                )
                await reader.readexactly(length)
                body = b'{"result": "v1:x"}'
                status = next(calls)
                writer.write(b"HTTP/1.1 %d X\r\nContent-Length: %d\r\n\r\n%s" % (status, len(body), body))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


def test_python_client_counts_requests_and_failures() -> None:
    async def scenario() -> LoadResult:
        server, port = await _fake_server([200, 200, 500])
        async with server:
            return await python_load(f"http://127.0.0.1:{port}", "/p/run", "{}", seconds=0.3, connections=2)

    result = asyncio.run(scenario())
    assert result.requests > 10
    assert 0 < result.errors < result.requests
    assert result.tool == "python-asyncio" and result.p99_ms is not None


def test_clean_refuses_figures_from_failing_runs() -> None:
    assert clean(LoadResult(10_000, 1.0, 0, 1.0, 2.0, "wrk"), "kit").requests == 10_000
    with pytest.raises(Unavailable, match="3 of 100"):
        clean(LoadResult(100, 1.0, 3, 1.0, 2.0, "wrk"), "kit")


def test_overhead_keys_are_medians_of_paired_rounds() -> None:
    def runs(*rps: float) -> list[LoadResult]:
        return [LoadResult(int(r), 1.0, 0, 1.0, 10.0, "wrk") for r in rps]

    rps = {
        "kit": runs(990, 1000),
        "naive": runs(1000, 1000),
        "hayhooks_run": runs(900, 1000),
        "kit_lean": runs(1200, 1200),
        "kit_metrics_off": runs(1100, 1100),
    }
    cpu_us = {name: [500.0, 500.0] for name in rps} | {"kit": [550.0, 600.0]}
    measured = summarize(rps, cpu_us)
    assert measured.keys["cpu_per_request_vs_naive"] == 1.15
    assert measured.keys["overhead_vs_naive"] == 0.995
    assert measured.keys["ratio_vs_hayhooks_run"] == pytest.approx(1.05, abs=0.001)
    assert measured.keys["p99_ratio_vs_naive"] == 1.0
    assert measured.details["kit"]["rps_median"] == 995.0
    del rps["kit_metrics_off"]  # a diagnostic the quick run leaves out
    assert summarize(rps).keys["metrics_off_vs_naive"] is None


def test_a_run_served_by_one_worker_is_one_sided() -> None:
    assert overhead.one_sided([2.0, 0.01])
    assert not overhead.one_sided([1.2, 0.8])
    assert not overhead.one_sided([1.0])  # one worker: nothing to balance
    assert not overhead.one_sided([0.0, 0.0])


def test_pipelines_are_written_whole_and_replaced_atomically(tmp_path: Path) -> None:
    write_pipeline(tmp_path, "p", trivial("v1"))
    replace_wrapper(tmp_path, "p", trivial("v2"))
    assert "VERSION = 'v2'" in (tmp_path / "p" / "pipeline_wrapper.py").read_text()
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["p", "pipeline_wrapper.py"]
    compile(trivial("v3"), "pipeline_wrapper.py", "exec")


def test_scale_table_gives_ratios_to_the_baseline_and_keys_from_the_counts() -> None:
    def figures(pipelines: int, readyz: float, edit: float, big: int = 0) -> scale.Figures:
        return scale.Figures(pipelines, big, 2.0 * pipelines, 100.0, 150.0, readyz, readyz, 0.1, edit)

    setups = {
        "baseline": figures(1, 2.0, 0.2),
        "20_pipelines": figures(20, 3.0, 0.2),
        "200_pipelines": figures(200, 5.0, 0.25),
        "1000_pipelines": figures(1000, 9.0, 0.3),
        "large_file": figures(1, 2.5, 0.2, big=300),
    }
    keys = scale.keys_of(setups, (20, 200, 1000))
    assert keys["scale_edit_200_over_20"] == 1.25 and keys["scale_boot_s_1000"] == 2000.0
    assert keys["scale_readyz_p50_ms_large_file"] == 2.5
    assert set(keys) == set(scale.SCENARIO.keys)
    rows = scale.table(setups).splitlines()
    assert rows[2].startswith("| 1 small | 2 | 100 |")
    assert "| 200 small | 400 (200x) |" in rows[4] and "5 (2.5x)" in rows[4]
    assert rows[6].startswith("| 1 small + 300 MB file |")


def _results(summary: dict[str, object], scenarios: dict[str, dict]) -> dict[str, object]:
    return {
        "mode": "tiny",
        "date": "2026-01-01T00:00:00+00:00",
        "elapsed_s": 1.0,
        "machine": {"nproc": 2, "cpu": "cpu", "memory_gib": 1.0, "load_average_at_start": [0.0, 0.0, 0.0]},
        "versions": {"python": "3"},
        "load_generator": "wrk",
        "poll_interval_s": 0.5,
        "summary": summary,
        "scenarios": scenarios,
    }


def test_results_are_written_as_json_markdown_and_chart(tmp_path: Path) -> None:
    results = _results(
        {"overhead_vs_naive": 0.95, "reload_p50_s": 0.2, "deploy_converged_p50_s": None},
        {
            "overhead": {"keys": {"overhead_vs_naive": 0.95}, "details": {"kit": {"rps_median": 950.0}}, "notes": []},
            "reload": {"keys": {"reload_p50_s": 0.2}, "details": {}, "notes": ["a note"]},
            "convergence": {"keys": {"deploy_converged_p50_s": None}, "error": "not measured: no deploy API"},
        },
    )
    written = report.write(results, tmp_path)
    assert json.loads((tmp_path / "latest.json").read_text())["summary"]["reload_p50_s"] == 0.2
    table = (tmp_path / "latest.md").read_text()
    assert "share the machine" in table
    assert "| `overhead_vs_naive` | 0.95 | >= 0.97 | **not met** |" in table
    assert "| `reload_p50_s` | 0.2 | <= 0.5 | met |" in table
    assert "not measured: no deploy API" in table
    assert "not run (scenario not selected)" in table  # cpu_scaling_2v1 was not selected
    assert "- reload: a note" in table
    drawn = written["chart"]
    assert drawn == tmp_path / "latest.png" and drawn.stat().st_size > 0 or "matplotlib" in str(drawn)
    line = report.summary(results)
    assert {g.key for g in report.goals()} <= set(line)
    assert line["deploy_converged_p50_s"] is None


def test_chart_is_skipped_with_a_note_without_matplotlib(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    assert "matplotlib" in (chart.chart(_results({}, {}), tmp_path / "x.png") or "")
    assert not (tmp_path / "x.png").exists()


def test_readme_block_between_markers_is_replaced(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n{report.README_START}\nold\n{report.README_END}\nafter\n")
    assert report.embed_in_readme(readme, "| new |\n")
    text = readme.read_text()
    assert "old" not in text and "| new |" in text and text.endswith("after\n")
    readme.write_text("no markers")
    assert not report.embed_in_readme(readme, "| new |")


def test_scenario_failures_are_reported_not_raised(tmp_path: Path) -> None:
    plan = tiny_plan(tmp_path)

    def unavailable(_: object) -> Measured:
        raise Unavailable("no deploy API yet")

    def broken(_: object) -> Measured:
        raise KeyError("bug")

    record, harness_failed = cli.run_scenario(Scenario("x", "X", ("k",), unavailable), plan)
    assert (record["keys"], record["error"], harness_failed) == ({"k": None}, "not measured: no deploy API yet", False)
    record, harness_failed = cli.run_scenario(Scenario("y", "Y", ("k",), broken), plan)
    assert harness_failed and record["error"].startswith("harness error: KeyError")


def test_unknown_scenario_is_a_usage_error() -> None:
    with pytest.raises(SystemExit):
        cli.parse(["--only", "nope"])


def tiny_run(scenario: str, tmp_path: Path) -> dict[str, Any]:
    """``python -m benchmarks --tiny --only <scenario>``: must exit 0; returns its last line, the JSON summary."""
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--tiny", "--only", scenario, "--results", str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=150,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.integration
def test_tiny_reload_run_end_to_end(tmp_path: Path) -> None:
    """Real servers, real files, the CLI: exits 0 and its last line is the JSON summary with every key."""
    summary = tiny_run("reload", tmp_path)
    assert {g.key for g in report.goals()} <= set(summary)
    assert summary["reload_p50_s"] is not None and summary["reload_poll_p50_s"] is not None
    saved = json.loads((tmp_path / "latest.json").read_text())
    assert saved["scenarios"]["reload"]["details"]["changes_inotify"] == 2
    assert load.generator_name() in saved["load_generator"]


@pytest.mark.integration
def test_tiny_scaling_run_measures_both_sync_run_modes(tmp_path: Path) -> None:
    """Four real servers (1 and 2 workers, inline and thread pool): both ratios and their details are recorded."""
    summary = tiny_run("scaling", tmp_path)
    assert summary["cpu_scaling_2v1"] > 0 and summary["cpu_scaling_2v1_threadpool"] > 0
    details = json.loads((tmp_path / "latest.json").read_text())["scenarios"]["scaling"]["details"]
    for mode in ("inline", "threadpool"):
        assert details[mode]["workers_1_rps_median"] > 0 and details[mode]["workers_2_rps_median"] > 0
    assert "SYNC_RUN=inline" in (tmp_path / "latest.md").read_text()


@pytest.mark.integration
def test_tiny_memory_run_measures_reload_growth_of_kit_and_plain_hayhooks(tmp_path: Path) -> None:
    summary = tiny_run("memory", tmp_path)
    assert summary["reload_rss_growth_mb"] is not None and summary["naive_reload_rss_growth_mb"] is not None
    details = json.loads((tmp_path / "latest.json").read_text())["scenarios"]["memory"]["details"]
    assert details["reloads"] == 2 and details["reload_rss_growth_mb"]["kit_before"] > 0


@pytest.mark.integration
def test_tiny_scale_run_measures_every_setup(tmp_path: Path) -> None:
    summary = tiny_run("scale", tmp_path)
    assert all(summary[key] is not None for key in scale.SCENARIO.keys)
    details = json.loads((tmp_path / "latest.json").read_text())["scenarios"]["scale"]["details"]
    assert [details[s]["pipelines"] for s in ("baseline", "2_pipelines", "3_pipelines", "4_pipelines")] == [1, 2, 3, 4]
    assert details["large_file"]["big_file_mb"] == 2
    assert "| 1 small + 2 MB file |" in (tmp_path / "latest.md").read_text()


@pytest.mark.integration
def test_tiny_trial_loads_run_measures_both_servers(tmp_path: Path) -> None:
    summary = tiny_run("trial_loads", tmp_path)
    assert all(summary[key] is not None for key in trial_loads.SCENARIO.keys)
    details = json.loads((tmp_path / "latest.json").read_text())["scenarios"]["trial_loads"]["details"]
    assert len(details["default_reload_samples_s"]) == len(details["trial_reload_samples_s"]) == 1
    assert details["default_peak_extra_mb"] is not None
    assert details["quarantined_readyz_calls"] == 3
