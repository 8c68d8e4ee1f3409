"""Per-instance control socket and ready markers, readiness counting, the restart command's errors."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from types import SimpleNamespace

import pytest
from click.testing import CliRunner

from hayhooks_gunicorn.cli import main
from hayhooks_gunicorn.errors import KitError
from hayhooks_gunicorn.master import instance, readiness
from hayhooks_gunicorn.worker.health import _stuck


def test_each_bind_address_gets_its_own_socket(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    base = tmp_path / f"hayhooks-gunicorn-{os.getuid()}"
    assert instance.default_socket("127.0.0.1:8000") == base / "127.0.0.1-8000.ctl"
    assert instance.default_socket("[::1]:8000") == base / "1-8000.ctl"
    assert instance.default_socket("unix:/run/app.sock") == base / "run-app.sock.ctl"
    monkeypatch.delenv("XDG_RUNTIME_DIR")
    assert instance.default_socket("0.0.0.0:1416").parent.parent == Path(tempfile.gettempdir())


def test_markers_round_trip_and_cleanup(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    current = instance.for_socket(None, "127.0.0.1:8000")
    assert current.derived
    current.prepare()
    (current.ready_dir / "999").write_text("{}")  # left by a crashed predecessor
    current.prepare()
    assert current.ready_pids() == set()
    current.mark_ready(12)
    current.mark_ready(34)
    assert current.ready_pids() == {12, 34}
    current.forget(12)
    assert current.ready_pids() == {34}
    current.remove()
    assert not current.control_socket.parent.exists()

    explicit = instance.for_socket(tmp_path / "run" / "gunicorn.ctl", "ignored")
    assert not explicit.derived and explicit.ready_dir == tmp_path / "run" / "gunicorn.ctl.ready"
    explicit.prepare()
    explicit.remove()
    assert (tmp_path / "run").is_dir()  # a directory the operator chose stays


def test_a_shared_runtime_dir_must_be_private(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    planted = tmp_path / f"hayhooks-gunicorn-{os.getuid()}"
    planted.mkdir(mode=0o777)
    planted.chmod(0o777)
    with pytest.raises(KitError, match="mode 0700"):
        instance.for_socket(None, "127.0.0.1:8000").prepare()


def test_ready_only_when_every_live_worker_has_a_marker(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    current = instance.for_socket(tmp_path / "gunicorn.ctl", "")
    current.prepare()
    arbiter = SimpleNamespace(WORKERS={10: object(), 11: object()}, num_workers=2)
    current.mark_ready(10)
    assert readiness.all_workers_ready(arbiter, current) == 0
    current.mark_ready(99)  # not a worker of this master
    assert readiness.all_workers_ready(arbiter, current) == 0
    current.mark_ready(11)
    assert readiness.all_workers_ready(arbiter, current) == 2


def test_sd_notify_is_a_no_op_without_systemd(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    monkeypatch.setattr(readiness, "_notify_socket", None)
    readiness.take_notify_socket()
    assert readiness.sd_notify("READY=1") is False


def test_restart_without_a_server_says_so(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["restart", "--control-socket", str(tmp_path / "none.ctl")])
    assert result.exit_code == 1
    assert f"No control socket at {tmp_path / 'none.ctl'}" in result.output


def test_readyz_counts_a_change_behind_only_after_the_grace(monkeypatch: pytest.MonkeyPatch) -> None:
    app = SimpleNamespace(waiting_since={})
    clock = iter([100.0, 105.0, 131.0, 132.0])
    monkeypatch.setattr("hayhooks_gunicorn.worker.health.time.monotonic", lambda: next(clock))
    assert _stuck(app, ["a"], grace=30) == []
    assert _stuck(app, ["a", "b"], grace=30) == []
    assert _stuck(app, ["a", "b"], grace=30) == ["a"]
    assert _stuck(app, ["b"], grace=30) == []  # a was loaded; b has waited 27 s
