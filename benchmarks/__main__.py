"""``python -m benchmarks [--quick]``: run every scenario, write the results, print the one-line JSON summary last."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

from benchmarks import load, machine, report
from benchmarks.plan import Plan, full_plan, quick_plan, tiny_plan
from benchmarks.probe import ProbeError
from benchmarks.scenarios import Scenario, Unavailable, all_scenarios
from benchmarks.servers import ServerError, stop_all

# A scenario that cannot run here is reported (null + reason); anything else is a fault of the harness.
EXPECTED = (Unavailable, ServerError, ProbeError)


def parse(argv: list[str] | None) -> argparse.Namespace:
    names = [s.name for s in all_scenarios()]
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller counts: under 5 minutes on 2 cores")
    parser.add_argument("--tiny", action="store_true", help=argparse.SUPPRESS)  # the test suite's smoke run
    parser.add_argument("--only", default="", help=f"comma-separated scenarios to run (default: all of {names})")
    parser.add_argument("--results", type=Path, default=report.RESULTS_DIR, help="where latest.{json,md,png} go")
    parser.add_argument("--keep-logs", action="store_true", help="keep the servers' logs and work directory")
    parser.add_argument(
        "--readme", type=Path, default=None, help="also embed the table in this page (docs/benchmarks.md)"
    )
    args = parser.parse_args(argv)
    unknown = set(filter(None, args.only.split(","))) - set(names)
    if unknown:
        parser.error(f"unknown scenario(s) {sorted(unknown)}; choose from {names}")
    return args


def run_scenario(scenario: Scenario, plan: Plan) -> tuple[dict[str, Any], bool]:
    """Returns the scenario's record and whether the harness itself failed."""
    started = time.monotonic()
    record: dict[str, Any] = {"title": scenario.title, "keys": dict.fromkeys(scenario.keys), "error": None}
    harness_failed = False
    try:
        measured = scenario.run(plan)
        record.update(keys=measured.keys, details=measured.details, notes=measured.notes)
    except EXPECTED as e:
        record["error"] = f"not measured: {_first_line(e)}"
    except Exception as e:
        harness_failed = True
        record["error"] = f"harness error: {type(e).__name__}: {_first_line(e)}"
        traceback.print_exc()
    finally:
        stop_all()
    record["seconds"] = round(time.monotonic() - started, 1)
    return record, harness_failed


def _first_line(error: BaseException) -> str:
    text = str(error).strip() or type(error).__name__
    return text.splitlines()[0][:300]


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    # SIGTERM ends the run like Ctrl-C: finally blocks and atexit stop every server this run started.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    workdir = Path(tempfile.mkdtemp(prefix="hg-bench-"))
    plan = (tiny_plan if args.tiny else quick_plan if args.quick else full_plan)(workdir)
    selected = [s for s in all_scenarios() if not args.only or s.name in args.only.split(",")]
    generator = load.generator_name()
    if generator == "wrk":
        generator = load.wrk_version() or "wrk"
    else:
        generator += " (wrk not found: run benchmarks/setup.sh; Python client figures are lower, ratios still hold)"
    print(f"hayhooks-gunicorn benchmarks, {plan.mode} run; load generator: {generator}", flush=True)
    started = time.monotonic()
    results: dict[str, Any] = {
        "mode": plan.mode,
        "date": machine.now(),
        "machine": machine.machine(),
        "versions": machine.versions(embedding=plan.embedding),
        "load_generator": generator,
        "shared_machine_note": report.SHARED_MACHINE,
        "poll_interval_s": plan.poll_interval_ms / 1000,
        "scenarios": {},
        "summary": {},
    }
    harness_failed = False
    try:
        for scenario in selected:
            print(f"== {scenario.name}: {scenario.title}", flush=True)
            record, failed = run_scenario(scenario, plan)
            harness_failed |= failed
            results["scenarios"][scenario.name] = record
            results["summary"].update(record["keys"])
            shown = ", ".join(f"{k}={v}" for k, v in record["keys"].items())
            print(f"   {shown} ({record['seconds']} s){'; ' + record['error'] if record['error'] else ''}", flush=True)
    finally:
        stop_all()
        if args.keep_logs:
            print(f"logs and work files kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    results["elapsed_s"] = round(time.monotonic() - started, 1)
    written = report.write(results, args.results)
    if isinstance(written["chart"], str):
        print(f"note: {written['chart']}")
    if args.readme:
        chart = written["chart"]
        # Relative to the repository root: the docs site serves benchmarks/results/ beside its pages
        # (docs/hooks/repo_files.py), so the same link works in a page under docs/ and in the README.
        root = Path(__file__).resolve().parent.parent
        chart_link = os.path.relpath(chart.resolve(), root) if isinstance(chart, Path) else None
        if not report.embed_in_readme(args.readme, report.markdown(results), chart_link):
            print(f"note: no {report.README_START} marker in {args.readme}; README not changed")
    print()
    print(report.markdown(results))
    print(f"results: {', '.join(str(p) for p in written.values())}")
    print(json.dumps(report.summary(results), separators=(",", ":")), flush=True)
    return 1 if harness_failed else 0


if __name__ == "__main__":
    sys.exit(main())
