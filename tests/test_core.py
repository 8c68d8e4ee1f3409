"""The core promise: every worker loads the shared directory before serving and follows it while it runs."""

from __future__ import annotations

import os
import shutil
import threading
from collections import Counter
from pathlib import Path

import httpx
import pytest
from conftest import YAML_PIPELINE, Server, echo_wrapper, free_port, wait_until, write_wrapper

pytestmark = pytest.mark.integration

READS_BESIDE = '''
from pathlib import Path

from hayhooks import BasePipelineWrapper


class PipelineWrapper(BasePipelineWrapper):
    def setup(self) -> None:
        self.pipeline = None

    def run_api(self, text: str = "") -> dict:
        """Read a file beside the wrapper and import a helper lazily, at run time.

        Args:
            text: text to shout
        """
        from .helper import shout

        greeting = (Path(__file__).parent / "greeting.txt").read_text().strip()
        return {"reply": f"{greeting} {shout(text)}"}
'''


def reply(response: httpx.Response) -> object:
    return response.json().get("result", {}).get("reply") if response.status_code == 200 else response.status_code


def serves(server: Server, name: str, expected: object) -> bool:
    return server.every_worker(lambda r: reply(r) == expected, "POST", f"/{name}/run", json={"text": "abc"})


def gone(server: Server, name: str) -> bool:
    return server.every_worker(lambda r: r.status_code == 404, "POST", f"/{name}/run", json={})


def tree(path: Path) -> dict[str, bytes]:
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


def test_boot_loads_every_pipeline_in_every_worker_before_serving(start_server, pipelines_dir: Path) -> None:
    write_wrapper(pipelines_dir, "beside", READS_BESIDE, {"greeting.txt": "hello\n", "helper.py": SHOUT})
    (pipelines_dir / "greet.yml").write_text(YAML_PIPELINE)
    # setup() takes twice gunicorn's --timeout: the worker must load it, not be killed for it.
    write_wrapper(pipelines_dir, "slow", echo_wrapper("slow ready", setup_sleep=6))
    before = tree(pipelines_dir)

    server = start_server(pipelines_dir, args=["--timeout", "3"])
    pids = server.worker_pids()

    assert serves(server, "beside", "hello ABC")
    assert serves(server, "slow", "slow ready")
    greet = server.by_worker("POST", "/greet/run", json={"name": "kit"})
    assert len(greet) == 2
    assert {r.json()["result"]["builder"]["prompt"] for rs in greet.values() for r in rs} == {"Hello kit!"}
    # Exactly one setup() per pipeline per worker: hayhooks' own startup deploy did not run as well.
    assert server.log_text().count("loaded pipeline 'slow'") == 2
    assert "WORKER TIMEOUT" not in server.log_text()
    assert server.worker_pids() == pids
    # /status keeps hayhooks' shape and lists the answering worker's pipelines.
    status = server.get("/status").json()
    assert sorted(status["pipelines"]) == ["beside", "greet", "slow"]
    assert {"status", "pipelines", "deployments"} <= status.keys()
    # Loading from the real directory wrote nothing into it.
    assert tree(pipelines_dir) == before
    assert not list(pipelines_dir.rglob("__pycache__"))


SHOUT = "def shout(text: str) -> str:\n    return text.upper()\n"


def test_broken_pipelines_are_reported_and_the_others_serve(start_server, pipelines_dir: Path) -> None:
    write_wrapper(pipelines_dir, "good", echo_wrapper("good"))
    write_wrapper(pipelines_dir, "syntax", "def broken(:\n")
    write_wrapper(pipelines_dir, "imports", "import no_such_module_anywhere\n")
    write_wrapper(pipelines_dir, "raises", echo_wrapper("x").replace("time.sleep(0.0)", "raise RuntimeError('boom')"))
    write_wrapper(pipelines_dir, "nowrapper", "X = 1\n")
    (pipelines_dir / "badyaml.yml").write_text("components: [unclosed\n")
    write_wrapper(pipelines_dir, "json", echo_wrapper("shadow"))

    server = start_server(pipelines_dir)

    assert serves(server, "good", "good")
    ready = server.get("/readyz").json()
    assert ready["failed"] == ["badyaml", "imports", "json", "nowrapper", "raises", "syntax"]
    log = server.log_text()
    assert "shadows the importable Python module 'json'" in log
    assert "boom" in log
    for name in ("syntax", "imports", "raises", "nowrapper", "badyaml", "json"):
        assert server.post(f"/{name}/run", json={}).status_code == 404


def test_add_modify_delete_converge_on_every_worker(start_server, pipelines_dir: Path) -> None:
    write_wrapper(pipelines_dir, "other", echo_wrapper("other"))
    server = start_server(pipelines_dir)
    before_delete: dict[str, bytes] = {}

    write_wrapper(pipelines_dir, "fresh", READS_BESIDE, {"greeting.txt": "v1", "helper.py": SHOUT})
    wait_until(lambda: serves(server, "fresh", "v1 ABC"), timeout=15)

    # A non-Python file beside the wrapper is part of the pipeline: editing it in place reloads.
    (pipelines_dir / "fresh" / "helper.py").write_text("def shout(text: str) -> str:\n    return text.lower()\n")
    (pipelines_dir / "fresh" / "greeting.txt").write_text("v2")
    wait_until(lambda: serves(server, "fresh", "v2 abc"), timeout=15)
    assert server.log_text().count("reloaded pipeline 'fresh'") >= 2

    # Same-size edit of a Python file within the same second is not served stale.
    (pipelines_dir / "fresh" / "helper.py").write_text("def shout(text: str) -> str:\n    return text.title()\n")
    wait_until(lambda: serves(server, "fresh", "v2 Abc"), timeout=15)

    before_delete = tree(pipelines_dir / "other")
    shutil.rmtree(pipelines_dir / "fresh")
    wait_until(lambda: gone(server, "fresh"), timeout=15)
    assert serves(server, "other", "other")
    assert tree(pipelines_dir / "other") == before_delete
    assert not list(pipelines_dir.rglob("__pycache__"))


def test_noop_write_does_not_reload(start_server, pipelines_dir: Path) -> None:
    path = write_wrapper(pipelines_dir, "steady", echo_wrapper("steady")) / "pipeline_wrapper.py"
    server = start_server(pipelines_dir)
    path.write_text(path.read_text())  # same bytes, new mtime
    write_wrapper(pipelines_dir, "marker", echo_wrapper("marker"))  # a change that must be seen after it
    wait_until(lambda: serves(server, "marker", "marker"), timeout=15)
    assert "reloaded pipeline 'steady'" not in server.log_text()


def test_broken_update_keeps_last_good_until_the_next_good_write(start_server, pipelines_dir: Path) -> None:
    write_wrapper(pipelines_dir, "keep", echo_wrapper("v1"))
    server = start_server(pipelines_dir)

    write_wrapper(pipelines_dir, "keep", "def broken(:\n")
    wait_until(lambda: server.log_text().count("failed to load pipeline 'keep'") >= 2, timeout=15)
    assert serves(server, "keep", "v1")
    assert "still serving rev" in server.log_text()

    write_wrapper(pipelines_dir, "keep", echo_wrapper("v2"))
    wait_until(lambda: serves(server, "keep", "v2"), timeout=15)


def test_configmap_style_symlink_swap(start_server, tmp_path: Path) -> None:
    """A ConfigMap mount: entries are symlinks through ``..data``, which is swapped atomically."""
    mount = tmp_path / "configmap"
    mount.mkdir()

    def publish(version: str) -> None:
        data = mount / f"..{version}"
        (data / "cm").mkdir(parents=True)
        (data / "cm" / "pipeline_wrapper.py").write_text(echo_wrapper(version))
        (mount / "..data_tmp").symlink_to(data.name)
        os.replace(mount / "..data_tmp", mount / "..data")

    publish("v1")
    (mount / "cm").symlink_to("..data/cm")
    server = start_server(mount)
    assert serves(server, "cm", "v1")

    publish("v2")
    shutil.rmtree(mount / "..v1")
    wait_until(lambda: serves(server, "cm", "v2"), timeout=15)


def test_polling_mode_follows_changes(start_server, pipelines_dir: Path) -> None:
    server = start_server(
        pipelines_dir, env={"HAYHOOKS_GUNICORN_WATCH": "poll", "HAYHOOKS_GUNICORN_POLL_INTERVAL_MS": "200"}
    )
    assert "(polling every 200 ms)" in server.log_text()
    write_wrapper(pipelines_dir, "polled", echo_wrapper("polled"))
    wait_until(lambda: serves(server, "polled", "polled"), timeout=15)
    # Two edits within one second: the second must be seen by the poll itself (watchfiles' poller compares
    # whole-second mtimes and missed it); the 10 s safety re-scan would only catch it after the bound below.
    wrapper = pipelines_dir / "polled" / "pipeline_wrapper.py"
    for version in ("polled 2", "polled 3"):
        wrapper.write_text(echo_wrapper(version))
        wait_until(lambda v=version: serves(server, "polled", v), timeout=8)
    shutil.rmtree(pipelines_dir / "polled")
    wait_until(lambda: gone(server, "polled"), timeout=15)


def test_watch_off_reads_the_directory_at_boot_only(start_server, pipelines_dir: Path) -> None:
    write_wrapper(pipelines_dir, "boot", echo_wrapper("boot"))
    server = start_server(pipelines_dir, env={"HAYHOOKS_GUNICORN_WATCH": "off"})
    assert serves(server, "boot", "boot")
    assert "watching" not in server.log_text()


def test_swaps_under_load_never_fail_a_request(start_server, pipelines_dir: Path) -> None:
    """Clients keep calling the swapped pipeline and another one; no call may see a 404 or 5xx."""
    write_wrapper(pipelines_dir, "swapped", echo_wrapper("v0"))
    write_wrapper(pipelines_dir, "bystander", echo_wrapper("bystander"))
    server = start_server(pipelines_dir)
    statuses: Counter[int] = Counter()
    replies: set[object] = set()
    stop = threading.Event()

    def client(name: str) -> None:
        with httpx.Client(base_url=server.url, timeout=30) as c:
            while not stop.is_set():
                response = c.post(f"/{name}/run", json={})
                statuses[response.status_code] += 1
                if name == "swapped":
                    replies.add(reply(response))

    threads = [threading.Thread(target=client, args=(n,)) for n in ("swapped", "swapped", "bystander")]
    for thread in threads:
        thread.start()
    swaps = 25
    try:
        for version in range(1, swaps + 1):
            write_wrapper(pipelines_dir, "swapped", echo_wrapper(f"v{version}"))
            wait_until(lambda v=version: serves(server, "swapped", f"v{v}"), timeout=15)
    finally:
        stop.set()
        for thread in threads:
            thread.join()

    assert sum(statuses.values()) > 200
    assert set(statuses) == {200}, statuses
    assert f"v{swaps}" in replies and len(replies) > 2
    assert "/swapped/run" in server.get("/openapi.json").json()["paths"]


def test_gunicorn_conventions_web_concurrency_and_cmd_args(start_server, pipelines_dir: Path) -> None:
    """WEB_CONCURRENCY sets the worker count; GUNICORN_CMD_ARGS overrides it and the rest of the config file."""
    write_wrapper(pipelines_dir, "count", echo_wrapper("count"))
    port = free_port()
    env = {"GUNICORN_CMD_ARGS": "", "WEB_CONCURRENCY": "3", "HAYHOOKS_HOST": "127.0.0.1", "HAYHOOKS_PORT": str(port)}
    server = start_server(pipelines_dir, workers=3, env=env, port=port)
    assert len(server.worker_pids()) == 3
    assert serves(server, "count", "count")

    # The fixture passes --workers 1 and --bind in GUNICORN_CMD_ARGS: both beat WEB_CONCURRENCY and HAYHOOKS_PORT.
    server = start_server(pipelines_dir, workers=1, env={"WEB_CONCURRENCY": "3", "HAYHOOKS_PORT": str(port)})
    assert len(server.worker_pids()) == 1
    assert server.port != port and serves(server, "count", "count")


def test_sigterm_during_a_long_load_stops_promptly(start_server, pipelines_dir: Path, tmp_path: Path) -> None:
    """Loading runs after the worker reset its signal handling: SIGTERM is not held until graceful_timeout."""
    import signal

    markers = tmp_path / "markers"
    markers.mkdir()
    slow = echo_wrapper("never", setup_sleep=120).replace(
        "        time.sleep(120", "        open(f'{MARKERS}/{os.getpid()}', 'w').close()\n        time.sleep(120"
    )
    slow = f"import os\nMARKERS = {str(markers)!r}\n" + slow
    write_wrapper(pipelines_dir, "forever", slow)
    server = start_server(pipelines_dir, wait=False, args=["--graceful-timeout", "60"])
    wait_until(lambda: len(list(markers.iterdir())) == 2, timeout=30)  # both workers are inside setup()

    server.proc.send_signal(signal.SIGTERM)
    # Waiting out graceful_timeout would take 60 s and end with SIGKILL; a prompt stop does neither.
    assert server.proc.wait(timeout=30) == 0
    assert "SIGKILL" not in server.log_text()


def test_hot_reload_slower_than_timeout_and_hung_loads_are_bounded(start_server, pipelines_dir: Path) -> None:
    """Reloads run off the event loop (heartbeats continue); a load past the deadline fails, the rest serve."""
    write_wrapper(pipelines_dir, "steady", echo_wrapper("steady"))
    server = start_server(pipelines_dir, args=["--timeout", "3"], env={"HAYHOOKS_GUNICORN_LOAD_TIMEOUT": "8"})
    pids = server.worker_pids()

    write_wrapper(pipelines_dir, "slowreload", echo_wrapper("slow", setup_sleep=6))
    write_wrapper(pipelines_dir, "hung", echo_wrapper("hung", setup_sleep=600))
    wait_until(lambda: serves(server, "slowreload", "slow"), timeout=30)
    wait_until(lambda: server.log_text().count("did not finish within 8s") == 2, timeout=30)
    assert "WORKER TIMEOUT" not in server.log_text()
    assert server.worker_pids() == pids
    assert serves(server, "steady", "steady")
    assert gone(server, "hung")


def test_multi_file_copy_loads_once_and_complete(start_server, pipelines_dir: Path, tmp_path: Path) -> None:
    """A plain (non-atomic) copy of a pipeline with several files is debounced into one complete load."""
    server = start_server(pipelines_dir)
    source = tmp_path / "src"
    source.mkdir()
    (source / "pipeline_wrapper.py").write_text(READS_BESIDE)
    (source / "helper.py").write_text(SHOUT)
    (source / "greeting.txt").write_text("copied")
    for i in range(20):
        (source / f"data{i}.txt").write_text("x" * 1000)
    shutil.copytree(source, pipelines_dir / "copied")
    wait_until(lambda: serves(server, "copied", "copied ABC"), timeout=15)
    assert server.log_text().count("loaded pipeline 'copied'") == 2
    assert "failed to load pipeline 'copied'" not in server.log_text()


def test_a_slow_reload_does_not_hold_back_other_pipelines(start_server, pipelines_dir: Path) -> None:
    """While a model-loading pipeline reloads, an edit of another pipeline is served meanwhile."""
    write_wrapper(pipelines_dir, "model", echo_wrapper("model v1"))
    write_wrapper(pipelines_dir, "quick", echo_wrapper("quick v1"))
    server = start_server(pipelines_dir)

    write_wrapper(pipelines_dir, "model", echo_wrapper("model v2", setup_sleep=20))
    wait_until(lambda: "model" in server.get("/readyz").json().get("behind", []), timeout=15)
    write_wrapper(pipelines_dir, "quick", echo_wrapper("quick v2"))
    wait_until(lambda: serves(server, "quick", "quick v2"), timeout=15)
    # The slow reload is still under way: the old version serves, the new one is not half there.
    assert serves(server, "model", "model v1")
