"""The gpu probe over NVML, against a fake NVML built on the real pynvml's errors and structs."""

from __future__ import annotations

import json
from typing import Any

import pynvml  # type: ignore[import-untyped]
import pytest

from tests.fakes.nvml import MIB, FakeNvml, h100, v100
from tidectl.agents.probes.gpu import FACT_FIELDS, GPU_FIELDS, READING_FIELDS, GpuProbe
from tidectl.agents.probes.nvml import MAX_EVENTS_PER_TICK


class Clock:
    def __init__(self, now: float = 1764363000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def make(fake: FakeNvml, clock: Clock | None = None) -> GpuProbe:
    # A name that cannot be on PATH: these tests must never fall back to nvidia-smi.
    return GpuProbe(nvml=fake, nvidia_smi="no-such-nvidia-smi-here", clock=clock or Clock())


def gpu(section: dict[str, Any], index: int) -> dict[str, Any]:
    found: list[dict[str, Any]] = [g for g in section["gpus"] if g["index"] == index]
    assert len(found) == 1, section
    return found[0]


H100_0 = {
    "index": 0,
    "uuid": "GPU-5a3c6f1e-8d2b-4c7a-9e10-3f4b5c6d7e80",
    "name": "NVIDIA H100 80GB HBM3",
    "util_pct": 87,
    "mem_util_pct": 41,
    "mem_used_bytes": 61234 * MIB,
    "mem_total_bytes": 81559 * MIB,
    "temp_c": 54,
    "power_w": 412.345,
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
    "xid": [],
    "nvlink": {"up": 18, "total": 18},
    "pcie": {"gen": 5, "width": 16, "max_gen": 5, "max_width": 16},
    "field_errors": {},
}


def test_sample_maps_every_field_with_its_unit() -> None:
    section = make(FakeNvml()).sample()
    assert section["source"] == "nvml"
    assert section["driver_version"] == "550.54.15"
    assert list(section) == ["source", "driver_version", "gpus"]
    assert [g["index"] for g in section["gpus"]] == [0, 1]
    record = gpu(section, 0)
    assert record == H100_0
    assert list(record) == list(GPU_FIELDS)  # the protocol's order, nothing more
    json.dumps(section, allow_nan=False)  # plain JSON values only (no ctypes leftovers)


def test_facts_list_identity_and_inventory() -> None:
    facts = make(FakeNvml([h100(0), v100(1)])).facts()
    assert facts == {
        "source": "nvml",
        "driver_version": "550.54.15",
        "cuda_version": "12.4",
        "gpus": [
            {
                "index": 0,
                "uuid": "GPU-5a3c6f1e-8d2b-4c7a-9e10-3f4b5c6d7e80",
                "name": "NVIDIA H100 80GB HBM3",
                "serial": "1654922001230",
                "pci_bus_id": "00000000:18:00.0",
                "memory_total_bytes": 81559 * MIB,
                "power_limit_w": 700.0,
                "nvlink_count": 18,
            },
            {
                "index": 1,
                "uuid": "GPU-0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f1",
                "name": "Tesla V100-SXM2-32GB",
                "serial": "0323019004561",
                "pci_bus_id": "00000000:1B:00.0",
                "memory_total_bytes": 32768 * MIB,
                "power_limit_w": 300.0,
                "nvlink_count": 6,
            },
        ],
    }
    assert all(list(g) == list(FACT_FIELDS) for g in facts["gpus"])


def test_pre_ampere_gpu_reports_retired_pages_and_no_remapping() -> None:
    record = gpu(make(FakeNvml([v100(0)])).sample(), 0)
    assert record["retired_pages_sbe"] == 2
    assert record["retired_pages_dbe"] == 1
    assert record["retired_pages_pending"] is True
    for field in ("correctable", "uncorrectable", "pending", "failure"):
        assert record["remapped_rows_" + field] is None
    assert record["ecc_sbe_aggregate"] == 5
    assert record["ecc_dbe_aggregate"] == 1
    assert record["nvlink"] == {"up": 5, "total": 6}
    assert record["pcie"] == {"gen": 3, "width": 16, "max_gen": 3, "max_width": 16}
    assert record["power_w"] == 65.432
    assert record["field_errors"] == {}


def test_not_supported_is_null_and_not_an_error() -> None:
    card = h100(0)
    not_supported = pynvml.NVML_ERROR_NOT_SUPPORTED
    for name in (
        "nvmlDeviceGetPowerUsage",
        "nvmlDeviceGetTotalEccErrors",
        "nvmlDeviceGetClockInfo",
        "nvmlDeviceGetCurrPcieLinkGeneration",
        "nvmlDeviceRegisterEvents",
    ):
        card.errors[name] = not_supported
    card.nvlink = None
    record = gpu(make(FakeNvml([card])).sample(), 0)
    assert record["power_w"] is None
    assert record["sm_clock_mhz"] is None
    for field in ("ecc_sbe_volatile", "ecc_dbe_volatile", "ecc_sbe_aggregate", "ecc_dbe_aggregate"):
        assert record[field] is None
    assert record["pcie"] is None
    assert record["nvlink"] is None
    assert record["xid"] is None  # this GPU cannot deliver XID events
    assert record["field_errors"] == {}
    assert record["temp_c"] == 54  # the rest is still read


def test_other_nvml_errors_are_null_with_a_sentence() -> None:
    card = h100(0)
    card.errors["nvmlDeviceGetPowerUsage"] = pynvml.NVML_ERROR_NO_PERMISSION
    card.errors["nvmlDeviceGetRemappedRows"] = pynvml.NVML_ERROR_CORRUPTED_INFOROM
    card.errors["nvmlDeviceGetNvLinkState"] = pynvml.NVML_ERROR_UNKNOWN
    record = gpu(make(FakeNvml([card])).sample(), 0)
    assert record["power_w"] is None
    assert record["nvlink"] is None
    errors = record["field_errors"]
    assert errors["power_w"] == "nvmlDeviceGetPowerUsage failed: Insufficient Permissions"
    for field in ("correctable", "uncorrectable", "pending", "failure"):
        assert record["remapped_rows_" + field] is None
        assert errors["remapped_rows_" + field] == (
            "nvmlDeviceGetRemappedRows failed: Corrupted infoROM"
        )
    assert errors["nvlink"] == "nvmlDeviceGetNvLinkState(link 0) failed: Unknown Error"
    assert set(errors) == {
        "power_w",
        "nvlink",
        "remapped_rows_correctable",
        "remapped_rows_uncorrectable",
        "remapped_rows_pending",
        "remapped_rows_failure",
    }
    assert record["temp_c"] == 54


def test_xid_events_are_reported_once_then_not_again() -> None:
    fake = FakeNvml()
    clock = Clock()
    probe = make(fake, clock)
    probe.facts()  # registers both GPUs for XID events
    first = probe.sample()
    assert gpu(first, 0)["xid"] == [] and gpu(first, 1)["xid"] == []
    fake.inject_xid(1, 79)
    fake.inject_xid(1, 48)
    clock.now += 1.0
    second = probe.sample()
    assert gpu(second, 1)["xid"] == [
        {"code": 79, "ts": clock.now},
        {"code": 48, "ts": clock.now},
    ]
    assert gpu(second, 0)["xid"] == []
    clock.now += 1.0
    third = probe.sample()
    assert gpu(third, 1)["xid"] == []
    # One event set, each GPU registered once, and the set is never waited on.
    assert fake.count("nvmlEventSetCreate") == 1
    assert fake.count("nvmlDeviceRegisterEvents") == 2
    assert set(fake.wait_timeouts) == {0}


def test_an_xid_storm_is_drained_over_several_ticks() -> None:
    fake = FakeNvml([h100(0)])
    probe = make(fake)
    probe.facts()
    for _ in range(MAX_EVENTS_PER_TICK + 10):
        fake.inject_xid(0, 13)
    assert len(gpu(probe.sample(), 0)["xid"]) == MAX_EVENTS_PER_TICK
    assert len(gpu(probe.sample(), 0)["xid"]) == 10
    assert gpu(probe.sample(), 0)["xid"] == []


def test_event_wait_error_keeps_events_for_the_next_good_tick() -> None:
    fake = FakeNvml([h100(0)])
    probe = make(fake)
    probe.facts()
    fake.inject_xid(0, 31)
    real_wait = fake.nvmlEventSetWait_v2

    def broken(event_set: Any, timeout_ms: int) -> Any:
        raise pynvml.NVMLError(pynvml.NVML_ERROR_UNKNOWN)

    fake.nvmlEventSetWait_v2 = broken  # type: ignore[assignment,method-assign]
    record = gpu(probe.sample(), 0)
    assert record["xid"] is None
    assert record["field_errors"] == {"xid": "nvmlEventSetWait failed: Unknown Error"}
    fake.nvmlEventSetWait_v2 = real_wait  # type: ignore[method-assign]
    assert [event["code"] for event in gpu(probe.sample(), 0)["xid"]] == [31]


def test_versioned_functions_are_probed_once_and_the_older_one_used() -> None:
    # A driver older than the bindings: no nvmlEventSetWait_v2, no nvmlDeviceGetTemperatureV.
    fake = FakeNvml(missing={"nvmlEventSetWait_v2", "nvmlDeviceGetTemperatureV"})
    probe = make(fake)
    probe.facts()
    for _ in range(3):
        probe.sample()
    fake.inject_xid(0, 94)
    record = gpu(probe.sample(), 0)
    assert [event["code"] for event in record["xid"]] == [94]
    assert record["temp_c"] == 54
    assert record["field_errors"] == {}
    assert fake.count("nvmlEventSetWait_v2") == 1
    assert fake.count("nvmlDeviceGetTemperatureV") == 1
    assert fake.count("nvmlEventSetWait") >= 4
    assert fake.count("nvmlDeviceGetTemperature") == 4 * 2


def test_nvlink_counts_links_until_the_driver_says_no_more() -> None:
    card = h100(0)
    card.nvlink = [1, 1, 0, 1, 1, 1, 0, 1, 1, 1, 1, 1]  # an A100: 12 links, 2 down
    fake = FakeNvml([card, v100(1)])
    fake.gpus[1].nvlink = None  # a PCIe card: no NVLink at all
    clock = Clock()
    probe = make(fake, clock)
    section = probe.sample()
    assert gpu(section, 0)["nvlink"] == {"up": 10, "total": 12}
    assert gpu(section, 1)["nvlink"] is None
    # 12 answers and the InvalidArgument that ended the count, plus 1 NotSupported.
    assert fake.count("nvmlDeviceGetNvLinkState") == 13 + 1
    card.nvlink[0] = 0
    clock.now += 10.0
    assert gpu(probe.sample(), 0)["nvlink"] == {"up": 9, "total": 12}
    # The counts are known now: only the 12 links are asked again, and the card without
    # NVLink is not asked at all.
    assert fake.count("nvmlDeviceGetNvLinkState") == 14 + 12


def test_slow_readings_are_refreshed_every_slow_interval() -> None:
    fake = FakeNvml([h100(0)])
    clock = Clock()
    probe = make(fake, clock)
    probe.sample()
    card = fake.gpus[0]
    card.remapped_rows = (2, 1, 1, 0)
    card.ecc[(pynvml.NVML_MEMORY_ERROR_TYPE_UNCORRECTED, pynvml.NVML_VOLATILE_ECC)] = 1
    clock.now += 1.0
    record = gpu(probe.sample(), 0)
    assert record["ecc_dbe_volatile"] == 1  # every tick
    assert record["remapped_rows_uncorrectable"] == 0  # not yet
    clock.now += 9.0
    record = gpu(probe.sample(), 0)
    assert record["remapped_rows_uncorrectable"] == 1
    assert record["remapped_rows_pending"] is True


def test_a_lost_gpu_stays_in_the_list_with_its_identity_and_the_reason() -> None:
    fake = FakeNvml()
    probe = make(fake)
    facts = probe.facts()
    fake.inject_xid(1, 79)  # fallen off the bus...
    fake.gpus[1].lost = True  # ...and from now on every call says so
    section = probe.sample()
    assert len(section["gpus"]) == len(facts["gpus"]) == 2
    assert gpu(section, 0)["util_pct"] == 87
    lost = gpu(section, 1)
    assert lost["uuid"] == facts["gpus"][1]["uuid"]
    assert lost["name"] == "NVIDIA H100 80GB HBM3"
    assert lost["xid"] == [{"code": 79, "ts": Clock().now}]
    expected = set(READING_FIELDS) - {"xid"}
    assert set(lost["field_errors"]) == expected
    assert all(lost[field] is None for field in expected)
    assert set(lost["field_errors"].values()) == {
        "nvmlDeviceGetUtilizationRates failed: GPU is lost"
    }
    assert list(lost) == list(GPU_FIELDS)


def test_a_gpu_without_a_handle_is_listed_in_facts_and_samples() -> None:
    fake = FakeNvml(handle_errors={1: pynvml.NVML_ERROR_NO_PERMISSION})
    probe = make(fake)
    facts = probe.facts()
    assert facts["gpus"][1] == dict.fromkeys(FACT_FIELDS, None) | {"index": 1}
    record = gpu(probe.sample(), 1)
    sentence = "nvmlDeviceGetHandleByIndex(1) failed: Insufficient Permissions"
    assert record["field_errors"] == dict.fromkeys(READING_FIELDS, sentence)
    assert record["util_pct"] is None and record["xid"] is None
    # Once the handle can be had, the GPU is read and registered for XIDs.
    del fake.handle_errors[1]
    record = gpu(probe.sample(), 1)
    assert record["uuid"] == "GPU-5a3c6f1e-8d2b-4c7a-9e10-3f4b5c6d7e81"
    assert record["xid"] == [] and record["field_errors"] == {}


def test_close_frees_the_event_set_and_shuts_nvml_down() -> None:
    fake = FakeNvml()
    probe = make(fake)
    probe.sample()
    assert fake.initialized == 1
    probe.close()
    assert fake.count("nvmlEventSetFree") == 1
    assert fake.initialized == 0


def test_count_failure_fails_the_section() -> None:
    fake = FakeNvml()

    def broken() -> int:
        raise pynvml.NVMLError(pynvml.NVML_ERROR_UNKNOWN)

    fake.nvmlDeviceGetCount = broken  # type: ignore[method-assign]
    with pytest.raises(pynvml.NVMLError_Unknown):
        make(fake).sample()
