"""Folding dead workers' prometheus_client files: what a scrape reports is unchanged, the directory shrinks."""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import GUNICORN, REPO
from prometheus_client.mmap_dict import MmapedDict, mmap_key
from prometheus_client.multiprocess import MultiProcessCollector

from hayhooks_gunicorn.metrics import multiproc_dir as metrics_dir


def write(path: Path, prefix: str, pid: object, metric: str, sample: str, value: float, ts: float = 0.0) -> None:
    db = MmapedDict(str(path / f"{prefix}_{pid}.db"))
    try:
        db.write_value(mmap_key(metric, sample, ["pipeline"], ["echo"], "help"), value, ts)
    finally:
        db.close()


def exposed(path: Path) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """What a scrape reports, without the pid label of per-process gauges."""
    merged = MultiProcessCollector.merge([str(p) for p in path.glob("*.db")], accumulate=True)
    return {
        (s.name, tuple(sorted((k, v) for k, v in s.labels.items() if k != "pid"))): s.value
        for metric in merged
        for s in metric.samples
    }


def test_folding_keeps_every_value_a_scrape_reports(tmp_path: Path) -> None:
    for pid, n in ((101, 3.0), (102, 4.0), (103, 5.0)):
        write(tmp_path, "counter", pid, "calls", "calls_total", n)
        write(tmp_path, "histogram", pid, "lat", "lat_sum", n / 10)
        write(tmp_path, "gauge_max", pid, "peak", "peak", n)
        write(tmp_path, "gauge_min", pid, "low", "low", n)
        write(tmp_path, "gauge_mostrecent", pid, "last", "last", n, ts=1000 - n)
    before = exposed(tmp_path)

    for pid in (101, 102):
        metrics_dir.fold(pid, tmp_path)
    after = exposed(tmp_path)

    assert after == before
    assert after[("calls_total", (("pipeline", "echo"),))] == 12.0
    assert after[("peak", (("pipeline", "echo"),))] == 5.0
    assert after[("low", (("pipeline", "echo"),))] == 3.0
    assert after[("last", (("pipeline", "echo"),))] == 3.0  # newest timestamp wins
    types = ("counter", "histogram", "gauge_max", "gauge_min", "gauge_mostrecent")
    left = sorted(f"{t}_{s}.db" for t in types for s in (103, "archive"))
    assert sorted(p.name for p in tmp_path.iterdir()) == left


def test_retire_drops_live_gauges_and_empty_files_and_waits_for_scrapes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(metrics_dir, "LOCK_WAIT", 0.05)
    write(tmp_path, "counter", 7, "calls", "calls_total", 2.0)
    write(tmp_path, "gauge_livesum", 7, "workers", "workers", 1.0)
    # A worker killed between creating its file and sizing it (MmapedDict.__init__) leaves it empty.
    (tmp_path / "histogram_7.db").touch()

    with metrics_dir.scrape_lock(tmp_path):
        assert metrics_dir.retire(7, tmp_path) is False
        assert (tmp_path / "counter_7.db").exists()
    assert metrics_dir.retire(8, tmp_path) is True  # folds the pid left over as well

    assert sorted(p.name for p in tmp_path.glob("*.db")) == ["counter_archive.db"]
    assert exposed(tmp_path) == {("calls_total", (("pipeline", "echo"),)): 2.0}


def test_prepare_gives_each_master_its_own_directory_and_removes_orphans(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(metrics_dir.ENV, "/inherited/from/another/master")
    monkeypatch.setattr(metrics_dir, "ORPHAN_MIN_AGE", 0.0)
    orphan = tmp_path / f"{metrics_dir.PREFIX}orphan"
    orphan.mkdir()
    (orphan / "counter_1.db").touch()
    alive = tmp_path / f"{metrics_dir.PREFIX}alive"
    alive.mkdir()
    holder = os.open(alive / metrics_dir.OWNER_LOCK, os.O_CREAT | os.O_RDWR)
    fcntl.flock(holder, fcntl.LOCK_SH)
    try:
        path = metrics_dir.prepare(tmp_path)
        try:
            assert os.environ[metrics_dir.ENV] == str(path)
            assert path.parent == tmp_path and not list(path.glob("*.db"))
            assert metrics_dir.prepare(tmp_path) == path  # a configuration reload keeps it
            assert not orphan.exists() and alive.exists()
        finally:
            metrics_dir.remove()
        assert not path.exists() and metrics_dir.ENV not in os.environ
    finally:
        os.close(holder)


PREPARE_THEN_FORK = """
import os, sys
from pathlib import Path
from hayhooks_gunicorn.metrics import multiproc_dir
path = multiproc_dir.prepare(Path(sys.argv[1]))
child = os.fork()
if child == 0:
    sys.exit(0)  # a worker's exit runs the handlers it inherited: it must leave the master's directory alone
os.waitpid(child, 0)
print(path.is_dir())
sys.exit(1)  # the master ends before any on_exit (gunicorn --check-config, a configuration error)
"""


def test_a_process_that_ends_without_on_exit_takes_its_directory_with_it(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-c", PREPARE_THEN_FORK, str(tmp_path)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 1, result.stderr
    assert result.stdout.strip() == "True"  # still there after the child's exit
    assert not list(tmp_path.glob(f"{metrics_dir.PREFIX}*"))


PREPARE_THEN_DAEMONIZE = """
import os, sys
from pathlib import Path
from hayhooks_gunicorn.metrics import multiproc_dir
path = multiproc_dir.prepare(Path(sys.argv[1]))
if os.fork():
    os._exit(0)  # gunicorn --daemon: the first process leaves at once
multiproc_dir.adopt()  # on_starting, in the daemon
print(path.is_dir(), flush=True)
sys.exit(1)  # which fails before on_exit
"""


def test_a_daemonized_master_removes_its_directory_at_exit(tmp_path: Path) -> None:
    command = [sys.executable, "-c", PREPARE_THEN_DAEMONIZE, str(tmp_path)]
    # The output pipe stays open until the daemon exits, so run() returns once it has.
    result = subprocess.run(command, capture_output=True, text=True, timeout=60, check=True)
    assert result.stdout.strip() == "True"  # the daemon had the directory
    assert not list(tmp_path.glob(f"{metrics_dir.PREFIX}*"))


@pytest.mark.integration
def test_gunicorn_check_config_leaves_no_metrics_directory(tmp_path: Path) -> None:
    env = {**os.environ, "HAYHOOKS_GUNICORN_METRICS_DIR": str(tmp_path), "HAYHOOKS_PIPELINES_DIR": str(tmp_path)}
    command = [*GUNICORN, "-c", str(REPO / "gunicorn.conf.py"), "--check-config"]
    result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert not list(tmp_path.glob(f"{metrics_dir.PREFIX}*"))
