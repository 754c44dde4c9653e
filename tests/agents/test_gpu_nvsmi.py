"""The gpu probe over nvidia-smi, against a fake nvidia-smi executable printing real CSV."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pynvml  # type: ignore[import-untyped]
import pytest

from tests.fakes.nvidia_smi import DRIVER_NOT_LOADED, FakeNvidiaSmi, h100
from tests.fakes.nvml import FakeNvml
from tidectl.agents.probes.gpu import FACT_FIELDS, GPU_FIELDS, READING_FIELDS, GpuProbe
from tidectl.agents.probes.nvsmi import parse_value

MIB = 1024 * 1024


class Clock:
    def __init__(self, now: float = 1764363000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def make(smi: FakeNvidiaSmi, clock: Clock | None = None, timeout_s: float = 5.0) -> GpuProbe:
    # NVML is there but has no library, as on a node where only nvidia-smi works.
    nvml = FakeNvml(init_error=pynvml.NVML_ERROR_LIBRARY_NOT_FOUND)
    return GpuProbe(
        nvml=nvml, nvidia_smi=str(smi.path), timeout_s=timeout_s, clock=clock or Clock()
    )


def gpu(section: dict[str, Any], index: int) -> dict[str, Any]:
    found: list[dict[str, Any]] = [g for g in section["gpus"] if g["index"] == index]
    assert len(found) == 1, section
    return found[0]


def queries(smi: FakeNvidiaSmi, option: str) -> int:
    return sum(1 for call in smi.calls() if call[0].startswith(f"--{option}="))


H100_0 = {
    "index": 0,
    "uuid": "GPU-5a3c6f1e-8d2b-4c7a-9e10-3f4b5c6d7e80",
    "name": "NVIDIA H100 80GB HBM3",
    "util_pct": 87,
    "mem_util_pct": 41,
    "mem_used_bytes": 61234 * MIB,
    "mem_total_bytes": 81559 * MIB,
    "temp_c": 54,
    "power_w": 412.35,
    "power_limit_w": 700.0,
    "sm_clock_mhz": 1980,
    "ecc_sbe_volatile": 3,
    "ecc_dbe_volatile": 0,
    "ecc_sbe_aggregate": 17,
    "ecc_dbe_aggregate": 0,
    "retired_pages_sbe": None,
    "retired_pages_dbe": None,
    "retired_pages_pending": None,
    "remapped_rows_correctable": 2,
    "remapped_rows_uncorrectable": 0,
    "remapped_rows_pending": False,
    "remapped_rows_failure": False,
    "xid": None,
    "nvlink": None,
    "pcie": {"gen": 5, "width": 16, "max_gen": 5, "max_width": 16},
    "field_errors": {},
}


def test_sample_maps_every_field_with_its_unit(tmp_path: Path) -> None:
    smi = FakeNvidiaSmi(tmp_path)
    section = make(smi).sample()
    assert list(section) == ["source", "driver_version", "gpus"]
    assert section["source"] == "nvidia-smi"
    assert section["driver_version"] == "550.54.15"
    assert gpu(section, 0) == H100_0
    assert list(gpu(section, 0)) == list(GPU_FIELDS)
    assert gpu(section, 1)["uuid"] == "GPU-5a3c6f1e-8d2b-4c7a-9e10-3f4b5c6d7e81"
    json.dumps(section, allow_nan=False)
    # The query nvidia-smi was given is the CSV one, without header or units.
    first = smi.calls()[0]
    assert first[0].startswith("--query-gpu=index,uuid,name,")
    assert first[1] == "--format=csv,noheader,nounits"


def test_facts(tmp_path: Path) -> None:
    smi = FakeNvidiaSmi(tmp_path, gpus=[h100(0)])
    facts = make(smi).facts()
    assert facts == {
        "source": "nvidia-smi",
        "driver_version": "550.54.15",
        "cuda_version": None,
        "gpus": [
            {
                "index": 0,
                "uuid": "GPU-5a3c6f1e-8d2b-4c7a-9e10-3f4b5c6d7e80",
                "name": "NVIDIA H100 80GB HBM3",
                "serial": "1654922001230",
                "pci_bus_id": "00000000:18:00.0",
                "memory_total_bytes": 81559 * MIB,
                "power_limit_w": 700.0,
                "nvlink_count": None,
            }
        ],
    }
    assert list(facts["gpus"][0]) == list(FACT_FIELDS)


def test_pre_ampere_values_and_unsupported_spellings(tmp_path: Path) -> None:
    card = h100(0)
    card.update(
        {
            "name": "Tesla V100-SXM2-32GB",
            "retired_pages.sbe": "2",
            "retired_pages.dbe": "1",
            "retired_pages.pending": "Yes",
            "power.draw": "[Not Supported]",
            "clocks.sm": "N/A",
            "pcie.link.gen.current": "[N/A]",
            "remapped_rows.correctable": "[N/A]",
            "remapped_rows.uncorrectable": "[N/A]",
            "remapped_rows.pending": "[N/A]",
            "remapped_rows.failure": "[N/A]",
        }
    )
    record = gpu(make(FakeNvidiaSmi(tmp_path, gpus=[card])).sample(), 0)
    assert record["retired_pages_sbe"] == 2
    assert record["retired_pages_dbe"] == 1
    assert record["retired_pages_pending"] is True
    assert record["power_w"] is None
    assert record["sm_clock_mhz"] is None
    assert record["pcie"] is None
    assert record["remapped_rows_pending"] is None
    assert record["field_errors"] == {}


def test_errors_nvidia_smi_prints_are_null_with_a_sentence(tmp_path: Path) -> None:
    card = h100(0)
    card["temperature.gpu"] = "[Unknown Error]"
    card["memory.used"] = "lots"
    card["pcie.link.width.max"] = "[GPU requires reset]"
    record = gpu(make(FakeNvidiaSmi(tmp_path, gpus=[card])).sample(), 0)
    assert record["temp_c"] is None
    assert record["mem_used_bytes"] is None
    assert record["pcie"] is None
    assert record["field_errors"] == {
        "temp_c": "temperature.gpu: nvidia-smi reported [Unknown Error]",
        "mem_used_bytes": "memory.used: nvidia-smi printed 'lots', which this agent cannot read",
        "pcie": "pcie.link.width.max: nvidia-smi reported [GPU requires reset]",
    }
    assert record["util_pct"] == 87


def test_a_malformed_line_and_a_missing_gpu_stay_listed(tmp_path: Path) -> None:
    smi = FakeNvidiaSmi(tmp_path, gpus=[h100(0), h100(1), h100(2)])
    probe = make(smi)
    facts = probe.facts()
    assert [g["index"] for g in facts["gpus"]] == [0, 1, 2]
    # GPU 1 prints a garbled line; GPU 2 is lost and nvidia-smi says so instead of a line.
    smi.configure(
        gpus=[h100(0)],
        extra_lines=[
            "1, GPU-5a3c6f1e-8d2b-4c7a-9e10-3f4b5c6d7e81, NVIDIA H100 80GB HBM3, 87",
            "Unable to determine the device handle for GPU 00000000:38:00.0: GPU is lost. "
            "Reboot the system to recover this GPU",
        ],
        exit_status=15,
    )
    section = probe.sample()
    assert [g["index"] for g in section["gpus"]] == [0, 1, 2]
    assert gpu(section, 0)["util_pct"] == 87
    garbled = gpu(section, 1)
    assert garbled["uuid"] == "GPU-5a3c6f1e-8d2b-4c7a-9e10-3f4b5c6d7e81"
    assert garbled["util_pct"] is None
    reason = set(garbled["field_errors"].values())
    assert len(reason) == 1 and "does not have 23 values" in reason.pop()
    lost = gpu(section, 2)
    assert lost["uuid"] == "GPU-5a3c6f1e-8d2b-4c7a-9e10-3f4b5c6d7e82"
    readable = set(READING_FIELDS) - {"xid", "nvlink"}  # never readable through nvidia-smi
    assert set(lost["field_errors"]) == readable
    assert all(lost[field] is None for field in READING_FIELDS)
    assert "GPU is lost" in lost["field_errors"]["temp_c"]
    assert list(lost) == list(GPU_FIELDS)


def test_a_hanging_nvidia_smi_gives_an_error_section_quickly(tmp_path: Path) -> None:
    smi = FakeNvidiaSmi(tmp_path, mode="hang")
    probe = make(smi, timeout_s=0.5)
    started = time.monotonic()
    section = probe.sample()
    elapsed = time.monotonic() - started
    assert elapsed < 2.5
    assert section == {
        "error": "nvidia-smi did not answer within 0.5 s and was killed (a hung GPU driver "
        "does this)",
        "timed_out": True,
    }
    # It was killed, not left behind.
    (pid,) = smi.pids()
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline and _alive(pid):
        time.sleep(0.02)
    assert not _alive(pid)
    # The next tick tries again (a driver can recover).
    smi.configure(mode="ok")
    assert probe.sample()["gpus"][0]["util_pct"] == 87


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_a_failing_nvidia_smi_says_what_it_printed_and_why_nvml_was_not_used(
    tmp_path: Path,
) -> None:
    smi = FakeNvidiaSmi(tmp_path, mode="fail")
    section = make(smi).sample()
    assert section == {
        "error": f"nvidia-smi failed (exit status 9): {DRIVER_NOT_LOADED}; NVML was not used: "
        "nvmlInit failed: NVMLError_LibraryNotFound: NVML Shared Library Not Found"
    }
    assert make(smi).facts()["error"].startswith("nvidia-smi failed (exit status 9)")


def test_remapped_rows_are_asked_at_most_once_a_minute(tmp_path: Path) -> None:
    smi = FakeNvidiaSmi(tmp_path, gpus=[h100(0)])
    clock = Clock()
    probe = make(smi, clock)
    assert gpu(probe.sample(), 0)["remapped_rows_correctable"] == 2
    card = h100(0)
    card["remapped_rows.uncorrectable"] = "1"
    card["remapped_rows.pending"] = "1"
    smi.configure(gpus=[card])
    for step in (1.0, 29.0, 29.0):
        clock.now += step
        record = gpu(probe.sample(), 0)
        assert record["remapped_rows_uncorrectable"] == 0  # the minute-old answer
    clock.now += 1.0
    record = gpu(probe.sample(), 0)
    assert record["remapped_rows_uncorrectable"] == 1
    assert record["remapped_rows_pending"] is True
    assert queries(smi, "query-gpu") == 5
    assert queries(smi, "query-remapped-rows") == 2


def test_an_older_driver_without_a_field_is_asked_without_it(tmp_path: Path) -> None:
    smi = FakeNvidiaSmi(tmp_path, gpus=[h100(0)], unknown_fields=["retired_pages.pending"])
    probe = make(smi)
    record = gpu(probe.sample(), 0)
    assert record["retired_pages_pending"] is None
    assert record["field_errors"] == {}
    assert record["util_pct"] == 87
    probe.sample()
    gpu_queries = [call[0] for call in smi.calls() if call[0].startswith("--query-gpu")]
    assert len(gpu_queries) == 3  # refused once, then asked without it every tick
    assert "retired_pages.pending" in gpu_queries[0]
    assert all("retired_pages.pending" not in query for query in gpu_queries[1:])


def test_remapped_rows_on_drivers_without_all_of_it(tmp_path: Path) -> None:
    smi = FakeNvidiaSmi(tmp_path, gpus=[h100(0)], unknown_fields=["remapped_rows.failure"])
    record = gpu(make(smi).sample(), 0)
    assert record["remapped_rows_failure"] is None
    assert record["remapped_rows_correctable"] == 2
    assert record["field_errors"] == {}
    # A driver from before row remapping does not know the query at all: null, no error,
    # and it is not asked again.
    old = FakeNvidiaSmi(tmp_path / "old", gpus=[h100(0)], unknown_options=["query-remapped-rows"])
    clock = Clock()
    probe = make(old, clock)
    for _ in range(2):
        record = gpu(probe.sample(), 0)
        clock.now += 61.0
    assert record["remapped_rows_correctable"] is None
    assert record["field_errors"] == {}
    assert record["util_pct"] == 87
    assert queries(old, "query-remapped-rows") == 1


def test_a_failing_remap_query_is_named_on_its_fields_only(tmp_path: Path) -> None:
    smi = FakeNvidiaSmi(tmp_path, gpus=[h100(0)], mode_for={"query-remapped-rows": "fail"})
    record = gpu(make(smi).sample(), 0)
    assert record["util_pct"] == 87
    fields = {"remapped_rows_" + part for part in ("correctable", "uncorrectable", "pending")}
    fields.add("remapped_rows_failure")
    assert set(record["field_errors"]) == fields
    assert record["field_errors"]["remapped_rows_pending"] == (
        f"row remapping: nvidia-smi failed (exit status 9): {DRIVER_NOT_LOADED}"
    )


def test_output_without_any_gpu_line_is_an_error(tmp_path: Path) -> None:
    warning = "WARNING: infoROM is corrupted at gpu 0000:18:00.0"
    smi = FakeNvidiaSmi(tmp_path, raw_output=warning + "\n")
    # An empty "gpus" list would read as "no GPUs": without GPU lines it is an error.
    section = make(smi).sample()
    assert section == {"error": "nvidia-smi printed no GPU readings: " + warning}


def test_no_devices(tmp_path: Path) -> None:
    smi = FakeNvidiaSmi(tmp_path, gpus=[])
    probe = make(smi)
    assert probe.facts()["gpus"] == []
    assert probe.sample() == {"source": "nvidia-smi", "driver_version": None, "gpus": []}


@pytest.mark.parametrize(
    ("text", "value", "error"),
    [
        ("[N/A]", None, None),
        ("[Not Supported]", None, None),
        ("N/A", None, None),
        ("", None, None),
        ("42", 42, None),
        ("[Unknown Error]", None, "nvidia-smi reported [Unknown Error]"),
        ("x1", None, "nvidia-smi printed 'x1', which this agent cannot read"),
    ],
)
def test_parse_value(text: str, value: Any, error: Any) -> None:
    assert parse_value(text, int) == (value, error)
