"""Deploy convergence: ``POST /deploy_files`` with overwrite, until every worker serves the new version.

Written against the HTTP API only: the clock starts before the POST and stops when the last worker (each asked
over its own connection, found by ``X-Hayhooks-Worker``) answers with the new version.
"""

from __future__ import annotations

import time

import httpx

from benchmarks.pipelines import trivial, write_pipeline
from benchmarks.plan import Plan
from benchmarks.probe import ProbeError, WorkerPins
from benchmarks.scenarios import Measured, Scenario, Unavailable
from benchmarks.servers import Server, start_all
from benchmarks.stats import percentile, rounded

NAME = "deployed"
TIMEOUT_S = 30.0


def run(plan: Plan) -> Measured:
    pipelines = plan.workdir / "convergence"
    pipelines.mkdir()
    write_pipeline(pipelines, NAME, trivial("d0"))
    server = Server("kit", pipelines, plan.workdir, label="kit-deploy")
    converged: list[float] = []
    answered: list[float] = []
    statuses: dict[int, int] = {}
    try:
        start_all([server])
        pins = WorkerPins(server.url, server.workers)
        pins.pin()
        with httpx.Client(timeout=TIMEOUT_S + 30) as client:
            for index in range(1, plan.deploys + 1):
                version = f"d{index}"
                body = {"name": NAME, "files": {"pipeline_wrapper.py": trivial(version)}, "overwrite": True}
                started = time.monotonic()
                response = client.post(f"{server.url}/deploy_files", json=body)
                answered.append(time.monotonic() - started)
                statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
                if response.status_code >= 300:
                    msg = f"POST /deploy_files answered {response.status_code}: {response.text[:300]}"
                    raise Unavailable(msg)
                try:
                    done = pins.wait_version(f"/{NAME}/run", version, timeout=TIMEOUT_S, started=started)
                except ProbeError as e:
                    raise Unavailable(f"deploy {index} did not reach every worker: {e}") from e
                converged.append(max(done.values()))
        pins.close()
    finally:
        server.stop()
    keys = {"deploy_converged_p50_s": rounded(percentile(converged, 50))}
    details = {
        "deploys": len(converged),
        "converged_p99_s": rounded(percentile(converged, 99)),
        "post_answered_p50_s": rounded(percentile(answered, 50)),
        "statuses": statuses,
        "samples_s": [round(x, 3) for x in converged],
    }
    return Measured(keys, details)


SCENARIO = Scenario(
    "convergence",
    "Deploy convergence: POST /deploy_files -> every worker serves it",
    ("deploy_converged_p50_s",),
    run,
)
