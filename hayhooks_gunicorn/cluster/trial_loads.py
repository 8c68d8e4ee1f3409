"""``HAYHOOKS_GUNICORN_TRIAL_LOADS``: a changed revision is loaded first where a crash costs nothing that serves.

Without it, a revision that kills the process loading it (the OOM killer's SIGKILL, a segfault, ``os._exit``) kills
each serving worker once before it is quarantined (``cluster.quarantine``), and the calls those workers were
answering fail. With it, a serving worker that sees a changed revision first has it loaded once per server in a
separate process, the kit's pre-flight check (``deploys.preflight``), and loads it itself only if that process
survived. A trial that died while the pipeline's code ran (``preflight.LOADING_MARK``; a death before that is the
check's own, not a verdict) quarantines the revision with the cause, for every worker of the host, and no serving
worker dies. The checking process asks the kernel to kill it first when memory runs out, before a serving worker.
One worker of a master runs the trial while the others wait for its verdict (an ``flock`` per revision under
``trials/<host>-<master pid>/`` in the state directory), which is kept there for them and for later workers.

It costs a second load of each changed revision: the reload takes the trial's time longer, and while the trial runs
the host holds one more copy of the pipeline (``benchmarks/``, the ``trial_loads`` scenario). So it is off by
default. Anything that goes wrong with the trial itself (the state directory, the lock, the check) is logged and the
worker loads as it would without trials.
A worker's boot loads are not tried first: a worker that is not serving yet loses nothing when it dies, and the
master quarantines what killed it.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field
from pathlib import Path

from hayhooks.server.logger import log

from hayhooks_gunicorn.cluster.quarantine import Quarantine, death_cause, key, refusal
from hayhooks_gunicorn.cluster.state_files import ensure_state_dir
from hayhooks_gunicorn.deploys.preflight import check_in_subprocess
from hayhooks_gunicorn.files import try_flock, write_atomically
from hayhooks_gunicorn.polling import poll_until
from hayhooks_gunicorn.reload.scan import PipelineSource, fingerprint

# How long a worker waits for another one's trial beyond the load timeout, before it loads without a verdict
LOCK_GRACE = 30.0


def trial_cause(exit_code: int | None) -> str | None:
    """What the end of a trial that died while the pipeline's code ran says, exit 0 included (it had not reported);
    ``None``: no verdict (it reported, or it was stopped from outside: the server stopping sends the same signals)."""
    if exit_code is None:
        return None
    return death_cause(exit_code, "the process of its trial load", clean_exit_counts=True)


@dataclass(frozen=True)
class TrialLoads:
    quarantine: Quarantine
    pipelines_dir: Path
    timeout: float
    master_pid: int = field(default_factory=os.getppid)  # whose verdicts these are (a worker's parent)

    def refusal(self, source: PipelineSource) -> str | None:
        """Why this worker must not load *source*: its revision killed a trial (now or before), else ``None``."""
        if (cause := self.quarantine.cause(source.name, source.revision)) is not None:
            return refusal(source.revision, cause)
        try:
            return self._trial(source)
        except Exception as e:  # the trial is a precaution: without it the worker loads as it always did
            log.warning("Worker {}: no trial load of '{}' (rev {}): {}", os.getpid(), source.name, source.revision, e)
            return None

    def _trial(self, source: PipelineSource) -> str | None:
        if source.fallback is not None:
            return None  # a name defined twice: its revision covers both entries, and the load picks one (scan)
        ensure_state_dir(self.quarantine.directory)
        verdicts = self.quarantine.verdicts(self.master_pid)
        verdicts.mkdir(mode=0o700, parents=True, exist_ok=True)
        name = key(source.name, source.revision)
        with open(verdicts / f"{name}.lock", "a") as lock:
            # Polled, so a lock held for ever (a fork of its holder keeps it) is given up on.
            try:
                poll_until(lambda: try_flock(lock.fileno()), self.timeout + LOCK_GRACE, interval=0.1)
            except TimeoutError:
                raise TimeoutError("another worker's trial of it did not end in time") from None
            if (cause := self.quarantine.cause(source.name, source.revision)) is not None:
                return refusal(source.revision, cause)
            survived = verdicts / f"{name}.survived"
            if survived.exists():
                return None
            result = check_in_subprocess(source, self.pipelines_dir, self.timeout, server_routes=False)
            if (cause := trial_cause(result.exit_code)) is not None:
                if fingerprint(source.path) != source.revision:
                    return None  # the files changed meanwhile: the next pass tries what is there now
                self.quarantine.record(source.name, source.revision, cause, socket.gethostname(), os.getpid())
                return refusal(source.revision, cause)
            if result.exit_code is None and result.revision == source.revision:
                # It reported (a load that raised is the worker's to report), or ran past the deadline, or died
                # before the pipeline's code ran: this revision does not kill the process loading it.
                write_atomically(survived, source.revision)
        return None
