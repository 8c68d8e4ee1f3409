"""Availability during reloads: steady traffic over 2 pipelines while one of them is replaced again and again.

Kit: the replaced pipeline is rewritten in the directory (atomic rename) and every worker follows it.
Baseline: the naive gunicorn recipe, redeployed through hayhooks' own ``POST /deploy_files`` with overwrite
(which reaches one worker per call). A request fails on a transport error, a non-2xx status or a body that is
not the pipeline's answer.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable

import httpx

from benchmarks.load import Response, Tally, client_loop, split_url
from benchmarks.pipelines import replace_wrapper, trivial, write_pipeline
from benchmarks.plan import Plan
from benchmarks.probe import result_of
from benchmarks.scenarios import Measured, Scenario
from benchmarks.servers import Server, start_all

TEXT = "ping"
STEADY, SWAPPED = "steady", "swapped"
SETTLE_S = 1.0  # traffic goes on this long after the last swap, so the last reload happens under load
MAX_STORM_S = 180.0


def version_of(response: Response) -> str | None:
    result = result_of(response.body.decode(errors="replace"))
    if isinstance(result, str) and result.endswith(f":{TEXT}"):
        return result[: -len(TEXT) - 1]
    return None


async def storm(server: Server, swap: Callable[[int], None], plan: Plan) -> dict[str, object]:
    host, port = split_url(server.url)
    body = json.dumps({"text": TEXT}).encode()
    requests = [(f"/{STEADY}/run", body), (f"/{SWAPPED}/run", body)]
    versions: set[str] = set()

    def check(path: str, response: Response) -> bool:
        version = version_of(response)
        if version is not None and path.startswith(f"/{SWAPPED}/"):
            versions.add(version)
        return version is not None

    tally = Tally()
    stop = asyncio.Event()
    started = time.monotonic()
    deadline = started + MAX_STORM_S
    clients = [
        asyncio.create_task(client_loop(host, port, requests, deadline, tally, check=check, stop=stop))
        for _ in range(plan.availability_connections)
    ]
    swap_errors: list[str] = []
    for index in range(1, plan.swaps + 1):
        await asyncio.sleep(plan.swap_interval)
        try:
            await asyncio.to_thread(swap, index)
        except Exception as e:
            swap_errors.append(str(e))
    last_swap = time.monotonic()
    while time.monotonic() < deadline and (
        tally.requests < plan.min_requests or time.monotonic() < last_swap + SETTLE_S
    ):
        await asyncio.sleep(0.05)
    stop.set()
    await asyncio.gather(*clients)
    return {
        "requests": tally.requests,
        "failed": tally.errors,
        "failures": dict(tally.reasons),
        "swaps": plan.swaps - len(swap_errors),
        "swap_errors": swap_errors[:3],
        "versions_served": len(versions),
        "seconds": round(time.monotonic() - started, 2),
    }


def run(plan: Plan) -> Measured:
    servers: dict[str, Server] = {}
    for kind in ("kit", "naive"):
        pipelines = plan.workdir / f"availability-{kind}"
        pipelines.mkdir()
        write_pipeline(pipelines, STEADY, trivial("steady"))
        write_pipeline(pipelines, SWAPPED, trivial("w0"))
        servers[kind] = Server(kind, pipelines, plan.workdir, label=f"{kind}-availability")
    kit, naive = servers["kit"], servers["naive"]

    def swap_file(index: int) -> None:
        replace_wrapper(kit.pipelines, SWAPPED, trivial(f"w{index}"))

    def swap_http(index: int) -> None:
        files = {"pipeline_wrapper.py": trivial(f"w{index}")}
        response = httpx.post(
            f"{naive.url}/deploy_files", json={"name": SWAPPED, "files": files, "overwrite": True}, timeout=60
        )
        if response.status_code >= 300:
            raise RuntimeError(f"POST /deploy_files answered {response.status_code}: {response.text[:200]}")

    try:
        start_all(list(servers.values()))
        kit_result = asyncio.run(storm(kit, swap_file, plan))
        kit.stop()
        naive_result = asyncio.run(storm(naive, swap_http, plan))
    finally:
        for server in servers.values():
            server.stop()
    keys = {"failed_during_reload": kit_result["failed"], "baseline_failed_during_reload": naive_result["failed"]}
    notes = []
    if naive_result["swap_errors"]:
        notes.append(f"baseline redeploys that failed: {naive_result['swap_errors'][0]}")
    return Measured(keys, {"kit": kit_result, "baseline_naive": naive_result}, notes)


SCENARIO = Scenario(
    "availability",
    "Availability while one of 2 pipelines is replaced repeatedly",
    ("failed_during_reload", "baseline_failed_during_reload"),
    run,
)
