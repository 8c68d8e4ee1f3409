"""Fast checks of path following: resolving links, dangling links, replaced directories, and a worker's app
(in-process, no watcher) following a swapped link: reloads from the new release, nothing lost while it dangles."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import booted_app, swap_link, write_release
from fastapi import FastAPI
from fastapi.testclient import TestClient

from hayhooks_gunicorn.app_context import app_context
from hayhooks_gunicorn.cluster.state_files import state_dir
from hayhooks_gunicorn.deploys.shared_dir import Workspace, write_submission
from hayhooks_gunicorn.deploys.submission import Submission
from hayhooks_gunicorn.errors import DeployError
from hayhooks_gunicorn.reload.follow import FollowedDir, links_on, resolve_dir
from hayhooks_gunicorn.reload.reconcile import Reconciler
from hayhooks_gunicorn.settings import KitSettings


def test_resolve_dir_follows_links_on_the_path_and_says_why_it_cannot(tmp_path: Path) -> None:
    (tmp_path / "rel-a" / "pipelines").mkdir(parents=True)
    (tmp_path / "current").symlink_to("rel-a")
    configured = tmp_path / "current" / "pipelines"
    resolved = resolve_dir(configured)
    assert resolved.path == tmp_path / "rel-a" / "pipelines" and resolved.reason is None
    assert links_on(configured) == [(tmp_path / "current", "rel-a")]
    assert links_on(tmp_path / "rel-a") == []

    swap_link(tmp_path / "current", "rel-missing")
    dangling = resolve_dir(configured)
    assert dangling.path is None and dangling.key == (None, None)
    assert f"link '{tmp_path / 'current'}' -> 'rel-missing'" in str(dangling.reason)
    (tmp_path / "file").write_text("x")
    assert "is not a directory" in str(resolve_dir(tmp_path / "file").reason)


def test_followed_dir_notices_swaps_replacements_and_a_directory_that_comes_back(tmp_path: Path) -> None:
    (tmp_path / "rel-a").mkdir()
    (tmp_path / "rel-b").mkdir()
    (tmp_path / "current").symlink_to("rel-a")
    followed = FollowedDir(tmp_path / "current")
    try:
        assert followed.current.path == tmp_path / "rel-a" and not followed.refresh()
        swap_link(tmp_path / "current", "rel-b")
        assert followed.refresh() and followed.current.path == tmp_path / "rel-b"

        # The same name, another directory: rm -rf + mv, then a delete and mkdir within one check.
        plain = FollowedDir(tmp_path / "rel-b")
        shutil.rmtree(tmp_path / "rel-b")
        (tmp_path / "rel-a").rename(tmp_path / "rel-b")
        assert plain.refresh() and plain.current.path == tmp_path / "rel-b"
        shutil.rmtree(tmp_path / "rel-b")
        (tmp_path / "rel-b").mkdir()  # the held descriptor keeps the old inode from being reused
        assert plain.refresh()
        shutil.rmtree(tmp_path / "rel-b")
        assert plain.refresh() and plain.current.path is None
        assert not plain.refresh() and "No such file or directory" in str(plain.current.reason)
        (tmp_path / "rel-b").mkdir()
        assert plain.refresh() and plain.current.path == tmp_path / "rel-b"
        plain.close()
    finally:
        followed.close()


def test_the_state_directory_is_keyed_by_the_configured_path_not_the_write_release(tmp_path: Path) -> None:
    (tmp_path / "rel-a").mkdir()
    (tmp_path / "rel-b").mkdir()
    (tmp_path / "current").symlink_to("rel-a")
    settings = KitSettings(_env_file=None)  # type: ignore[call-arg]
    before = state_dir(settings, tmp_path / "current")
    swap_link(tmp_path / "current", "rel-b")
    assert state_dir(settings, tmp_path / "current") == before != state_dir(settings, tmp_path / "rel-b")


def test_deploys_into_a_directory_behind_a_link_are_refused_and_name_it(tmp_path: Path) -> None:
    write_release(tmp_path / "rel-a", "a")
    (tmp_path / "current").symlink_to("rel-a")
    before = sorted(p.name for p in (tmp_path / "rel-a").rglob("*"))
    with pytest.raises(DeployError) as refused:
        Workspace(tmp_path / "current").check_writable()
    assert refused.value.status == 409
    assert f"link '{tmp_path / 'current'}' -> 'rel-a'" in str(refused.value)
    assert f"HAYHOOKS_PIPELINES_DIR to '{tmp_path / 'rel-a'}'" in str(refused.value)
    settings = KitSettings(_env_file=None)  # type: ignore[call-arg]
    with pytest.raises(DeployError, match="published through the link"):
        write_submission(Submission.yaml("other", "components: {}\n"), tmp_path / "current", True, settings, False)
    assert sorted(p.name for p in (tmp_path / "rel-a").rglob("*")) == before


@pytest.fixture
def linked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[FastAPI, Path]]:
    """A worker's app serving ``current -> rel-a`` (no watcher: each test drives ``sync`` itself)."""
    write_release(tmp_path / "rel-a", "a", name="follow_probe")
    (tmp_path / "current").symlink_to("rel-a")
    with booted_app(tmp_path / "current", monkeypatch, READY_GRACE="0") as app:
        yield app, tmp_path


def reconciler_of(app: FastAPI) -> Reconciler:
    runtime = app_context(app).runtime
    assert runtime is not None
    return runtime.reconciler


def test_a_swapped_link_reloads_from_the_new_release_even_with_the_same_content(linked: tuple[FastAPI, Path]) -> None:
    app, base = linked
    client = TestClient(app)
    reconciler = reconciler_of(app)
    assert client.post("/follow_probe/run", json={}).json()["result"] == {"reply": "a/a"}
    assert reconciler.serves_from == base / "rel-a"
    revision = reconciler.served["follow_probe"].revision

    # Same files in another release: same revision, loaded again so that __file__ points at files that exist.
    shutil.copytree(base / "rel-a", base / "rel-same")
    swap_link(base / "current", "rel-same")
    reconciler.sync(wait=True)
    shutil.rmtree(base / "rel-a")
    served = reconciler.served["follow_probe"]
    assert served.revision == revision and served.location == str(base / "rel-same" / "follow_probe")
    assert client.post("/follow_probe/run", json={}).json()["result"] == {"reply": "a/a"}

    # New content: helper and file beside the wrapper come from the new release, compiled from source.
    write_release(base / "rel-b", "b", name="follow_probe")
    swap_link(base / "current", "rel-b")
    reconciler.sync(wait=True)
    assert client.post("/follow_probe/run", json={}).json()["result"] == {"reply": "b/b"}
    assert reconciler.serves_from == base / "rel-b" and not reconciler.failed
    assert not list((base / "rel-b").rglob("__pycache__"))
    state = client.get("/readyz").json()
    assert state["status"] == "ready" and state["serves_from"] == str(base / "rel-b")


def test_a_dangling_link_withdraws_nothing_and_readyz_reports_it_after_the_grace(linked: tuple[FastAPI, Path]) -> None:
    app, base = linked
    client = TestClient(app)
    reconciler = reconciler_of(app)
    swap_link(base / "current", "rel-missing")
    reconciler.sync()
    reconciler.sync()
    assert reconciler.unresolved is not None and "rel-missing" in reconciler.unresolved.reason
    assert client.post("/follow_probe/run", json={}).json()["result"]["reply"] == "a/a"
    ready = client.get("/readyz")  # the grace is 0 s here
    assert ready.status_code == 503 and ready.json()["status"] == "unresolved"
    assert "rel-missing" in ready.json()["error"] and ready.json()["pipelines"] == ["follow_probe"]

    write_release(base / "rel-missing", "back", name="follow_probe")
    reconciler.sync(wait=True)
    assert reconciler.unresolved is None
    assert client.post("/follow_probe/run", json={}).json()["result"]["reply"] == "back/back"
    assert client.get("/readyz").status_code == 200
