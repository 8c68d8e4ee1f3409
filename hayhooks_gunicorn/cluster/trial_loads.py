"""``HAYHOOKS_GUNICORN_TRIAL_LOADS``: a changed revision is loaded first where a crash costs nothing that serves.

Without it, a revision that kills the process loading it (the OOM killer's SIGKILL, a segfault, ``os._exit``) kills
each serving worker once before it is quarantined (``cluster.quarantine``), and the calls those workers were
answering fail. With it, a serving worker that sees a changed revision first has it loaded once per host in a
separate process, the kit's pre-flight check (``deploys.preflight``), and loads it itself only if that process
survived. A trial that died quarantines the revision with the cause, for every worker of the host, and no serving
worker dies. One worker runs the trial while the others wait for its verdict (an ``flock`` per revision in the
state directory); the verdict is kept there, so the other workers and later ones do not load it again.

It costs a second load of each changed revision: the reload takes the trial's time longer, and while the trial runs
the host holds one more copy of the pipeline (``benchmarks/``, the ``reload`` scenario). So it is off by default.
A worker's boot loads are not tried first: a worker that is not serving yet loses nothing when it dies, and the
master quarantines what killed it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import socket
from dataclasses import dataclass
from pathlib import Path

from hayhooks_gunicorn.cluster.quarantine import STOP_SIGNALS, Quarantine, key
from hayhooks_gunicorn.cluster.state_files import ensure_state_dir
from hayhooks_gunicorn.deploys.preflight import check_in_subprocess
from hayhooks_gunicorn.files import write_atomically
from hayhooks_gunicorn.reload.scan import PipelineSource


def trial_cause(exit_code: int | None) -> str | None:
    """What the trial process's end says about the revision; ``None`` when it survived or was stopped on purpose."""
    if exit_code is None or exit_code == 0:
        return None
    if exit_code > 0:
        return f"ended the process of its trial load (exit code {exit_code})"
    if -exit_code in STOP_SIGNALS:
        return None
    try:
        name = signal.Signals(-exit_code).name
    except ValueError:
        name = f"signal {-exit_code}"
    return f"killed the process of its trial load ({name})"


@dataclass(frozen=True)
class TrialLoads:
    quarantine: Quarantine
    pipelines_dir: Path
    timeout: float

    @property
    def verdicts(self) -> Path:
        return self.quarantine.directory / "trials"  # removed by the master at exit (``Quarantine.tidy``)

    def refusal(self, source: PipelineSource) -> str | None:
        """Why this worker must not load *source*: its revision killed a trial (now or before), else ``None``."""
        if (cause := self.quarantine.cause(source.name, source.revision)) is not None:
            return f"quarantined: rev {source.revision} {cause}"
        name = key(source.name, source.revision)
        try:
            ensure_state_dir(self.quarantine.directory)
            self.verdicts.mkdir(mode=0o700, exist_ok=True)
            lock = open(self.verdicts / f"{name}.lock", "a")  # noqa: SIM115 (held across the trial below)
        except OSError:
            return None  # no trial without a state directory: the worker's own load is still marked
        with lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # one trial per revision and host; the other workers wait for it here
            if (cause := self.quarantine.cause(source.name, source.revision)) is not None:
                return f"quarantined: rev {source.revision} {cause}"
            survived = self.verdicts / f"{name}.survived"
            if survived.exists():
                return None
            result = check_in_subprocess(source, self.pipelines_dir, self.timeout, server_routes=False)
            if (cause := trial_cause(result.exit_code)) is not None:
                self.quarantine.record(source.name, source.revision, cause, socket.gethostname(), os.getpid())
                return f"quarantined: rev {source.revision} {cause}"
            # A load that failed with an exception, or ran past the deadline, did not kill its process: the worker
            # loads it and reports that failure itself.
            with contextlib.suppress(OSError):
                write_atomically(survived, source.revision)
        return None
