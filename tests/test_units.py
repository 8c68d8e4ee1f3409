"""Fast checks of the pure logic: directory scan rules, filesystem detection, compat check, CLI mapping."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from hayhooks_gunicorn import cli, compat
from hayhooks_gunicorn.errors import UnsupportedHayhooksError
from hayhooks_gunicorn.reload.scan import fingerprint, scan
from hayhooks_gunicorn.reload.watcher import filesystem_type, use_polling
from hayhooks_gunicorn.settings import WatchMode


def make(path: Path, files: dict[str, str]) -> None:
    for rel, content in files.items():
        (path / rel).parent.mkdir(parents=True, exist_ok=True)
        (path / rel).write_text(content)


def test_scan_finds_wrappers_and_yaml_and_ignores_the_rest(tmp_path: Path) -> None:
    make(
        tmp_path,
        {
            "a/pipeline_wrapper.py": "x = 1",
            "a/notes.txt": "beside",
            "b.yml": "components: {}",
            "c.yaml": "components: {}",
            ".hidden/pipeline_wrapper.py": "",
            "__pycache__/x.pyc": "",
            "README.md": "not a pipeline",
            "empty/readme.txt": "no wrapper",
        },
    )
    sources = scan(tmp_path)
    assert sorted(sources) == ["a", "b", "c", "empty"]
    assert sources["a"].kind == "files" and sources["b"].kind == "yaml"
    assert sources["empty"].error == "Pipeline directory 'empty' has no pipeline_wrapper.py"
    assert sources["a"].error is None


def test_fingerprint_follows_content_not_mtime_and_skips_editor_files(tmp_path: Path) -> None:
    make(tmp_path, {"p/pipeline_wrapper.py": "x = 1", "p/data.txt": "d"})
    before = fingerprint(tmp_path / "p")
    os.utime(tmp_path / "p" / "data.txt", (1, 1))
    make(tmp_path, {"p/.pipeline_wrapper.py.swp": "junk", "p/data.txt~": "junk", "p/__pycache__/a.pyc": "junk"})
    assert fingerprint(tmp_path / "p") == before
    make(tmp_path, {"p/data.txt": "e"})
    assert fingerprint(tmp_path / "p") != before


def test_refused_names_carry_their_reason(tmp_path: Path) -> None:
    make(
        tmp_path,
        {"json/pipeline_wrapper.py": "", "a b/pipeline_wrapper.py": "", "dup.yml": "", "dup/pipeline_wrapper.py": ""},
    )
    sources = scan(tmp_path)
    assert "shadows the importable Python module 'json'" in (sources["json"].error or "")
    assert "Invalid pipeline name 'a b'" in (sources["a b"].error or "")
    assert sources["dup"].error is None and sources["dup"].kind == "yaml"
    assert sources["dup"].conflict == "Pipeline 'dup' is defined twice: 'dup.yml' and 'dup/'"
    assert sources["dup"].fallback is not None and sources["dup"].fallback.kind == "files"


def test_unreadable_directory_raises_instead_of_looking_empty(tmp_path: Path) -> None:
    with pytest.raises(OSError):
        scan(tmp_path / "missing")


def test_filesystem_type_picks_the_longest_mount(tmp_path: Path) -> None:
    mounts = tmp_path / "mounts"
    share = tmp_path / "share dir"
    share.mkdir()
    escaped = str(share).replace(" ", "\\040")
    mounts.write_text(f"/dev/sda1 / ext4 rw 0 0\nserver:/x {escaped} nfs4 rw 0 0\n")
    assert filesystem_type(share, mounts) == "nfs4"
    assert filesystem_type(tmp_path, mounts) == "ext4"


def test_polling_is_forced_or_detected(tmp_path: Path) -> None:
    assert use_polling(WatchMode.POLL, tmp_path)
    assert not use_polling(WatchMode.INOTIFY, tmp_path)


def test_compat_check_names_the_supported_range(monkeypatch: pytest.MonkeyPatch) -> None:
    compat.check_hayhooks()  # the installed hayhooks is supported
    monkeypatch.setitem(compat.REQUIRED, "hayhooks.server.app", ("create_app", "_gone_in_a_later_release"))
    with pytest.raises(UnsupportedHayhooksError, match=r"supported: hayhooks>=2.1,<2.2.*_gone_in_a_later_release"):
        compat.check_hayhooks()


def test_run_passes_options_to_gunicorn_and_workers(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    calls: list[tuple[str, list[str], dict[str, str]]] = []
    monkeypatch.setattr(os, "execvpe", lambda file, args, env: calls.append((file, args, env)))
    result = CliRunner().invoke(
        cli.main,
        [
            "run",
            "--port",
            "9000",
            "-w",
            "3",
            "--pipelines-dir",
            str(tmp_path),
            "--deploy-mode",
            "warn",
            "--sync-run",
            "inline",
            "--",
            "--max-requests",
            "100",
        ],
    )
    assert result.exit_code == 0, result.output
    _, args, env = calls[0]
    assert args[args.index("-c") + 1] == "python:hayhooks_gunicorn.gunicorn_conf"
    assert args[args.index("--workers") + 1] == "3"
    assert args[-2:] == ["--max-requests", "100"]
    assert env["HAYHOOKS_PORT"] == "9000"
    assert env["HAYHOOKS_PIPELINES_DIR"] == str(tmp_path)
    assert env["HAYHOOKS_GUNICORN_DEPLOY_MODE"] == "warn"
    assert env["HAYHOOKS_GUNICORN_SYNC_RUN"] == "inline"


def test_the_worker_tag_keeps_the_users_attributes_and_replaces_an_inherited_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from hayhooks_gunicorn.cluster.identity import worker_id
    from hayhooks_gunicorn.worker.otel import tag_worker_resource

    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "team=search,hayhooks_gunicorn.worker=master:1")
    assert tag_worker_resource() == f"team=search,hayhooks_gunicorn.worker={worker_id()}"
    monkeypatch.delenv("OTEL_RESOURCE_ATTRIBUTES")
    assert tag_worker_resource() == f"hayhooks_gunicorn.worker={worker_id()}"


def test_scan_records_where_each_entry_really_is(tmp_path: Path) -> None:
    make(
        tmp_path,
        {"real/a/pipeline_wrapper.py": "x = 1", "real/b.yml": "components: {}", "elsewhere/c/pipeline_wrapper.py": ""},
    )
    (tmp_path / "link").symlink_to(tmp_path / "real")
    (tmp_path / "real" / "c").symlink_to(tmp_path / "elsewhere" / "c")
    sources = scan(tmp_path / "link")
    real = tmp_path.resolve()
    assert {name: s.real_path for name, s in sources.items()} == {
        "a": str(real / "real" / "a"),
        "b": str(real / "real" / "b.yml"),
        "c": str(real / "elsewhere" / "c"),
    }
