"""What the systemd unit must hold for production: one worker killed for memory does not stop the service, enough file
descriptors, memory guidance, and a sysusers.d file that really creates the user the unit runs as."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
from conftest import require_tool

from hayhooks_gunicorn.cli.systemd_units import UnitOptions, for_this_install, render

REPO = Path(__file__).resolve().parent.parent


def service_settings(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if re.match(r"^[A-Z]\w*=", line))


def test_one_worker_killed_for_memory_does_not_stop_the_service() -> None:
    settings = service_settings(render(UnitOptions())["hayhooks.service"])
    # systemd's default OOMPolicy=stop stops the unit when the kernel kills any of its processes for memory.
    assert settings["OOMPolicy"] == "continue"
    assert int(settings["LimitNOFILE"]) >= 65536
    # Memory limits are the host's to choose: guidance, not a value that would kill workers of a bigger host.
    service = render(UnitOptions())["hayhooks.service"]
    assert "MemoryMax" not in settings and re.search(r"^#MemoryHigh=\d+G$", service, re.M)
    assert re.search(r"^#MemoryMax=\d+G$", service, re.M)


def test_local_redis_ordering_is_documented_where_durable_mode_is_set_up() -> None:
    units = render(UnitOptions())
    assert "#   After=redis-server.service" in units["hayhooks.service"]
    assert "After=redis-server.service" in units["hayhooks-durable.env.example"]
    assert "noeviction" in units["hayhooks-durable.env.example"]


@pytest.mark.parametrize("options", [UnitOptions(), UnitOptions(name="rag", user="rag-svc", group="ml")], ids=str)
def test_sysusers_file_creates_the_user_and_group_the_unit_runs_as(options: UnitOptions, tmp_path: Path) -> None:
    sysusers = require_tool("systemd-sysusers", "systemd")
    units = render(options)
    settings = service_settings(units[f"{options.name}.service"])
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    conf = units[f"{options.name}-sysusers.conf"]
    result = subprocess.run([sysusers, f"--root={root}", "-"], input=conf, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    users = {line.split(":")[0]: line.split(":") for line in (root / "etc" / "passwd").read_text().splitlines()}
    groups = {line.split(":")[0]: line.split(":") for line in (root / "etc" / "group").read_text().splitlines()}
    user = users[settings["User"]]
    assert user[3] == groups[settings["Group"]][2]  # the user's primary group is the unit's Group=
    assert user[5] == options.working_dir and user[6] == "/usr/sbin/nologin"


def test_sysusers_file_is_rendered_for_this_install_too() -> None:
    options = for_this_install(user="root")
    assert f"u root -:{options.group} " in render(options)["hayhooks-sysusers.conf"]
