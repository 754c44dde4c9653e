"""How the gpu probe chooses its source: NVML, then nvidia-smi, then a clear "no driver"."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pynvml  # type: ignore[import-untyped]
import pytest

from tests.fakes.nvidia_smi import FakeNvidiaSmi
from tests.fakes.nvml import FakeNvml
from tidectl.agents.probes.base import Probe
from tidectl.agents.probes.gpu import GPU_FIELDS, GpuProbe


@pytest.fixture
def empty_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A PATH with nothing on it, so no real nvidia-smi can be found."""
    directory = tmp_path / "bin"
    directory.mkdir()
    monkeypatch.setenv("PATH", str(directory))
    return directory


def test_it_is_a_probe_named_gpu() -> None:
    probe = GpuProbe(nvml=FakeNvml())
    assert isinstance(probe, Probe)
    assert probe.name == "gpu"


def test_no_driver_with_the_real_pynvml(empty_path: Path) -> None:
    # The real bindings on a GPU-less machine: nvmlInit cannot find libnvidia-ml.so.1.
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError_LibraryNotFound:
        pass
    else:
        pynvml.nvmlShutdown()
        pytest.skip("this machine has an NVIDIA driver")
    probe = GpuProbe()
    facts = probe.facts()
    assert list(facts) == ["source", "gpus", "no_driver"]
    assert facts["source"] is None
    assert facts["gpus"] == []
    sentence = facts["no_driver"]
    assert "NVML Shared Library Not Found" in sentence
    assert "'nvidia-smi' is not on PATH" in sentence
    assert "Install the NVIDIA driver" in sentence
    assert probe.sample() == facts
    assert probe.source_name is None
    json.dumps(facts, allow_nan=False)
    probe.close()  # nothing to release, and no error


def test_no_driver_without_pynvml_installed(
    empty_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import pynvml raises ImportError
    section = GpuProbe().sample()
    assert section["source"] is None and section["gpus"] == []
    assert "the pynvml module is not installed" in section["no_driver"]


def test_falls_back_to_nvidia_smi_found_on_path(
    empty_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    FakeNvidiaSmi(empty_path)  # the default name "nvidia-smi", found through PATH
    probe = GpuProbe()  # the real pynvml, which has no library here
    section = probe.sample()
    assert probe.source_name == "nvidia-smi"
    assert section["source"] == "nvidia-smi"
    assert [g["index"] for g in section["gpus"]] == [0, 1]
    assert all(list(g) == list(GPU_FIELDS) for g in section["gpus"])
    assert probe.facts()["source"] == "nvidia-smi"


def test_falls_back_when_the_driver_is_not_loaded(empty_path: Path) -> None:
    smi = FakeNvidiaSmi(empty_path, mode="fail")
    probe = GpuProbe(nvml=FakeNvml(init_error=pynvml.NVML_ERROR_DRIVER_NOT_LOADED))
    section = probe.sample()
    assert probe.source_name == "nvidia-smi"
    # Both failures are named: what nvidia-smi said and why NVML was not used.
    assert "NVIDIA-SMI has failed" in section["error"]
    assert "NVMLError_DriverNotLoaded: Driver Not Loaded" in section["error"]
    assert len(smi.calls()) == 1


def test_nvml_is_preferred_when_both_exist(empty_path: Path) -> None:
    smi = FakeNvidiaSmi(empty_path)
    fake = FakeNvml()
    probe = GpuProbe(nvml=fake)
    assert probe.facts()["source"] == "nvml"
    assert probe.sample()["source"] == "nvml"
    assert smi.calls() == []
    assert fake.count("nvmlInit") == 1  # initialised once, lazily, for facts and samples


def test_nothing_is_loaded_before_the_first_call() -> None:
    fake = FakeNvml()
    probe = GpuProbe(nvml=fake)
    assert fake.calls == []
    probe.sample()
    assert fake.calls[0] == "nvmlInit"


@pytest.mark.parametrize("source", ["nvml", "nvidia-smi"])
def test_both_sources_give_the_documented_shape(source: str, empty_path: Path) -> None:
    FakeNvidiaSmi(empty_path)
    nvml = FakeNvml() if source == "nvml" else FakeNvml(init_error=pynvml.NVML_ERROR_UNKNOWN)
    probe = GpuProbe(nvml=nvml)
    facts, sample = probe.facts(), probe.sample()
    assert list(facts) == ["source", "driver_version", "cuda_version", "gpus"]
    assert list(sample) == ["source", "driver_version", "gpus"]
    assert facts["source"] == sample["source"] == source
    for record in sample["gpus"]:
        assert list(record) == list(GPU_FIELDS)
        assert isinstance(record["field_errors"], dict)
    nvml_only = {"xid", "nvlink"}
    first = sample["gpus"][0]
    for field in GPU_FIELDS:
        if source == "nvidia-smi" and field in nvml_only:
            assert first[field] is None
        elif field not in ("retired_pages_sbe", "retired_pages_dbe", "retired_pages_pending"):
            assert first[field] is not None, field  # an H100 has all of these
    json.dumps([facts, sample], allow_nan=False)
