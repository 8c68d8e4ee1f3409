"""What every Kubernetes overlay must hold for production, read from ``kubectl kustomize`` output: no public Service,
pods spread over nodes, no API token, drains that do not block, room for model downloads, probes that fit the kit's
timeouts, Pod Security "restricted"; the durable overlay's Redis with a memory bound and a password; the components
for TLS and Prometheus Operator rendered on top of every overlay."""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
import redis
import yaml
from conftest import REPO, free_port, require_tool, stop_process, wait_until
from test_deploy_files import KUBERNETES_DIR, OVERLAYS, rendered, validate_strict

from hayhooks_gunicorn.settings import KitSettings


def configured_timeout() -> int:
    """gunicorn.conf.py's ``timeout``, read without running the configuration (it prepares the master's metrics
    directory and GPU placement as it runs)."""
    tree = ast.parse((REPO / "hayhooks_gunicorn" / "gunicorn_conf.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and [getattr(t, "id", None) for t in node.targets] == ["timeout"]:
            return int(ast.literal_eval(node.value))
    raise AssertionError("gunicorn_conf.py sets no timeout")


# Volume types Pod Security "restricted" allows (kubernetes.io/docs/concepts/security/pod-security-standards).
RESTRICTED_VOLUMES = {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim", "projected"}
RESTRICTED_VOLUMES |= {"secret"}
COMPONENTS = sorted(p.parent.name for p in KUBERNETES_DIR.glob("components/*/kustomization.yaml"))


def pods(resources: dict[tuple[str, str], dict]) -> dict[str, dict]:
    return {name: doc["spec"]["template"]["spec"] for (kind, name), doc in resources.items() if kind == "Deployment"}


def hayhooks_container(pod: dict) -> dict:
    return next(c for c in pod["containers"] if c["name"] == "hayhooks")


def probe_budget(probe: dict) -> int:
    """Seconds of failing probes before the kubelet acts (Kubernetes' defaults where unset)."""
    return probe.get("periodSeconds", 10) * probe.get("failureThreshold", 3)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_has_no_public_service_and_survives_a_node_and_a_drain(overlay: str) -> None:
    resources = rendered(overlay)
    assert {doc["spec"].get("type", "ClusterIP") for (kind, _), doc in resources.items() if kind == "Service"} == {
        "ClusterIP"
    }
    for name, pod in pods(resources).items():
        assert pod["automountServiceAccountToken"] is False, name
    pod = pods(resources)["hayhooks"]
    by_key = {c["topologyKey"]: c for c in pod["topologySpreadConstraints"]}
    labels = resources[("Deployment", "hayhooks")]["spec"]["template"]["metadata"]["labels"]
    assert by_key["kubernetes.io/hostname"]["whenUnsatisfiable"] == "DoNotSchedule"
    for constraint in by_key.values():
        assert constraint["maxSkew"] == 1 and constraint["labelSelector"]["matchLabels"].items() <= labels.items()
    budget = resources[("PodDisruptionBudget", "hayhooks")]["spec"]
    assert budget["unhealthyPodEvictionPolicy"] == "AlwaysAllow"
    assert pod["securityContext"]["fsGroupChangePolicy"] == "OnRootMismatch"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_model_downloads_go_to_a_disk_backed_volume(overlay: str) -> None:
    pod = pods(rendered(overlay))["hayhooks"]
    container = hayhooks_container(pod)
    env = {e["name"]: e.get("value") for e in container["env"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    for variable in ("HF_HOME", "XDG_CACHE_HOME"):
        mount = max(
            (m for m in container["volumeMounts"] if f"{env[variable]}/".startswith(f"{m['mountPath'].rstrip('/')}/")),
            key=lambda m: len(m["mountPath"]),
        )
        volume = volumes[mount["name"]]
        assert not mount.get("readOnly"), variable
        assert "persistentVolumeClaim" in volume or volume["emptyDir"].get("medium") != "Memory", variable
        assert "persistentVolumeClaim" in volume or volume["emptyDir"]["sizeLimit"].endswith("Gi"), variable


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_probes_and_deadlines_fit_the_kits_timeouts(overlay: str) -> None:
    deployment = rendered(overlay)[("Deployment", "hayhooks")]
    container = hayhooks_container(deployment["spec"]["template"]["spec"])
    load_timeout = KitSettings.model_fields["load_timeout"].default
    startup = probe_budget(container["startupProbe"])
    # The first load of one pipeline may take the whole load timeout, after the master's imports.
    assert startup > load_timeout
    assert deployment["spec"]["progressDeadlineSeconds"] > startup
    # Under SYNC_RUN=inline a worker answers nothing for as long as a call runs, up to gunicorn's timeout.
    assert probe_budget(container["livenessProbe"]) > configured_timeout()
    assert container["lifecycle"]["preStop"]["sleep"]["seconds"] > 0


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_pod_meets_pod_security_restricted(overlay: str) -> None:
    for name, pod in pods(rendered(overlay)).items():
        context = pod["securityContext"]
        assert not any(pod.get(key) for key in ("hostNetwork", "hostPID", "hostIPC")), name
        assert context["runAsNonRoot"] is True and context.get("runAsUser", 1) != 0, name
        assert context["seccompProfile"]["type"] in {"RuntimeDefault", "Localhost"}, name
        for volume in pod.get("volumes", []):
            assert set(volume) - {"name"} <= RESTRICTED_VOLUMES, (name, volume)
        for container in pod["containers"] + pod.get("initContainers", []):
            security = container["securityContext"]
            assert security["allowPrivilegeEscalation"] is False, (name, container["name"])
            assert security["capabilities"]["drop"] == ["ALL"], (name, container["name"])
            assert set(security["capabilities"].get("add", [])) <= {"NET_BIND_SERVICE"}
            assert not security.get("privileged") and security.get("runAsUser", 1) != 0


def secret_ref(entry: dict) -> tuple[str, str]:
    ref = entry["valueFrom"]["secretKeyRef"]
    assert not ref.get("optional"), entry["name"]
    return ref["name"], ref["key"]


def test_durable_redis_has_a_memory_bound_no_eviction_and_a_password_from_a_secret() -> None:
    resources = rendered("durable")
    redis_pod = pods(resources)["hayhooks-redis"]
    server = redis_pod["containers"][0]
    flags = dict(zip(server["args"][1::2], server["args"][2::2], strict=True))
    assert flags["--maxmemory-policy"] == "noeviction"
    assert flags["--maxmemory"].endswith("mb") and int(flags["--maxmemory"][:-2]) * 2**20 < 512 * 2**20
    assert server["resources"]["limits"]["memory"] == "512Mi"
    redis_env = {e["name"]: e for e in server["env"]}
    assert flags["--requirepass"] == "$(REDIS_PASSWORD)"
    password = secret_ref(redis_env["REDIS_PASSWORD"])
    assert secret_ref(redis_env["REDISCLI_AUTH"]) == password  # the probes' redis-cli authenticates
    env = hayhooks_container(pods(resources)["hayhooks"])["env"]
    names = [e["name"] for e in env]
    # The kubelet expands $(VAR) only from entries defined before.
    assert names.index("REDIS_PASSWORD") < names.index("HAYHOOKS_DURABLE_REDIS_URL")
    assert secret_ref(env[names.index("REDIS_PASSWORD")]) == password
    assert "$(REDIS_PASSWORD)@" in env[names.index("HAYHOOKS_DURABLE_REDIS_URL")]["value"]


def expand(value: str, variables: dict[str, str]) -> str:
    for name, replacement in variables.items():
        value = value.replace(f"$({name})", replacement)
    return value


@pytest.mark.integration
def test_durable_redis_runs_with_its_manifest_arguments_and_the_kits_url_reaches_it() -> None:
    """A real redis-server started with the args of redis.yaml; the hayhooks URL of the overlay, expanded as the
    kubelet expands it, authenticates, and a client without the password is refused."""
    resources = rendered("durable")
    server = pods(resources)["hayhooks-redis"]["containers"][0]
    secret = {"REDIS_PASSWORD": "0123456789abcdef" * 4}
    binary, port = require_tool("redis-server", "redis-server"), free_port()
    directory = Path(tempfile.mkdtemp(prefix="hg-redis-", dir="/tmp"))
    args = [expand(a, secret) for a in server["args"][1:]]
    args[args.index("--dir") + 1] = str(directory)
    command = [binary, *args, "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
    with (directory / "redis.log").open("wb") as log:
        proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    try:
        env = {e["name"]: e.get("value", "") for e in hayhooks_container(pods(resources)["hayhooks"])["env"]}
        url = expand(env["HAYHOOKS_DURABLE_REDIS_URL"], secret).replace("@hayhooks-redis:6379/", f"@127.0.0.1:{port}/")
        client = redis.Redis.from_url(url, socket_timeout=5)
        wait_until(lambda: answers(client), timeout=20)
        assert client.config_get("maxmemory-policy") == {"maxmemory-policy": "noeviction"}
        assert int(client.config_get("maxmemory")["maxmemory"]) == 384 * 2**20
        with pytest.raises(redis.AuthenticationError):
            redis.Redis(host="127.0.0.1", port=port, socket_timeout=5).ping()
    finally:
        stop_process(proc, timeout=15)
        shutil.rmtree(directory, ignore_errors=True)


def answers(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.ConnectionError:
        return False


def render_with_components(overlay: str, tmp_path: Path) -> dict[tuple[str, str], dict]:
    """An overlay of one's own, as the components' comments show: the overlay plus every component."""
    root = tmp_path / "mine"
    root.mkdir()
    relative = os.path.relpath(KUBERNETES_DIR, root)
    kustomization = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": [f"{relative}/overlays/{overlay}"],
        "components": [f"{relative}/components/{name}" for name in COMPONENTS],
    }
    (root / "kustomization.yaml").write_text(yaml.safe_dump(kustomization))
    kubectl = require_tool("kubectl", "kubectl")
    result = subprocess.run([kubectl, "kustomize", str(root)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    docs = [doc for doc in yaml.safe_load_all(result.stdout) if doc]
    kubernetes_kinds = [doc for doc in docs if doc["kind"] != "PodMonitor"]  # a CRD: no schema to validate with
    (tmp_path / "out.yaml").write_text(yaml.safe_dump_all(kubernetes_kinds))
    check = validate_strict(tmp_path / "out.yaml")
    assert check.returncode == 0 and "WARN" not in check.stdout, check.stdout + check.stderr
    return {(doc["kind"], doc["metadata"]["name"]): doc for doc in docs}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_components_add_tls_ingress_and_a_pod_monitor_to_every_overlay(overlay: str, tmp_path: Path) -> None:
    assert COMPONENTS == ["ingress-tls", "prometheus-operator"]
    resources = render_with_components(overlay, tmp_path)
    service = resources[("Service", "hayhooks")]
    pod_template = resources[("Deployment", "hayhooks")]["spec"]["template"]
    ingress = resources[("Ingress", "hayhooks")]["spec"]
    hosts = {host for tls in ingress["tls"] for host in tls["hosts"]}
    assert all(tls["secretName"] for tls in ingress["tls"])
    for rule in ingress["rules"]:
        assert rule["host"] in hosts  # every host is served over TLS
        for path in rule["http"]["paths"]:
            backend = path["backend"]["service"]
            assert backend["name"] == "hayhooks"
            assert backend["port"]["name"] in {p["name"] for p in service["spec"]["ports"]}
    monitor = resources[("PodMonitor", "hayhooks")]["spec"]
    labels = pod_template["metadata"]["labels"]
    assert monitor["selector"]["matchLabels"].items() <= labels.items()
    ports = {p["name"] for p in hayhooks_container(pod_template["spec"])["ports"]}
    assert [e["port"] for e in monitor["podMetricsEndpoints"]] == ["http"] and "http" in ports
    # The alert rules select job="hayhooks": the job label comes from this pod label.
    assert labels[monitor["jobLabel"]] == "hayhooks"
    assert ("Deployment", "hayhooks-redis") not in resources or not (
        monitor["selector"]["matchLabels"].items()
        <= resources[("Deployment", "hayhooks-redis")]["spec"]["template"]["metadata"]["labels"].items()
    )


def test_scrape_config_looks_in_every_namespace_not_only_default() -> None:
    config = yaml.safe_load((KUBERNETES_DIR.parent / "prometheus" / "scrape-kubernetes.yml").read_text())
    for job in config["scrape_configs"]:
        for discovery in job["kubernetes_sd_configs"]:
            assert "default" not in discovery.get("namespaces", {}).get("names", []), job["job_name"]
