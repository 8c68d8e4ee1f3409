"""The reload core in one process, no gunicorn: scan -> reconcile -> load -> swap routes, and its failures."""

from __future__ import annotations

import shutil
import textwrap
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import wait_until
from fastapi import FastAPI
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from hayhooks.server.pipelines.registry import registry

from hayhooks_gunicorn.reload import Change, Reconciler
from hayhooks_gunicorn.reload.missing import WITHDRAW_GRACE_SECONDS
from hayhooks_gunicorn.reload.names import fixed_routes

YAML = """\
components:
  builder:
    type: haystack.components.builders.prompt_builder.PromptBuilder
    init_parameters:
      template: "{greeting} {{{{name}}}}!"
connections: []
inputs:
  name: builder.name
outputs:
  prompt: builder.prompt
"""


def wrapper(reply: str, setup: str = "pass") -> str:
    return textwrap.dedent(
        f'''
        import sys, time
        from pathlib import Path

        from hayhooks import BasePipelineWrapper


        class PipelineWrapper(BasePipelineWrapper):
            def setup(self) -> None:
                {setup}

            def run_api(self, text: str = "") -> dict:
                """Answer.

                Args:
                    text: ignored
                """
                return {{"reply": {reply!r}}}
        '''
    )


class Kit:
    """One process's reload core over a temp pipelines directory; every name is unique to the test."""

    def __init__(self, root: Path) -> None:
        self.dir = root / "pipelines"
        self.dir.mkdir()
        self.app = FastAPI()
        self.app.add_api_route("/ops/run", lambda: {"ok": True}, methods=["POST"])  # a server route
        self.reconciler = Reconciler(
            app=self.app, pipelines_dir=self.dir, server_routes=fixed_routes(self.app), load_timeout=5.0
        )
        self.changes: list[Change] = []
        self.reconciler.listeners.append(self.changes.append)
        self.client = TestClient(self.app)
        self.prefix = f"p{uuid.uuid4().hex[:6]}_"

    def name(self, short: str) -> str:
        return self.prefix + short

    def write(self, short: str, source: str, **extra: str) -> str:
        name = self.name(short)
        (self.dir / name).mkdir(exist_ok=True)
        (self.dir / name / "pipeline_wrapper.py").write_text(source)
        for rel, content in extra.items():
            (self.dir / name / rel).write_text(content)
        return name

    def sync(self) -> None:
        self.reconciler.sync(wait=True)

    def run(self, name: str) -> object:
        answer = self.client.post(f"/{name}/run", json={"text": "x"})
        return answer.json()["result"]["reply"] if answer.status_code == 200 else answer.status_code

    def close(self) -> None:
        self.reconciler.load_timeout = 5.0
        self.reconciler.missing.grace = 0.0  # withdraw everything in the pass below
        for path in list(self.dir.iterdir()):
            if path.is_dir():
                for f in path.iterdir():
                    f.unlink()
                path.rmdir()
            else:
                path.unlink()
        self.sync()
        self.reconciler.stop()


@pytest.fixture
def kit(tmp_path: Path) -> Iterator[Kit]:
    k = Kit(tmp_path)
    yield k
    k.close()


def test_a_new_wrapper_is_loaded_and_served(kit: Kit) -> None:
    name = kit.write("hello", wrapper("v1"))
    kit.sync()
    assert kit.run(name) == "v1"
    assert [c.outcome for c in kit.changes] == ["loaded"]
    assert name in kit.reconciler.served and not kit.reconciler.failed


def test_a_yaml_pipeline_is_loaded_and_served(kit: Kit) -> None:
    name = kit.name("greet")
    (kit.dir / f"{name}.yml").write_text(YAML.format(greeting="Hello"))
    kit.sync()
    answer = kit.client.post(f"/{name}/run", json={"name": "Ada"})
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"result": {"builder": {"prompt": "Hello Ada!"}}}


def test_an_edit_is_swapped_into_the_same_route_slot(kit: Kit) -> None:
    name = kit.write("edit", wrapper("v1"))
    kit.sync()
    routes = len(kit.app.router.routes)
    slot = [r.path for r in kit.app.router.routes if isinstance(r, APIRoute)].index(f"/{name}/run")
    kit.write("edit", wrapper("v2"))
    kit.sync()
    assert kit.run(name) == "v2"
    assert len(kit.app.router.routes) == routes
    assert [r.path for r in kit.app.router.routes if isinstance(r, APIRoute)].index(f"/{name}/run") == slot
    assert [c.outcome for c in kit.changes] == ["loaded", "loaded"]
    assert kit.changes[0].revision != kit.changes[1].revision


def test_an_edit_of_a_file_beside_the_wrapper_reloads_it(kit: Kit) -> None:
    reads = 'self.note = (Path(__file__).parent / "note.txt").read_text()'
    name = kit.write("beside", wrapper("r", setup=reads), **{"note.txt": "one"})
    kit.sync()
    first = kit.reconciler.served[name].revision
    (kit.dir / name / "note.txt").write_text("two")
    kit.sync()
    assert kit.reconciler.served[name].revision != first


def test_an_unchanged_directory_loads_nothing_again(kit: Kit) -> None:
    kit.write("same", wrapper("v1"))
    kit.sync()
    kit.sync()
    (kit.dir / kit.name("same") / "pipeline_wrapper.py").write_text(wrapper("v1"))  # same bytes, new mtime
    kit.sync()
    assert len(kit.changes) == 1


@pytest.mark.parametrize(
    ("source", "error"),
    [
        ("def broken(:\n", "invalid syntax"),
        ("import a_module_that_does_not_exist\n", "a_module_that_does_not_exist"),
        (wrapper("x", setup="raise RuntimeError('setup exploded')"), "setup exploded"),
        ("x = 1\n", "PipelineWrapper"),
    ],
)
def test_a_broken_edit_keeps_the_last_good_version(kit: Kit, source: str, error: str) -> None:
    name = kit.write("keep", wrapper("good"))
    kit.sync()
    kit.write("keep", source)
    kit.sync()
    assert kit.run(name) == "good"
    assert error in kit.reconciler.failed[name].error
    assert kit.changes[-1].outcome == "failed" and kit.reconciler.served[name].revision == kit.changes[0].revision
    kit.write("keep", wrapper("fixed"))
    kit.sync()
    assert kit.run(name) == "fixed" and name not in kit.reconciler.failed


def test_a_setup_that_calls_sys_exit_is_a_failed_load_not_a_stuck_one(kit: Kit) -> None:
    name = kit.write("exits", wrapper("never", setup="sys.exit(3)"))
    kit.sync()
    assert name in kit.reconciler.failed and "SystemExit" in kit.reconciler.failed[name].error
    assert not kit.reconciler.loading
    assert kit.run(name) == 404


def test_a_setup_past_the_load_timeout_fails_and_the_others_serve(kit: Kit) -> None:
    kit.reconciler.load_timeout = 0.5
    slow = kit.write("slow", wrapper("late", setup="time.sleep(3)"))
    quick = kit.write("quick", wrapper("quick"))
    kit.sync()
    assert "did not finish within 0.5s" in kit.reconciler.failed[slow].error
    assert kit.run(quick) == "quick" and kit.run(slow) == 404


def test_a_deleted_pipeline_is_withdrawn_once_it_stays_gone(kit: Kit) -> None:
    name = kit.write("gone", wrapper("v1"))
    kit.sync()
    (kit.dir / name / "pipeline_wrapper.py").unlink()
    (kit.dir / name).rmdir()
    started = time.monotonic()
    kit.sync()
    assert kit.run(name) == "v1"  # it may be on its way back (a replace with two renames)
    # No further pass is asked for: the one that found it missing scheduled the follow-up that withdraws it.
    wait_until(lambda: kit.run(name) == 404, timeout=WITHDRAW_GRACE_SECONDS + 5)
    assert time.monotonic() - started >= WITHDRAW_GRACE_SECONDS
    assert registry.get(name) is None
    assert kit.changes[-1].outcome == "removed"
    assert not any(isinstance(r, APIRoute) and r.path == f"/{name}/run" for r in kit.app.router.routes)


def test_a_pipeline_replaced_with_two_renames_serves_throughout(kit: Kit) -> None:
    """Old aside, new in: a pass landing between the two renames withdrew the pipeline (404 until the next pass,
    which only a later file event asked for). Now the old version serves on, and a follow-up pass loads the new
    one without any further event or call."""
    name = kit.write("renamed", wrapper("v1"))
    kit.sync()
    staged = kit.dir / f".stage-{name}"
    staged.mkdir()
    (staged / "pipeline_wrapper.py").write_text(wrapper("v2"))
    (kit.dir / name).rename(kit.dir / f".old-{name}")
    kit.sync()  # the pass that lands in the gap
    assert kit.run(name) == "v1" and name in kit.reconciler.served
    staged.rename(kit.dir / name)
    shutil.rmtree(kit.dir / f".old-{name}")
    wait_until(lambda: kit.run(name) == "v2", timeout=WITHDRAW_GRACE_SECONDS + 5)
    assert [c.outcome for c in kit.changes if c.name == name] == ["loaded", "loaded"]


def test_a_pass_finding_a_pipeline_missing_does_not_wait(kit: Kit) -> None:
    """The pass only schedules the follow-up: it loads the other pipelines' changes at once (a pass that slept
    first held them back)."""
    gone, other = kit.write("gone", wrapper("v1")), kit.write("other", wrapper("v1"))
    kit.sync()
    shutil.rmtree(kit.dir / gone)
    kit.write("other", wrapper("v2"))
    started = time.monotonic()
    kit.reconciler.sync()  # starts the load of 'other' and returns
    assert gone in kit.reconciler.served
    assert time.monotonic() - started < WITHDRAW_GRACE_SECONDS
    wait_until(lambda: kit.run(other) == "v2", timeout=10)


def test_an_unreadable_directory_withdraws_nothing(kit: Kit, monkeypatch: pytest.MonkeyPatch) -> None:
    name = kit.write("stays", wrapper("v1"))
    kit.sync()
    monkeypatch.setattr(kit.reconciler, "pipelines_dir", kit.dir / "no-such-dir")
    kit.sync()
    assert kit.run(name) == "v1" and name in kit.reconciler.served


def test_names_that_shadow_a_module_or_a_route_are_refused(kit: Kit) -> None:
    for bad in ("json", "ops"):
        (kit.dir / bad).mkdir()
        (kit.dir / bad / "pipeline_wrapper.py").write_text(wrapper("bad"))
    kit.sync()
    assert "shadows the importable Python module" in kit.reconciler.failed["json"].error
    assert "clashes with a server route" in kit.reconciler.failed["ops"].error
    assert "json" not in kit.reconciler.served and "ops" not in kit.reconciler.served
    assert kit.client.post("/ops/run").json() == {"ok": True}


def test_a_directory_without_a_wrapper_is_reported(kit: Kit) -> None:
    name = kit.name("empty")
    (kit.dir / name).mkdir()
    (kit.dir / name / "README.md").write_text("no wrapper here")
    kit.sync()
    assert "has no pipeline_wrapper.py" in kit.reconciler.failed[name].error


def test_pending_lists_what_the_last_pass_found_but_not_served(kit: Kit) -> None:
    name = kit.write("later", wrapper("v1"))
    assert kit.reconciler.pending() == []  # from memory: no pass has read the directory since the write
    kit.sync()
    assert kit.reconciler.pending() == [] and name in kit.reconciler.served
    assert kit.reconciler.snapshot().on_disk[name] == kit.reconciler.served[name]


def test_a_hidden_or_temporary_entry_is_not_a_pipeline(kit: Kit) -> None:
    (kit.dir / ".hidden").mkdir()
    (kit.dir / ".hidden" / "pipeline_wrapper.py").write_text(wrapper("h"))
    (kit.dir / "notes.txt").write_text("not a pipeline")
    (kit.dir / "x.yml.swp").write_text("vim")
    kit.sync()
    assert not kit.reconciler.served and not kit.reconciler.failed
