"""Pipelines shipped the ways operators ship them: a swapped release link (of the directory or of a parent), a
directory replaced by a rename or deleted and created again, a dangling link, a release with a broken pipeline.
Real gunicorn processes with 2 workers, real links and renames, clients calling throughout."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path
from types import TracebackType

import httpx
import pytest
from conftest import PROBE_WRAPPER, Server, echo_wrapper, swap_link, wait_until, write_release, write_wrapper
from prometheus_client.parser import text_string_to_metric_families

pytestmark = pytest.mark.integration

# Whatever converges, the bound is 2 s; polled with room for a busy test machine.
SWAP_DEADLINE = 5


def reply(response: httpx.Response) -> object:
    return response.json()["result"]["reply"] if response.status_code == 200 else response.status_code


def serves(server: Server, name: str, expected: object) -> bool:
    return server.every_worker(lambda r: reply(r) == expected, "POST", f"/{name}/run", json={})


class Load:
    """Client threads calling *names* until the block ends; any answer but a 200 is a failure."""

    def __init__(self, server: Server, *names: str) -> None:
        self.server, self.names = server, names
        self.calls = 0
        self.failures: list[object] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(n,)) for n in names]

    def _run(self, name: str) -> None:
        with httpx.Client(base_url=self.server.url, timeout=30) as client:
            while not self._stop.is_set():
                try:
                    response = client.post(f"/{name}/run", json={})
                    if response.status_code != 200:
                        self.failures.append((name, response.status_code, response.text[:200]))
                except httpx.HTTPError as e:
                    self.failures.append((name, repr(e)))
                self.calls += 1

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        wait_until(lambda: self.calls > 20, timeout=15)
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join()


def dir_info(server: Server) -> dict[str, float]:
    """``hayhooks_pipelines_dir_info`` by worker, for the samples set to 1."""
    found: dict[str, float] = {}
    for family in text_string_to_metric_families(server.get("/metrics").text):
        for sample in family.samples:
            if sample.name == "hayhooks_pipelines_dir_info" and sample.value == 1:
                found[sample.labels["worker"]] = sample.labels["path"]  # type: ignore[assignment]
    return found


def test_a_swapped_release_link_is_followed_by_every_worker_under_load(start_server, tmp_path: Path) -> None:
    base = tmp_path / "releases"
    write_release(base / "rel-a", "a")
    (base / "current").symlink_to("rel-a")
    server = start_server(base / "current")
    assert serves(server, "probe", "a/a")

    write_release(base / "rel-b", "b")
    with Load(server, "probe", "probe") as load:
        swap_link(base / "current", "rel-b")
        wait_until(lambda: serves(server, "probe", "b/b"), timeout=SWAP_DEADLINE)
    assert load.failures == [] and load.calls > 50
    shutil.rmtree(base / "rel-a")  # as git-sync does once it has swapped

    # Edits inside the new release are followed as edits of a plain directory are.
    (base / "rel-b" / "probe" / "note.txt").write_text("edited")
    wait_until(lambda: serves(server, "probe", "b/edited"), timeout=SWAP_DEADLINE)
    assert not list((base / "rel-b").rglob("__pycache__"))
    assert server.log_text().count(f"follows pipelines directory '{base / 'current'}' to '{base / 'rel-b'}'") == 2

    # Which release every worker serves: /cluster and the metrics.
    view = server.get("/cluster").json()
    assert view["resolved"] == str(base / "rel-b") and view["converged"]
    assert [w["serves_from"] for w in view["workers"]] == [str(base / "rel-b")] * 2
    wait_until(lambda: set(dir_info(server).values()) == {str(base / "rel-b")} and len(dir_info(server)) == 2)


def test_a_swapped_parent_link_is_followed_when_polling(start_server, tmp_path: Path) -> None:
    base = tmp_path / "app"
    write_release(base / "rel-a" / "pipelines", "a")
    write_release(base / "rel-b" / "pipelines", "b")
    (base / "current").symlink_to("rel-a")
    env = {"HAYHOOKS_GUNICORN_WATCH": "poll", "HAYHOOKS_GUNICORN_POLL_INTERVAL_MS": "200"}
    server = start_server(base / "current" / "pipelines", env=env)
    assert serves(server, "probe", "a/a")

    with Load(server, "probe") as load:
        swap_link(base / "current", "rel-b")
        wait_until(lambda: serves(server, "probe", "b/b"), timeout=SWAP_DEADLINE)
    assert load.failures == []
    (base / "rel-b" / "pipelines" / "probe" / "helper.py").write_text("REPLY = 'polled'\n")
    wait_until(lambda: serves(server, "probe", "polled/b"), timeout=SWAP_DEADLINE)


def test_a_directory_replaced_by_a_rename_or_deleted_and_created_again(start_server, tmp_path: Path) -> None:
    """The wrapper reads its note in ``setup()``: while the directory is gone, nothing beside the old version
    exists to be read at request time (the README says so); that is the only difference with a link swap."""
    pipelines = tmp_path / "pipelines"
    pipelines.mkdir()
    write_wrapper(pipelines, "steady", echo_wrapper("v1"))
    server = start_server(pipelines)

    with Load(server, "steady", "steady") as load:
        # rm -rf dir; mv new dir
        staged = tmp_path / "new"
        staged.mkdir()
        write_wrapper(staged, "steady", echo_wrapper("v2"))
        shutil.rmtree(pipelines)
        staged.rename(pipelines)
        wait_until(lambda: serves(server, "steady", "v2"), timeout=SWAP_DEADLINE)

        # Deleted: nothing is withdrawn, one line per worker says why.
        lost = server.log_text().count("cannot follow pipelines directory")
        shutil.rmtree(pipelines)
        wait_until(lambda: server.log_text().count("cannot follow pipelines directory") == lost + 2, timeout=10)
        assert serves(server, "steady", "v2")

        # ... and created again, then filled in place.
        pipelines.mkdir()
        write_wrapper(pipelines, "steady", echo_wrapper("v3"))
        wait_until(lambda: serves(server, "steady", "v3"), timeout=SWAP_DEADLINE)
    assert load.failures == [] and load.calls > 50
    assert server.log_text().count("cannot follow pipelines directory") == lost + 2

    write_wrapper(pipelines, "steady", echo_wrapper("v4"))
    wait_until(lambda: serves(server, "steady", "v4"), timeout=SWAP_DEADLINE)


def test_a_dangling_link_a_broken_release_and_deploy_calls(start_server, tmp_path: Path) -> None:
    base = tmp_path / "releases"
    write_wrapper(write_release(base / "rel-a", "a"), "other", echo_wrapper("other a"))
    (base / "current").symlink_to("rel-a")
    server = start_server(base / "current", env={"HAYHOOKS_GUNICORN_READY_GRACE": "1"})

    # A dangling link: the last good set keeps serving; /readyz says why once the grace period is over.
    swap_link(base / "current", "rel-next")
    wait_until(lambda: server.log_text().count("cannot follow pipelines directory") == 2, timeout=10)
    assert serves(server, "probe", "a/a") and serves(server, "other", "other a")
    answer = wait_until(lambda: (r := server.get("/readyz")).json()["status"] == "unresolved" and r, timeout=10)
    assert isinstance(answer, httpx.Response) and answer.status_code == 503 and "rel-next" in answer.json()["error"]

    # Deploy calls cannot write into a release that the next swap replaces: 409, naming the link; nothing written.
    before = sorted(str(p) for p in base.rglob("*"))
    refused = server.post("/deploy_files", json={"name": "late", "files": {"pipeline_wrapper.py": PROBE_WRAPPER}})
    assert refused.status_code == 409, refused.text
    assert f"published through the link '{base / 'current'}' -> 'rel-next'" in refused.json()["detail"]
    assert server.post("/undeploy/other").status_code == 409
    assert sorted(str(p) for p in base.rglob("*")) == before

    # The link's target arrives (built aside, renamed in) with a broken 'probe': its last good version keeps
    # serving, the rest moves on.
    write_wrapper(write_release(base / "building", "next"), "other", echo_wrapper("other next"))
    (base / "building" / "probe" / "pipeline_wrapper.py").write_text("def broken(:\n")
    (base / "building").rename(base / "rel-next")
    wait_until(lambda: serves(server, "other", "other next"), timeout=SWAP_DEADLINE)
    assert serves(server, "probe", "a/a")
    view = server.get("/cluster").json()
    assert [w["serves_from"] for w in view["workers"]] == [str(base / "rel-next")] * 2
    assert all("probe" in w["failures"] for w in view["workers"])
    ready = server.get("/readyz")
    assert ready.status_code == 200 and ready.json()["failed"] == ["probe"]
