"""Worker slots and GPU placement with real workers: what each worker is told, checked from inside it (no GPU
needed: CUDA_VISIBLE_DEVICES is only read)."""

from __future__ import annotations

import os
import signal
import subprocess
from collections import Counter
from collections.abc import Collection
from pathlib import Path
from typing import Any

import pytest
from conftest import GUNICORN, REPO, Server, free_port, kit_cli, wait_until, write_wrapper

pytestmark = pytest.mark.integration

# Reports the device and slot its worker was told, as setup() saw them and as run_api sees them.
PLACE_WRAPPER = '''
import os

from hayhooks import BasePipelineWrapper


class PipelineWrapper(BasePipelineWrapper):
    def setup(self) -> None:
        self.at_setup = (os.environ.get("CUDA_VISIBLE_DEVICES"), os.environ.get("HAYHOOKS_GUNICORN_WORKER_SLOT"))

    def run_api(self, text: str = "") -> dict:
        """Where this worker is placed.

        Args:
            text: ignored
        """
        now = (os.environ.get("CUDA_VISIBLE_DEVICES"), os.environ.get("HAYHOOKS_GUNICORN_WORKER_SLOT"))
        return {"pid": os.getpid(), "setup": list(self.at_setup), "run": list(now)}
'''


def placement(server: Server, workers: int, not_pids: Collection[int] = ()) -> dict[int, Any] | None:
    """pid -> (slot, devices) from /cluster, once exactly *workers* workers are listed, booted, none in *not_pids*."""
    body = server.get("/cluster").json()
    listed = body.get("workers", [])
    if len(listed) != workers or any(not w["booted"] or w["pid"] in not_pids for w in listed):
        return None
    return {w["pid"]: (w["slot"], w["devices"]) for w in listed}


def told(server: Server) -> dict[int, dict[str, Any]]:
    """pid -> what the pipeline in that worker reports, from every worker."""
    seen = server.by_worker("POST", "/place/run", json={"text": ""})
    return {r.json()["result"]["pid"]: r.json()["result"] for rs in seen.values() for r in rs}


def assert_round_robin(server: Server, not_pids: Collection[int] = ()) -> dict[int, Any]:
    places: dict[int, Any] = wait_until(lambda: placement(server, 4, not_pids), timeout=120)  # type: ignore[assignment]
    assert sorted(slot for slot, _ in places.values()) == [0, 1, 2, 3]
    assert all(devices == str(slot % 2) for slot, devices in places.values()), places
    answers = told(server)
    assert set(answers) == set(places)
    for pid, answer in answers.items():
        slot, devices = places[pid]
        assert answer["setup"] == answer["run"] == [devices, str(slot)]
    assert Counter(a["run"][0] for a in answers.values()) == {"0": 2, "1": 2}
    return places


def test_four_workers_on_two_gpus_keep_their_places(start_server: Any, pipelines_dir: Path, runtime_dir: Path) -> None:
    write_wrapper(pipelines_dir, "place", PLACE_WRAPPER)
    server = start_server(pipelines_dir, workers=4, env={"HAYHOOKS_GUNICORN_GPUS": "0,1"})
    places = assert_round_robin(server)

    victim = next(pid for pid, (slot, _) in places.items() if slot == 2)
    os.kill(victim, signal.SIGKILL)
    places = assert_round_robin(server, not_pids={victim})
    replacement = next(pid for pid, (slot, _) in places.items() if slot == 2)
    assert replacement != victim and places[replacement] == (2, "0")

    server.proc.send_signal(signal.SIGHUP)
    places = assert_round_robin(server, not_pids=set(places))

    restart = kit_cli("restart", "--bind", f"127.0.0.1:{server.port}", env={"XDG_RUNTIME_DIR": str(runtime_dir)})
    assert restart.returncode == 0, restart.stderr
    places = assert_round_robin(server, not_pids=set(places))
    assert "is not checked: this machine lists no GPU" in server.log_text()

    server.proc.send_signal(signal.SIGTTOU)  # one worker fewer: the one in the highest slot stops
    highest = next(pid for pid, (slot, _) in places.items() if slot == 3)
    three = wait_until(lambda: placement(server, 3, not_pids={highest}), timeout=60)
    assert sorted(three.values()) == [(0, "0"), (1, "1"), (2, "0")]  # type: ignore[attr-defined]
    server.proc.send_signal(signal.SIGTTIN)
    assert_round_robin(server)


def test_without_the_setting_every_worker_keeps_the_operators_devices(start_server: Any, pipelines_dir: Path) -> None:
    write_wrapper(pipelines_dir, "place", PLACE_WRAPPER)
    env = {"CUDA_VISIBLE_DEVICES": "7", "HAYHOOKS_GUNICORN_GPUS": ""}
    server = start_server(pipelines_dir, workers=2, env=env)
    places = wait_until(lambda: placement(server, 2), timeout=60)
    assert sorted(places.values()) == [(0, "7"), (1, "7")]  # type: ignore[attr-defined]
    assert {a["run"][0] for a in told(server).values()} == {"7"}


def test_a_list_naming_a_gpu_the_machine_lacks_stops_the_start_in_one_sentence(
    tmp_path: Path, pipelines_dir: Path
) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    smi = bin_dir / "nvidia-smi"
    smi.write_text("#!/bin/sh\necho 'GPU 0: NVIDIA T4 (UUID: GPU-0000aaaa-1111-2222-3333-444455556666)'\n")
    smi.chmod(0o755)
    env = {
        **os.environ,
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "HAYHOOKS_PIPELINES_DIR": str(pipelines_dir),
        "HAYHOOKS_GUNICORN_GPUS": "0,1",
    }
    for extra in (["--check-config"], ["--bind", f"127.0.0.1:{free_port()}"]):
        command = [*GUNICORN, "-c", str(REPO / "gunicorn.conf.py"), *extra]
        result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
        assert result.returncode == 1
        sentence = "Error: HAYHOOKS_GUNICORN_GPUS names GPU(s) 1, which this machine does not have (it has: 0)"
        assert sentence in result.stderr.splitlines()
