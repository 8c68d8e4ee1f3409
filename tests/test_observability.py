"""The operators' kit: alert rules (checked and unit-tested with promtool), the scrape configuration, and the Grafana
dashboard, whose every query is run against a real Prometheus scraping a real kit with the rules loaded."""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import yaml
from conftest import REPO, Server, free_port, require_tool, stop_process, wait_until, write_wrapper

PROMETHEUS_DIR = REPO / "deploy" / "prometheus"
RULES = PROMETHEUS_DIR / "hayhooks-rules.yml"
SCRAPE_CONFIG = PROMETHEUS_DIR / "scrape-kubernetes.yml"
GRAFANA_DIR = REPO / "deploy" / "grafana"
DASHBOARD = GRAFANA_DIR / "hayhooks-dashboard.json"
# What the dashboard's variables become in the queries run here: every pipeline, and a 30 s rate window.
VARIABLES = {"$pipeline": ".*", "$__rate_interval": "30s"}
# Set to a file name, the integration test drives a minute of traffic and saves every panel's query results there,
# for deploy/grafana/render_preview.py to draw docs/dashboard.png from.
PREVIEW_DATA = os.environ.get("HAYHOOKS_DASHBOARD_DATA")


def prometheus_files(key: str) -> list[Path]:
    """The YAML files of deploy/prometheus/ with *key* at the top: rules (groups), rule tests (tests), configs."""
    return sorted(p for p in PROMETHEUS_DIR.glob("*.yml") if key in yaml.safe_load(p.read_text()))


RULE_FILES = prometheus_files("groups")
RULE_TESTS = prometheus_files("tests")


def alerts() -> dict[str, dict]:
    rules = [rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]]
    return {rule["alert"]: rule for rule in rules if "alert" in rule}


def filled(expr: str) -> str:
    """A dashboard query with its variables filled in as Grafana would."""
    for variable, value in VARIABLES.items():
        expr = expr.replace(variable, value)
    return expr


def dashboard_queries() -> list[tuple[str, str]]:
    """(panel title, PromQL) for every query of the dashboard."""
    panels = json.loads(DASHBOARD.read_text())["panels"]
    return [(panel["title"], filled(target["expr"])) for panel in panels for target in panel.get("targets", [])]


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    command = [require_tool("promtool", "prometheus"), *args]
    return subprocess.run(command, cwd=PROMETHEUS_DIR, capture_output=True, text=True, timeout=60)


def test_prometheus_folder_holds_one_rules_file_its_tests_and_a_scrape_config() -> None:
    assert RULE_FILES == [RULES]
    assert RULE_TESTS and prometheus_files("scrape_configs") == [SCRAPE_CONFIG]
    assert sorted(PROMETHEUS_DIR.iterdir()) == sorted([*RULE_FILES, *RULE_TESTS, SCRAPE_CONFIG])


@pytest.mark.parametrize("path", RULE_FILES, ids=lambda p: p.name)
def test_promtool_check_rules(path: Path) -> None:
    result = promtool("check", "rules", path.name)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


@pytest.mark.parametrize("path", RULE_TESTS, ids=lambda p: p.name)
def test_promtool_test_rules(path: Path) -> None:
    result = promtool("test", "rules", path.name)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_rule_tests_show_every_alert_firing_and_not_firing() -> None:
    firing: set[str] = set()
    silent: set[str] = set()
    for path in RULE_TESTS:
        for test in yaml.safe_load(path.read_text())["tests"]:
            for case in test.get("alert_rule_test", []):
                (firing if case.get("exp_alerts") else silent).add(case["alertname"])
    assert firing == set(alerts()) and silent == set(alerts())


RUNBOOK_PAGE = "docs/observability.md"  # the documentation site's observability/ page


def github_anchor(heading: str) -> str:
    """The anchor GitHub (and MkDocs' toc extension) gives a Markdown heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_every_alert_says_what_happened_and_links_its_runbook_in_the_docs() -> None:
    page_text = (REPO / RUNBOOK_PAGE).read_text()
    runbook = page_text[page_text.index("## Runbook") :]
    anchors = {github_anchor(h) for h in re.findall(r"^#+ (.+)$", runbook, re.M)}
    assert len(alerts()) == 7
    for name, rule in alerts().items():
        assert rule["labels"]["severity"] in {"warning", "critical"}, name
        annotations = rule["annotations"]
        assert annotations["summary"] and annotations["description"], name
        page, _, anchor = annotations["runbook_url"].partition("#")
        assert page == RUNBOOK_PAGE and anchor == github_anchor(name) and anchor in anchors, name


def kubernetes_free_config(targets: Path) -> dict:
    """scrape-kubernetes.yml with pod discovery replaced by a file of targets carrying the same ``__meta_kubernetes_*``
    labels (Debian's prometheus is built without Kubernetes discovery), and the rules by their absolute path."""
    config = yaml.safe_load(SCRAPE_CONFIG.read_text())
    config["rule_files"] = [str(PROMETHEUS_DIR / name) for name in config["rule_files"]]
    for job in config["scrape_configs"]:
        del job["kubernetes_sd_configs"]
        job["file_sd_configs"] = [{"files": [str(targets)]}]
    return config


def pod_targets(port: int) -> list[dict]:
    """The kit as the one pod to scrape, beside targets pod discovery also yields and the job must drop."""

    def pod(address: str, name: str, app: str = "hayhooks", port_name: str = "http", phase: str = "Running") -> dict:
        labels = {
            "__meta_kubernetes_namespace": "default",
            "__meta_kubernetes_pod_name": name,
            "__meta_kubernetes_pod_label_app_kubernetes_io_name": app,
            "__meta_kubernetes_pod_container_port_name": port_name,
            "__meta_kubernetes_pod_phase": phase,
        }
        return {"targets": [address], "labels": labels}

    return [
        pod(f"127.0.0.1:{port}", "hayhooks-7d9f-abcde"),
        pod(f"127.0.0.1:{free_port()}", "hayhooks-7d9f-abcde", port_name="git-sync"),
        pod(f"127.0.0.1:{free_port()}", "hayhooks-redis-5c4b-fghij", app="hayhooks-redis", port_name="redis"),
        pod(f"127.0.0.1:{free_port()}", "hayhooks-7d9f-klmno", phase="Pending"),
    ]


def test_scrape_config_passes_promtool_check_config(tmp_path: Path) -> None:
    targets = tmp_path / "targets.json"
    targets.write_text(json.dumps(pod_targets(free_port())))
    config = tmp_path / "prometheus.yml"
    config.write_text(yaml.safe_dump(kubernetes_free_config(targets)))
    result = promtool("check", "config", str(config))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 1 rule files found" in result.stdout


def test_dashboard_is_the_output_of_its_generator() -> None:
    command = [sys.executable, str(GRAFANA_DIR / "build_dashboard.py"), "--stdout"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout == DASHBOARD.read_text(), "run python deploy/grafana/build_dashboard.py"


def test_dashboard_has_its_variables_and_panels() -> None:
    board = json.loads(DASHBOARD.read_text())
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    assert variables["pipeline"]["includeAll"] and variables["pipeline"]["allValue"] == ".*"
    panels = [p for p in board["panels"] if p["type"] != "row"]
    titles = {p["title"] for p in panels}
    assert {
        "Request rate by pipeline",
        "5xx ratio by pipeline",
        "Latency by pipeline",
        "Live workers by master",
        "Revision of each worker",
        "Convergence lag",
        "Reload results",
        "Load failures by pipeline",
    } <= titles
    for panel in panels:
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        assert all(t["datasource"]["uid"] == "${datasource}" for t in panel["targets"]), panel["title"]
    # Panels lie on Grafana's 24-column grid without overlapping.
    cells = Counter(
        (x, y)
        for p in board["panels"]
        for x in range(p["gridPos"]["x"], p["gridPos"]["x"] + p["gridPos"]["w"])
        for y in range(p["gridPos"]["y"], p["gridPos"]["y"] + p["gridPos"]["h"])
    )
    assert max(x for x, _ in cells) < 24 and max(cells.values()) == 1


class Prometheus:
    def __init__(self, proc: subprocess.Popen[bytes], url: str, log: Path) -> None:
        self.proc, self.url, self.log = proc, url, log

    def api(self, path: str, **params: object) -> object:
        response = httpx.get(f"{self.url}/api/v1/{path}", params=params, timeout=10)
        body = response.json()
        assert body["status"] == "success", (path, params, body)
        return body["data"]

    def stop(self) -> None:
        stop_process(self.proc, timeout=20)


@pytest.fixture
def start_prometheus(tmp_path: Path) -> Iterator[Callable[[dict], Prometheus]]:
    """Start a real ``prometheus`` on a free loopback port with a given configuration; stopped by PID, always."""
    binary = require_tool("prometheus", "prometheus")
    servers: list[Prometheus] = []

    def start(config: dict) -> Prometheus:
        port = free_port()
        config_file = tmp_path / "prometheus.yml"
        config_file.write_text(yaml.safe_dump(config))
        log = tmp_path / "prometheus.log"
        command = [
            binary,
            f"--config.file={config_file}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ]
        with log.open("wb") as out:
            proc = subprocess.Popen(command, cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT)
        server = Prometheus(proc, f"http://127.0.0.1:{port}", log)
        servers.append(server)

        def ready() -> bool:
            assert proc.poll() is None, log.read_text()[-3000:]
            return httpx.get(f"{server.url}/-/ready", timeout=2).status_code == 200

        wait_until(ready, timeout=30, interval=0.1)
        return server

    try:
        yield start
    finally:
        for server in servers:
            server.stop()


FLAKY = """
from hayhooks import BasePipelineWrapper


class PipelineWrapper(BasePipelineWrapper):
    def setup(self) -> None:
        pass

    def run_api(self, text: str = "") -> dict:
        \"\"\"Answer, or fail with a 500 when asked to.

        Args:
            text: "fail" makes the call fail
        \"\"\"
        if text == "fail":
            raise RuntimeError("asked to fail")
        return {"reply": REPLY}
"""

BROKEN = """
from hayhooks import BasePipelineWrapper


class PipelineWrapper(BasePipelineWrapper):
    def setup(self) -> None:
        raise RuntimeError("this pipeline never loads")

    def run_api(self) -> dict:
        \"\"\"Never served.\"\"\"
        return {}
"""


class Traffic(threading.Thread):
    """Calls pipeline ``good`` (one call in four fails with a 500) and writes a new revision of it every 5 s."""

    def __init__(self, server: Server, pipelines: Path) -> None:
        super().__init__(daemon=True)
        self.server, self.pipelines = server, pipelines
        self.stopping = threading.Event()
        self.statuses: Counter[int] = Counter()
        self.revisions = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            changed = time.monotonic()
            while not self.stopping.is_set():
                text = "fail" if sum(self.statuses.values()) % 4 == 0 else "hi"
                self.statuses[self.server.post("/good/run", json={"text": text}).status_code] += 1
                if time.monotonic() - changed > 5:
                    self.revisions += 1
                    write_wrapper(self.pipelines, "good", FLAKY.replace("REPLY", repr(f"v{self.revisions}")))
                    changed = time.monotonic()
        except BaseException as e:  # reported by the test
            self.error = e

    def stop(self) -> None:
        self.stopping.set()
        self.join(timeout=30)
        assert self.error is None, self.error


def has_data(result: dict) -> bool:
    """A range query answered with at least one number (NaN is what histogram_quantile gives without traffic)."""
    return any(math.isfinite(float(value)) for series in result["result"] for _, value in series["values"])


def save_preview(prometheus: Prometheus, start: float, path: Path) -> None:
    """The dashboard's panels with the range-query results of each of their queries."""
    board = json.loads(DASHBOARD.read_text())
    end = time.time()
    for panel in board["panels"]:
        for target in panel.get("targets", []):
            query = filled(target["expr"])
            target["result"] = prometheus.api("query_range", query=query, start=start, end=end, step=1)["result"]
    path.write_text(json.dumps({"start": start, "end": end, "panels": board["panels"]}))


def alert_key(alert: dict) -> tuple[str, str | None]:
    return alert["labels"]["alertname"], alert["labels"].get("pipeline")


@pytest.mark.integration
def test_dashboard_queries_return_data_and_the_load_failure_alert_fires(
    start_server: Callable[..., Server],
    start_prometheus: Callable[[dict], Prometheus],
    pipelines_dir: Path,
    tmp_path: Path,
) -> None:
    write_wrapper(pipelines_dir, "good", FLAKY.replace("REPLY", repr("v0")))
    write_wrapper(pipelines_dir, "broken", BROKEN)
    server = start_server(pipelines_dir, workers=2)
    targets = tmp_path / "targets.json"
    targets.write_text(json.dumps(pod_targets(server.port)))
    config = kubernetes_free_config(targets)
    config["global"] = {"scrape_interval": "1s", "evaluation_interval": "1s"}
    prometheus = start_prometheus(config)

    started = time.time()
    traffic = Traffic(server, pipelines_dir)
    traffic.start()
    queries = dashboard_queries()
    # The real rules file, unchanged: the load failure, and one call in four failing (well above 5%).
    expected_alerts = {("HayhooksPipelineLoadFailed", "broken"), ("HayhooksPipelineErrorRatioHigh", "good")}
    deadline = time.monotonic() + 60
    try:
        while True:
            answered = {
                (title, expr): has_data(
                    prometheus.api("query_range", query=expr, start=started, end=time.time(), step=1)
                )
                for title, expr in queries
            }
            states = {alert_key(a): a["state"] for a in prometheus.api("alerts")["alerts"]}
            if all(answered.values()) and expected_alerts <= states.keys() or time.monotonic() > deadline:
                break
            time.sleep(1)
        if PREVIEW_DATA:
            time.sleep(max(0.0, 60 - (time.time() - started)))
            save_preview(prometheus, started, Path(PREVIEW_DATA))
    finally:
        traffic.stop()

    without_data = [f"{title}: {expr}" for (title, expr), ok in answered.items() if not ok]
    took = time.time() - started
    print(f"{len(queries) - len(without_data)} of {len(queries)} queries returned data after {took:.0f} s; {states}")
    if without_data:
        print("without data:", *without_data, sep="\n  ")
    assert len(without_data) <= 0.1 * len(queries), without_data
    # Pending for the rules' "for:" duration, then firing.
    assert all(states.get(key) in {"pending", "firing"} for key in expected_alerts), states
    # Both workers are alive: the expected count holds.
    assert ("HayhooksWorkersMissing", None) not in states, states
    assert traffic.revisions >= 1 and set(traffic.statuses) == {200, 500}, (traffic.revisions, traffic.statuses)
    # Of the four targets pod discovery would yield, the job keeps the kit's own port, labelled by namespace and pod.
    active = prometheus.api("targets")["activeTargets"]
    assert [(t["labels"]["job"], t["labels"]["namespace"], t["labels"]["pod"], t["health"]) for t in active] == [
        ("hayhooks", "default", "hayhooks-7d9f-abcde", "up")
    ]
