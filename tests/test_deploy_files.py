"""The deployment files: systemd units (rendered, verified, hardened) and Kubernetes manifests (each Kustomize overlay
rendered with ``kubectl kustomize`` and validated)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from functools import cache
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from conftest import require_tool

from hayhooks_gunicorn.cli import main
from hayhooks_gunicorn.cli.systemd_units import UnitOptions, for_this_install, render, write

REPO = Path(__file__).resolve().parent.parent
SYSTEMD_DIR = REPO / "deploy" / "systemd"
KUBERNETES_DIR = REPO / "deploy" / "kubernetes"
OVERLAYS = sorted(p.parent.name for p in KUBERNETES_DIR.glob("overlays/*/kustomization.yaml"))
# This interpreter's directory holds gunicorn and hayhooks-gunicorn (a virtualenv's bin/).
BIN_DIR = str(Path(sys.executable).absolute().parent)

needs_systemd_analyze = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None,
    reason="systemd-analyze is not installed (Debian: apt-get install systemd; .ci/run installs it)",
)


def verify(directory: Path, *units: str) -> subprocess.CompletedProcess[str]:
    command = ["systemd-analyze", "verify", "--man=no", *units]
    return subprocess.run(command, cwd=directory, capture_output=True, text=True, timeout=60)


def test_deploy_systemd_is_the_render_of_the_default_options() -> None:
    """deploy/systemd/ is generated, never edited by hand: regenerate it with `write(UnitOptions(), ...)`."""
    rendered = render(UnitOptions())
    assert sorted(rendered) == sorted(p.name for p in SYSTEMD_DIR.iterdir())
    for name, text in rendered.items():
        assert (SYSTEMD_DIR / name).read_text() == text, f"deploy/systemd/{name} differs from the template render"


def test_service_unit_has_the_lifecycle_settings() -> None:
    service = render(UnitOptions())["hayhooks.service"]
    for line in (
        "Type=notify",
        "KillMode=mixed",
        "KillSignal=SIGTERM",
        "Restart=on-failure",
        "RuntimeDirectory=hayhooks",
        "EnvironmentFile=/etc/hayhooks/hayhooks.env",
        "ProtectSystem=strict",
        "ReadWritePaths=-/var/lib/hayhooks/pipelines",
        "NoNewPrivileges=yes",
        "PrivateTmp=yes",
        "ProtectHome=yes",
        "ExecReload=/opt/hayhooks/venv/bin/hayhooks-gunicorn restart --control-socket %t/hayhooks/gunicorn.ctl",
    ):
        assert line in service.splitlines(), line
    graceful = int(re.search(r"--graceful-timeout (\d+)", service).group(1))
    assert int(re.search(r"^TimeoutStopSec=(\d+)$", service, re.M).group(1)) > graceful


@needs_systemd_analyze
def test_deploy_units_verify_cleanly_with_an_existing_gunicorn(tmp_path: Path) -> None:
    for name in ("hayhooks.service", "hayhooks.socket"):
        text = (SYSTEMD_DIR / name).read_text().replace(UnitOptions.bin_dir, BIN_DIR)
        (tmp_path / name).write_text(text)
    result = verify(tmp_path, "hayhooks.service", "hayhooks.socket")
    assert (result.returncode, result.stderr) == (0, "")


@needs_systemd_analyze
def test_units_rendered_for_this_install_verify_cleanly(tmp_path: Path) -> None:
    options = for_this_install(name="hayhooks-test", pipelines_dir=str(tmp_path / "pipelines"))
    assert options.bin_dir == BIN_DIR
    write(options, tmp_path)
    result = verify(tmp_path, "hayhooks-test.service", "hayhooks-test.socket")
    assert (result.returncode, result.stderr) == (0, "")


@needs_systemd_analyze
def test_verify_catches_a_misspelled_key(tmp_path: Path) -> None:
    """The check above means something: a typo gives exit 0 but a line on stderr."""
    write(for_this_install(), tmp_path)
    service = tmp_path / "hayhooks.service"
    service.write_text(service.read_text().replace("NoNewPrivileges=", "NoNewPrivilege="))
    result = verify(tmp_path, "hayhooks.service", "hayhooks.socket")
    assert "Unknown key" in result.stderr


@needs_systemd_analyze
def test_security_exposure_is_no_worse_than_recorded_in_the_operations_page() -> None:
    page = (REPO / "docs" / "operations.md").read_text()
    recorded = float(re.search(r"exposure level: \*\*(\d+\.\d+)", page).group(1))
    command = ["systemd-analyze", "security", "--offline=yes", "hayhooks.service"]
    result = subprocess.run(command, cwd=SYSTEMD_DIR, capture_output=True, text=True, timeout=60)
    measured = float(re.search(r"Overall exposure level for hayhooks.service: (\d+\.\d+)", result.stdout).group(1))
    assert measured <= recorded, result.stdout


def test_systemd_command_writes_units_for_this_install(tmp_path: Path) -> None:
    out = tmp_path / "units"
    args = ["systemd", "--name", "rag", "--user", "root", "--pipelines-dir", str(tmp_path / "p"), "-o", str(out)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == [
        "rag-durable.env.example",
        "rag-sysusers.conf",
        "rag.env.example",
        "rag.service",
        "rag.socket",
    ]
    service = (out / "rag.service").read_text()
    assert f"ExecStart={BIN_DIR}/gunicorn -c python:hayhooks_gunicorn.gunicorn_conf" in service
    assert f"Environment=HAYHOOKS_PIPELINES_DIR={tmp_path / 'p'}" in service
    assert "EnvironmentFile=/etc/rag/rag.env" in service
    assert "User=root" in service and "Requires=rag.socket" in service
    # An install living under /root or /home keeps those readable.
    at_home = any(p.startswith(("/root/", "/home/")) for p in (BIN_DIR, os.getcwd()))
    assert ("ProtectHome=read-only" in service) == at_home

    bad = CliRunner().invoke(main, ["systemd", "--name", "a b"])
    assert bad.exit_code == 1 and "Invalid unit name" in bad.output


def test_kubernetes_has_a_base_and_the_overlays() -> None:
    assert (KUBERNETES_DIR / "base" / "kustomization.yaml").is_file()
    assert OVERLAYS == ["durable", "git-sync", "readonly", "shared-volume"]
    # Nothing beside base/, overlays/ and components/: every manifest is reached through a kustomization.
    assert sorted(p.name for p in KUBERNETES_DIR.iterdir()) == ["base", "components", "overlays"]


@cache
def kustomize(overlay: str) -> str:
    kubectl = require_tool("kubectl", "kubectl")
    command = [kubectl, "kustomize", str(KUBERNETES_DIR / "overlays" / overlay)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout


def rendered(overlay: str) -> dict[tuple[str, str], dict]:
    """The overlay's resources by (kind, name)."""
    docs = [doc for doc in yaml.safe_load_all(kustomize(overlay)) if doc]
    return {(doc["kind"], doc["metadata"]["name"]): doc for doc in docs}


def validate_strict(*files: Path) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "kubernetes_validate", "--strict", *map(str, files)]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_renders_and_passes_kubernetes_validate_strict(overlay: str, tmp_path: Path) -> None:
    out = tmp_path / f"{overlay}.yaml"
    out.write_text(kustomize(overlay))
    result = validate_strict(out)
    assert result.returncode == 0, result.stdout + result.stderr
    # A kind without a schema only warns, with exit 0.
    assert "WARN" not in result.stdout and "ERROR" not in result.stdout, result.stdout
    assert result.stdout.count(" passed ") == len(rendered(overlay))


def test_kubernetes_validate_strict_rejects_a_misspelled_field(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text((KUBERNETES_DIR / "base" / "service.yaml").read_text().replace("targetPort:", "targetPorts:"))
    assert validate_strict(bad).returncode != 0


def env_of(container: dict, resources: dict[tuple[str, str], dict]) -> dict[str, str]:
    """A container's environment, with values taken from ConfigMaps resolved as the kubelet would."""
    env = {}
    for entry in container.get("env", []):
        if "value" in entry:
            env[entry["name"]] = entry["value"]
        elif ref := entry.get("valueFrom", {}).get("configMapKeyRef"):
            env[entry["name"]] = resources[("ConfigMap", ref["name"])]["data"][ref["key"]]
    return env


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_overlay_holds_what_a_deployment_needs(overlay: str) -> None:
    resources = rendered(overlay)
    deployment = resources[("Deployment", "hayhooks")]
    pod = deployment["spec"]["template"]["spec"]
    container = next(c for c in pod["containers"] if c["name"] == "hayhooks")
    env = env_of(container, resources)
    assert env["HAYHOOKS_PIPELINES_DIR"].startswith("/")
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["resources"]["requests"] and container["resources"]["limits"]
    # The kubelet's SIGTERM comes after preStop; gunicorn then needs graceful_timeout.
    pre_stop = container["lifecycle"]["preStop"]["sleep"]["seconds"]
    assert pod["terminationGracePeriodSeconds"] > pre_stop + int(env["HAYHOOKS_GRACEFUL_SHUTDOWN_TIMEOUT"])
    # References kubernetes-validate does not follow: mounts to volumes, volumes to claims and ConfigMaps.
    volumes = {v["name"]: v for v in pod["volumes"]}
    for c in pod["containers"] + pod.get("initContainers", []):
        assert {m["name"] for m in c.get("volumeMounts", [])} <= set(volumes), c["name"]
    for volume in volumes.values():
        if claim := volume.get("persistentVolumeClaim"):
            assert ("PersistentVolumeClaim", claim["claimName"]) in resources
        if config := volume.get("configMap"):
            assert ("ConfigMap", config["name"]) in resources
    # The pipelines directory is on a volume of the pod, not on the read-only root filesystem.
    mounts = [m["mountPath"] for m in container["volumeMounts"]]
    assert any(f"{env['HAYHOOKS_PIPELINES_DIR']}/".startswith(f"{path.rstrip('/')}/") for path in mounts), mounts
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    for kind in ("Service", "PodDisruptionBudget"):
        selector = resources[(kind, "hayhooks")]["spec"]["selector"]
        selector = selector.get("matchLabels", selector)
        assert selector.items() <= labels.items(), kind


def test_shared_volume_overlay_shares_the_pipelines_and_the_state() -> None:
    resources = rendered("shared-volume")
    pod = resources[("Deployment", "hayhooks")]["spec"]["template"]["spec"]
    claim = resources[("PersistentVolumeClaim", "hayhooks-data")]
    assert resources[("Service", "hayhooks")]["spec"]["type"] == "ClusterIP"
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]
    data = next(v for v in pod["volumes"] if v.get("persistentVolumeClaim"))
    assert data["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"]
    container = pod["containers"][0]
    env = env_of(container, resources)
    assert {m["mountPath"] for m in container["volumeMounts"] if m["name"] == data["name"]} == {"/data"}
    assert env["HAYHOOKS_PIPELINES_DIR"].startswith("/data/")
    assert env["HAYHOOKS_GUNICORN_STATE_DIR"].startswith("/data/")
    assert env["HAYHOOKS_GUNICORN_WATCH"] == "poll"


def test_durable_overlay_runs_several_workers_per_pod_on_one_redis() -> None:
    resources = rendered("durable")
    deployment = resources[("Deployment", "hayhooks")]
    env = env_of(deployment["spec"]["template"]["spec"]["containers"][0], resources)
    assert env["HAYHOOKS_DURABLE_MODE"] == "true"
    assert deployment["spec"]["replicas"] >= 2 and int(env["WEB_CONCURRENCY"]) >= 2
    url = re.fullmatch(r"redis://:\$\(REDIS_PASSWORD\)@([^:/]+):(\d+)/\d+", env["HAYHOOKS_DURABLE_REDIS_URL"])
    assert url, env["HAYHOOKS_DURABLE_REDIS_URL"]
    service = resources[("Service", url.group(1))]
    assert int(url.group(2)) in {p["port"] for p in service["spec"]["ports"]}
    redis = resources[("Deployment", "hayhooks-redis")]
    assert service["spec"]["selector"].items() <= redis["spec"]["template"]["metadata"]["labels"].items()
    # The hayhooks Service and PodDisruptionBudget must not select the Redis pod.
    hayhooks_selector = resources[("Service", "hayhooks")]["spec"]["selector"]
    assert not hayhooks_selector.items() <= redis["spec"]["template"]["metadata"]["labels"].items()
    policy = resources[("NetworkPolicy", "hayhooks-redis")]["spec"]
    assert policy["ingress"][0]["from"][0]["podSelector"]["matchLabels"] == hayhooks_selector


def test_git_sync_overlay_serves_the_checkout_through_the_link() -> None:
    resources = rendered("git-sync")
    pod = resources[("Deployment", "hayhooks")]["spec"]["template"]["spec"]
    sidecar = next(c for c in pod["initContainers"] if c["name"] == "git-sync")
    assert re.fullmatch(r"registry\.k8s\.io/git-sync/git-sync:v4\.\d+\.\d+", sidecar["image"])
    # A native sidecar that keeps syncing, and hayhooks starts only after the first checkout.
    assert sidecar["restartPolicy"] == "Always" and sidecar["startupProbe"]["httpGet"]["path"] == "/"
    flags = dict(arg.removeprefix("--").split("=", 1) for arg in sidecar["args"])
    assert sidecar["startupProbe"]["httpGet"]["port"] in {p["name"] for p in sidecar["ports"]}
    assert flags["http-bind"].endswith(f":{sidecar['ports'][0]['containerPort']}")
    sidecar_env = env_of(sidecar, resources)
    assert sidecar_env["GITSYNC_REPO"] and sidecar_env["GITSYNC_REF"]
    container = next(c for c in pod["containers"] if c["name"] == "hayhooks")
    env = env_of(container, resources)
    shared = next(m for m in sidecar["volumeMounts"] if m["mountPath"] == flags["root"])
    assert "emptyDir" in next(v for v in pod["volumes"] if v["name"] == shared["name"])
    served = next(m for m in container["volumeMounts"] if m["name"] == shared["name"])
    assert served["readOnly"] and served["mountPath"] == flags["root"]
    assert env["HAYHOOKS_PIPELINES_DIR"].startswith(f"{flags['root']}/{flags['link']}/")
    assert env["HAYHOOKS_GUNICORN_DEPLOY_MODE"] == "reject"


@pytest.mark.integration  # loads in a separate Python process (the pre-flight or the check command)
def test_configmap_variant_serves_its_pipelines(tmp_path: Path) -> None:
    """The read-only overlay's ConfigMap, laid out as the kubelet does (``..data`` symlinks), loads cleanly."""
    resources = rendered("readonly")
    pod = resources[("Deployment", "hayhooks")]["spec"]["template"]["spec"]
    volume = next(v for v in pod["volumes"] if "configMap" in v)
    config = resources[("ConfigMap", volume["configMap"]["name"])]
    assert any(m["name"] == volume["name"] and m["readOnly"] for m in pod["containers"][0]["volumeMounts"])
    mount = tmp_path / "pipelines"
    version = mount / "..2026_01_01_00_00_00.000000001"
    for item in volume["configMap"]["items"]:
        (version / item["path"]).parent.mkdir(parents=True, exist_ok=True)
        (version / item["path"]).write_text(config["data"][item["key"]])
    (mount / "..data").symlink_to(version.name)
    for top in {item["path"].split("/")[0] for item in volume["configMap"]["items"]}:
        (mount / top).symlink_to(f"..data/{top}")
    command = [str(Path(BIN_DIR) / "hayhooks-gunicorn"), "check", str(mount)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    assert sorted(line.split()[1] for line in result.stdout.splitlines() if line.startswith("ok ")) == [
        "hello",
        "text_stats",
    ]
