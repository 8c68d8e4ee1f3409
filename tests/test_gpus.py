"""GPU placement decided on plain data, and the GPU listing from a stand-in ``nvidia-smi`` and driver directory."""

from __future__ import annotations

from pathlib import Path

import pytest

from hayhooks_gunicorn.errors import KitError
from hayhooks_gunicorn.master.gpus import Gpu, Placement, decide, list_gpus

TWO = [Gpu("0", "GPU-aaaa"), Gpu("1", "GPU-bbbb")]


def test_unset_places_nothing() -> None:
    assert decide(None, {"CUDA_VISIBLE_DEVICES": "7"}, TWO) == (Placement(), None)
    assert decide("", {}, None) == (Placement(), None)


def test_a_list_is_round_robin_over_the_slots() -> None:
    placement, note = decide("0,1", {}, TWO)
    assert note is None
    assert [placement.device_for(slot) for slot in range(4)] == ["0", "1", "0", "1"]
    placement, _ = decide("GPU-bbbb", {}, TWO)
    assert placement.device_for(3) == "GPU-bbbb"


def test_a_list_naming_a_gpu_the_machine_lacks_is_refused_in_one_sentence() -> None:
    with pytest.raises(
        KitError, match=r"names GPU\(s\) 2, GPU-cccc, which this machine does not have \(it has: 0, 1\)"
    ):
        decide("0,2,GPU-cccc", {}, TWO)


def test_a_list_that_cannot_be_checked_is_used_with_a_warning() -> None:
    placement, note = decide("0,1", {}, None)
    assert placement.devices == ("0", "1")
    assert note is not None and note.warning and "is not checked" in note.text


def test_auto_places_by_uuid_within_the_operators_choice_or_not_at_all() -> None:
    placement, _ = decide("auto", {}, TWO)
    assert placement.devices == ("GPU-aaaa", "GPU-bbbb")
    placement, _ = decide("auto", {"CUDA_VISIBLE_DEVICES": "2,3"}, None)
    assert placement.devices == ("2", "3")
    placement, note = decide("auto", {}, [])
    assert placement == Placement() and note is not None
    assert note.text == "HAYHOOKS_GUNICORN_GPUS=auto found no GPU; workers are not placed on devices"


def test_listing_reads_nvidia_smi(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    smi = tmp_path / "nvidia-smi"
    smi.write_text(
        "#!/bin/sh\n"
        "echo 'GPU 0: NVIDIA A100-SXM4-40GB (UUID: GPU-1b2c3d4e-0000-1111-2222-333344445555)'\n"
        "echo '  MIG 1g.5gb     Device  0: (UUID: MIG-aaaaaaaa-0000-1111-2222-333344445555)'\n"
        "echo 'GPU 1: NVIDIA A100-SXM4-40GB (UUID: GPU-9f8e7d6c-0000-1111-2222-333344445555)'\n"
    )
    smi.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    assert list_gpus(tmp_path / "no-proc") == [
        Gpu("0", "GPU-1b2c3d4e-0000-1111-2222-333344445555"),
        Gpu("1", "GPU-9f8e7d6c-0000-1111-2222-333344445555"),
    ]


def test_listing_falls_back_to_the_driver_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    proc = tmp_path / "gpus"
    (proc / "0000:3b:00.0").mkdir(parents=True)
    (proc / "0000:3b:00.0" / "information").write_text("Model: \t NVIDIA T4\nGPU UUID: \t GPU-t4t4\n")
    (proc / "0000:af:00.0").mkdir()
    assert list_gpus(proc) == [Gpu("0", "GPU-t4t4"), Gpu("1", "")]
    assert list_gpus(tmp_path / "no-driver") is None


def test_the_gpu_benchmark_skips_saying_why_where_there_is_no_gpu(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from benchmarks.scenarios import Unavailable
    from benchmarks.scenarios.gpus import gpu_count

    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(Unavailable, match=r"no GPU here \(nvidia-smi not found\)"):
        gpu_count()
