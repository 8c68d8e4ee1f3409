"""systemd units for one install: the templates shipped in ``templates/``, filled with this install's paths.

``deploy/systemd/`` holds the same templates rendered with :class:`UnitOptions`' defaults (a test keeps them equal).
"""

from __future__ import annotations

import dataclasses
import getpass
import grp
import os
import pwd
import re
import sys
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

from hayhooks_gunicorn.errors import KitError
from hayhooks_gunicorn.settings import pipelines_dir

TEMPLATES = (
    "hayhooks.service",
    "hayhooks.socket",
    "hayhooks.env.example",
    "hayhooks-durable.env.example",
    "hayhooks-sysusers.conf",
)
_PLACEHOLDER = re.compile(r"\{\{(\w+)\}\}")
_HOME_PREFIXES = ("/home", "/root", "/run/user")


@dataclass(frozen=True)
class UnitOptions:
    """Defaults describe a typical install; ``for_this_install()`` fills in the running one."""

    name: str = "hayhooks"
    user: str = "hayhooks"
    group: str = "hayhooks"
    bin_dir: str = "/opt/hayhooks/venv/bin"  # holds gunicorn and hayhooks-gunicorn
    working_dir: str = "/var/lib/hayhooks"
    pipelines_dir: str = "/var/lib/hayhooks/pipelines"
    env_file: str = "/etc/hayhooks/hayhooks.env"
    host: str = "127.0.0.1"
    port: int = 1416
    graceful_timeout: int = 30
    start_timeout: int = 900  # first load, and a whole rolling restart (ExecReload runs under TimeoutStartSec)

    @property
    def stop_timeout(self) -> int:
        """Above gunicorn's graceful_timeout, so the master's own shutdown finishes before systemd's SIGKILL."""
        return self.graceful_timeout + 15

    @property
    def listen(self) -> str:
        host = "127.0.0.1" if self.host == "localhost" else self.host
        return f"[{host}]:{self.port}" if ":" in host else f"{host}:{self.port}"

    @property
    def protect_home(self) -> str:
        """``yes`` hides /home, /root and /run/user; an install living there gets them read-only instead."""
        paths = (self.bin_dir, self.working_dir, self.pipelines_dir, self.env_file)
        inside = any(p == h or p.startswith(h + "/") for p in paths for h in _HOME_PREFIXES)
        return "read-only" if inside else "yes"

    def values(self) -> dict[str, str]:
        names = [f.name for f in dataclasses.fields(self)] + ["stop_timeout", "listen", "protect_home"]
        return {n: str(getattr(self, n)) for n in names}


def for_this_install(user: str | None = None, group: str | None = None, **overrides: str | int | None) -> UnitOptions:
    """The running interpreter's environment, user and working directory, and hayhooks' current settings."""
    from hayhooks.settings import settings as hayhooks

    user = user or getpass.getuser()
    if not group:
        try:
            group = grp.getgrgid(pwd.getpwnam(user).pw_gid).gr_name
        except KeyError:
            group = user
    pipelines = pipelines_dir()
    options = UnitOptions(
        user=user,
        group=group,
        # The interpreter's own directory, not its resolved target: that is where the virtualenv's scripts live.
        bin_dir=str(Path(sys.executable).absolute().parent),
        working_dir=os.getcwd(),
        pipelines_dir=str(pipelines),
        host=hayhooks.host,
        port=hayhooks.port,
        graceful_timeout=hayhooks.graceful_shutdown_timeout,
    )
    return dataclasses.replace(options, **{k: v for k, v in overrides.items() if v is not None})  # type: ignore[arg-type]


def render(options: UnitOptions) -> dict[str, str]:
    """File name -> content, named after ``options.name`` (``hayhooks.service`` -> ``<name>.service``)."""
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", options.name):
        raise KitError(f"Invalid unit name {options.name!r}: use letters, digits, '_', '.' and '-'")
    relative = [
        p for p in (options.bin_dir, options.working_dir, options.pipelines_dir, options.env_file) if p[:1] != "/"
    ]
    if relative:
        raise KitError(f"systemd needs absolute paths: {', '.join(relative)}")
    values = options.values()
    rendered = {}
    for template in TEMPLATES:
        text = files("hayhooks_gunicorn.cli").joinpath("templates", template).read_text()
        unknown = sorted(set(_PLACEHOLDER.findall(text)) - set(values))
        if unknown:
            raise KitError(f"Unknown placeholders {unknown} in template {template}")
        rendered[template.replace("hayhooks", options.name, 1)] = _PLACEHOLDER.sub(lambda m: values[m.group(1)], text)
    return rendered


def write(options: UnitOptions, directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in render(options).items():
        path = directory / name
        path.write_text(text)
        written.append(path)
    return written
