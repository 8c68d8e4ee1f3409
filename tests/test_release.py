"""A hot reload frees the version it replaced: nothing of the kit, hayhooks or FastAPI keeps the old wrapper."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import wait_until
from fastapi.testclient import TestClient
from hayhooks.server.pipelines.registry import registry
from hayhooks.settings import settings as hayhooks_settings
from test_reload_core import Kit, wrapper

from hayhooks_gunicorn.app_context import app_context
from hayhooks_gunicorn.reload import release
from hayhooks_gunicorn.settings import kit_settings
from hayhooks_gunicorn.worker.app import boot, create_app

HOLDS_MEMORY = "self.blob = bytearray(b'x' * 2_000_000)"


@pytest.fixture
def kit(tmp_path: Path) -> Iterator[Kit]:
    k = Kit(tmp_path)
    yield k
    k.close()


def served_wrapper(name: str) -> weakref.ref[object]:
    wrapper_object = registry.get(name)
    assert wrapper_object is not None
    return weakref.ref(wrapper_object)


def test_the_replaced_wrapper_is_garbage_after_a_file_edit(kit: Kit) -> None:
    name = kit.write("edited", wrapper("v1", setup=HOLDS_MEMORY))
    kit.sync()
    assert kit.run(name) == "v1"  # a request: FastAPI has now classified (and cached) the old endpoint
    old = served_wrapper(name)
    kit.write("edited", wrapper("v2", setup=HOLDS_MEMORY))
    kit.sync()
    assert kit.run(name) == "v2"
    gc.collect()
    assert old() is None, "the replaced version is still referenced"


def test_the_withdrawn_wrapper_is_garbage_after_an_undeploy(kit: Kit) -> None:
    name = kit.write("removed", wrapper("v1", setup=HOLDS_MEMORY))
    kit.sync()
    assert kit.run(name) == "v1"
    old = served_wrapper(name)
    (kit.dir / name / "pipeline_wrapper.py").unlink()
    (kit.dir / name).rmdir()
    kit.sync()
    wait_until(lambda: name not in kit.reconciler.served, timeout=10)  # the follow-up pass withdraws it
    gc.collect()
    assert old() is None


def test_a_failed_reload_keeps_the_serving_version_and_frees_the_broken_one(kit: Kit) -> None:
    name = kit.write("kept", wrapper("v1", setup=HOLDS_MEMORY))
    kit.sync()
    serving = served_wrapper(name)
    kit.write("kept", wrapper("v2", setup=HOLDS_MEMORY + "; raise RuntimeError('no')"))
    kit.sync()
    gc.collect()
    assert serving() is not None and kit.run(name) == "v1"


@pytest.mark.integration  # loads in a separate Python process (the pre-flight or the check command)
def test_the_replaced_wrapper_is_garbage_after_a_deploy_call(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A forward-mode deploy over HTTP, then the worker's reload of what it wrote (its watcher's pass)."""
    pipelines = tmp_path / "pipelines"
    pipelines.mkdir()
    monkeypatch.setattr(hayhooks_settings, "pipelines_dir", str(pipelines))
    monkeypatch.setenv("HAYHOOKS_GUNICORN_WATCH", "off")
    monkeypatch.setenv("HAYHOOKS_GUNICORN_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("HAYHOOKS_GUNICORN_METRICS", "off")
    monkeypatch.setenv("HAYHOOKS_GUNICORN_DEPLOY_WAIT", "0")
    kit_settings.cache_clear()
    try:
        app = create_app()
        runtime = boot(app)
        client = TestClient(app, base_url="http://127.0.0.1:1416")
        files = {"pipeline_wrapper.py": wrapper("v1", setup=HOLDS_MEMORY)}
        assert client.post("/deploy_files", json={"name": "release_deployed", "files": files}).status_code in (200, 202)
        runtime.reconciler.sync(wait=True)
        assert client.post("/release_deployed/run", json={}).json()["result"] == {"reply": "v1"}
        old = served_wrapper("release_deployed")
        files = {"pipeline_wrapper.py": wrapper("v2", setup=HOLDS_MEMORY)}
        body = {"name": "release_deployed", "files": files, "overwrite": True}
        assert client.post("/deploy_files", json=body).status_code in (200, 202)
        runtime.reconciler.sync(wait=True)
        assert client.post("/release_deployed/run", json={}).json()["result"] == {"reply": "v2"}
        gc.collect()
        assert old() is None
        assert client.post("/undeploy/release_deployed").status_code in (200, 202)
        runtime.reconciler.sync(wait=True)
    finally:
        context_runtime = app_context(app).runtime
        if context_runtime is not None:
            for listener in context_runtime.reconciler.listeners:
                stop = getattr(getattr(listener, "__self__", None), "stop", None)
                if stop is not None:
                    stop()
        kit_settings.cache_clear()


def test_release_memory_trims_the_heap_where_glibc_can() -> None:
    release.release_memory()  # never raises, whatever the libc
    assert release._malloc_trim is not None
