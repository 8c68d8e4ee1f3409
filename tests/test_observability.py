"""The operators' kit: alert rules (checked and unit-tested with promtool) and the scrape configuration."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
import yaml
from conftest import REPO, free_port, require_tool

PROMETHEUS_DIR = REPO / "deploy" / "prometheus"
RULES = PROMETHEUS_DIR / "hayhooks-rules.yml"
SCRAPE_CONFIG = PROMETHEUS_DIR / "scrape-kubernetes.yml"


def prometheus_files(key: str) -> list[Path]:
    """The YAML files of deploy/prometheus/ with *key* at the top: rules (groups), rule tests (tests), configs."""
    return sorted(p for p in PROMETHEUS_DIR.glob("*.yml") if key in yaml.safe_load(p.read_text()))


RULE_FILES = prometheus_files("groups")
RULE_TESTS = prometheus_files("tests")


def alerts() -> dict[str, dict]:
    rules = [rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]]
    return {rule["alert"]: rule for rule in rules if "alert" in rule}


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


def github_anchor(heading: str) -> str:
    """The anchor GitHub gives a Markdown heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_every_alert_says_what_happened_and_links_its_runbook_in_the_readme() -> None:
    readme = (REPO / "README.md").read_text()
    runbook = readme[readme.index("## Observability") :]
    anchors = {github_anchor(h) for h in re.findall(r"^#+ (.+)$", runbook, re.M)}
    assert len(alerts()) == 6
    for name, rule in alerts().items():
        assert rule["labels"]["severity"] in {"warning", "critical"}, name
        annotations = rule["annotations"]
        assert annotations["summary"] and annotations["description"], name
        page, _, anchor = annotations["runbook_url"].partition("#")
        assert page == "README.md" and anchor == github_anchor(name) and anchor in anchors, name


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
