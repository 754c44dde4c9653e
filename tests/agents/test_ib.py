"""The ib probe against faithful fake /sys/class/infiniband trees."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fakes.sysfs_ib import (
    EFA_PORT_HW_COUNTERS,
    IB_COUNTERS,
    break_counter,
    break_port_file,
    build_efa,
    build_hca,
    build_roce,
    fake_ib_fleet,
    remove_hca,
    set_counter,
    set_port_file,
)
from tidectl.agents import protocol
from tidectl.agents.probes.base import Probe
from tidectl.agents.probes.ib import IbProbe
from tidectl.agents.protocol import EncodedSection

PORT_KEYS = [
    "hca",
    "port",
    "state",
    "state_name",
    "phys_state",
    "phys_state_name",
    "link_layer",
    "rate",
    "rate_gbps",
    "lid",
    "sm_lid",
    "counters",
    "counter_errors",
    "xmit_bytes",
    "rcv_bytes",
]
HCA_FACT_KEYS = ["name", "node_guid", "fw_ver", "hca_type", "board_id", "node_desc", "ports"]
PORT_FACT_KEYS = ["port", "link_layer", "rate", "rate_gbps", "lid", "port_guid"]


@pytest.fixture
def root(tmp_path: Path) -> str:
    return str(tmp_path / "sys")


@pytest.fixture
def probes(root: str) -> Iterator[list[IbProbe]]:
    """Probes made by a test; closed afterwards so no descriptor leaks into the next test."""
    made: list[IbProbe] = []
    yield made
    for probe in made:
        probe.close()


def make(probes: list[IbProbe], root: str, **options: Any) -> IbProbe:
    probe = IbProbe(sysfs_root=root, **options)
    probes.append(probe)
    return probe


def only_port(section: dict[str, Any]) -> dict[str, Any]:
    assert len(section["ports"]) == 1
    port: dict[str, Any] = section["ports"][0]
    return port


def wire(section: dict[str, Any]) -> dict[str, Any]:
    """What the console receives: the section through strict JSON."""
    decoded: dict[str, Any] = json.loads(json.dumps(section, allow_nan=False))
    return decoded


def test_is_a_probe_named_ib(root: str, probes: list[IbProbe]) -> None:
    probe = make(probes, root)
    assert isinstance(probe, Probe)
    assert probe.name == "ib"


def test_active_linkup_port_is_one_exact_record(root: str, probes: list[IbProbe]) -> None:
    build_hca(root, "mlx5_0")
    port = only_port(wire(make(probes, root).sample()))
    assert list(port) == PORT_KEYS
    assert port == {
        "hca": "mlx5_0",
        "port": 1,
        "state": 4,
        "state_name": "ACTIVE",
        "phys_state": 5,
        "phys_state_name": "LinkUp",
        "link_layer": "InfiniBand",
        "rate": "400 Gb/sec (4X NDR)",
        "rate_gbps": 400.0,
        "lid": 0x1A,
        "sm_lid": 1,
        "counters": IB_COUNTERS,
        "counter_errors": {},
        "xmit_bytes": IB_COUNTERS["port_xmit_data"] * 4,
        "rcv_bytes": IB_COUNTERS["port_rcv_data"] * 4,
    }
    # Every file of counters/, and nothing from hw_counters/ when counters/ exists.
    assert "out_of_buffer" not in port["counters"]
    assert len(port["counters"]) == 21


@pytest.mark.parametrize(
    ("state", "phys_state", "expected"),
    [
        ("1: DOWN", "2: Polling", (1, "DOWN", 2, "Polling")),
        ("1: DOWN", "3: Disabled", (1, "DOWN", 3, "Disabled")),
        # Link up but no subnet manager: the classic "cable fine, fabric not" fault.
        ("2: INIT", "5: LinkUp", (2, "INIT", 5, "LinkUp")),
        ("3: ARMED", "5: LinkUp", (3, "ARMED", 5, "LinkUp")),
        ("1: DOWN", "6: LinkErrorRecovery", (1, "DOWN", 6, "LinkErrorRecovery")),
        ("1: DOWN", "7: Phy Test", (1, "DOWN", 7, "Phy Test")),
    ],
)
def test_port_states_are_number_and_word(
    root: str,
    probes: list[IbProbe],
    state: str,
    phys_state: str,
    expected: tuple[int, str, int, str],
) -> None:
    build_hca(root, "mlx5_0", state=state, phys_state=phys_state, rate="10 Gb/sec (4X SDR)")
    port = only_port(make(probes, root).sample())
    got = (port["state"], port["state_name"], port["phys_state"], port["phys_state_name"])
    assert got == expected
    assert port["rate_gbps"] == 10.0
    assert port["counter_errors"] == {}


def test_state_changes_between_ticks_are_seen(root: str, probes: list[IbProbe]) -> None:
    build_hca(root, "mlx5_0")
    probe = make(probes, root)
    assert only_port(probe.sample())["state_name"] == "ACTIVE"
    set_port_file(root, "mlx5_0", 1, "state", "1: DOWN")
    set_port_file(root, "mlx5_0", 1, "phys_state", "3: Disabled")
    set_port_file(root, "mlx5_0", 1, "rate", "100 Gb/sec (2X HDR)")
    port = only_port(probe.sample())
    assert (port["state"], port["phys_state_name"], port["rate_gbps"]) == (1, "Disabled", 100.0)


def test_roce_port(root: str, probes: list[IbProbe]) -> None:
    build_roce(root, "mlx5_0", mac="0c:42:a1:16:05:4c")
    probe = make(probes, root)
    port = only_port(probe.sample())
    assert port["link_layer"] == "Ethernet"
    assert (port["rate"], port["rate_gbps"]) == ("100 Gb/sec (4X EDR)", 100.0)
    assert (port["lid"], port["sm_lid"]) == (0, 0)
    assert port["counters"] == IB_COUNTERS
    assert port["xmit_bytes"] == IB_COUNTERS["port_xmit_data"] * 4
    facts = probe.facts()["hcas"][0]
    assert facts["hca_type"] == "MT4125"
    # GID 0 of a RoCE port is the link-local address made from the MAC (EUI-64).
    assert facts["ports"][0]["port_guid"] == "0e42:a1ff:fe16:054c"


def test_efa_reads_port_hw_counters_when_there_is_no_counters_folder(
    root: str, probes: list[IbProbe]
) -> None:
    build_efa(root, "efa_0")
    probe = make(probes, root)
    port = only_port(wire(probe.sample()))
    assert list(port) == PORT_KEYS
    assert port["hca"] == "efa_0"
    assert port["link_layer"] == "Unknown"
    assert (port["state_name"], port["phys_state_name"]) == ("ACTIVE", "LinkUp")
    assert port["rate_gbps"] == 100.0
    # The port's hw_counters/, not the device-level ones (submitted_cmds, ...).
    assert port["counters"] == EFA_PORT_HW_COUNTERS
    assert "submitted_cmds" not in port["counters"]
    # No PortXmitData/PortRcvData on EFA: the 4-byte-word conversion has nothing to convert.
    assert (port["xmit_bytes"], port["rcv_bytes"]) == (None, None)
    assert port["counter_errors"] == {}


def test_efa_facts_are_null_where_the_driver_gives_nothing(
    root: str, probes: list[IbProbe]
) -> None:
    build_efa(root, "efa_0")
    facts = wire(make(probes, root).facts())
    assert facts == {
        "hcas": [
            {
                "name": "efa_0",
                "node_guid": "04d3:2dff:fe5e:8a3b",
                "fw_ver": None,
                "hca_type": None,
                "board_id": None,
                "node_desc": None,
                "ports": [
                    {
                        "port": 1,
                        "link_layer": "Unknown",
                        "rate": "100 Gb/sec (4X EDR)",
                        "rate_gbps": 100.0,
                        "lid": 0,
                        "port_guid": "04d3:2dff:fe5e:8a3b",
                    }
                ],
            }
        ]
    }


def test_facts_of_an_infiniband_hca(root: str, probes: list[IbProbe]) -> None:
    build_hca(root, "mlx5_0", ports=2, lid=0x2B, node_guid="0c42:a103:0016:054c")
    facts = wire(make(probes, root).facts())
    hca = facts["hcas"][0]
    assert list(hca) == HCA_FACT_KEYS
    assert hca["node_guid"] == "0c42:a103:0016:054c"
    assert (hca["fw_ver"], hca["hca_type"], hca["board_id"]) == (
        "28.39.1002",
        "MT4129",
        "MT_0000000838",
    )
    assert hca["node_desc"] == "gpu001 mlx5_0"
    assert [list(port) for port in hca["ports"]] == [PORT_FACT_KEYS, PORT_FACT_KEYS]
    assert hca["ports"] == [
        {
            "port": 1,
            "link_layer": "InfiniBand",
            "rate": "400 Gb/sec (4X NDR)",
            "rate_gbps": 400.0,
            "lid": 0x2B,
            "port_guid": "0c42:a103:0016:054c",
        },
        {
            "port": 2,
            "link_layer": "InfiniBand",
            "rate": "400 Gb/sec (4X NDR)",
            "rate_gbps": 400.0,
            "lid": 0x2B,
            "port_guid": "0c42:a103:0016:054d",
        },
    ]


def test_a_counter_that_fails_to_read_is_an_error_on_that_counter_only(
    root: str, probes: list[IbProbe]
) -> None:
    build_hca(root, "mlx5_0")
    break_counter(root, "mlx5_0", 1, "symbol_error")
    probe = make(probes, root)
    for _ in range(2):  # the same on the held descriptor's next read
        port = only_port(probe.sample())
        assert list(port["counter_errors"]) == ["symbol_error"]
        assert "EISDIR" in port["counter_errors"]["symbol_error"]
        assert "symbol_error" not in port["counters"]
        expected = {k: v for k, v in IB_COUNTERS.items() if k != "symbol_error"}
        assert port["counters"] == expected
        assert port["state_name"] == "ACTIVE"
        assert port["xmit_bytes"] == IB_COUNTERS["port_xmit_data"] * 4


def test_a_counter_that_does_not_parse_is_an_error(root: str, probes: list[IbProbe]) -> None:
    # Older kernels print this when the PMA query fails.
    build_hca(root, "mlx5_0", counters={"link_downed": "N/A (no PMA)"})
    port = only_port(make(probes, root).sample())
    assert port["counter_errors"] == {"link_downed": "not a number: 'N/A (no PMA)'"}
    assert "link_downed" not in port["counters"]
    assert port["counters"]["symbol_error"] == 0


def test_an_unreadable_state_file_nulls_the_field_not_the_port(
    root: str, probes: list[IbProbe]
) -> None:
    build_hca(root, "mlx5_0")
    build_hca(root, "mlx5_1", node_guid="0c42:a103:0016:055c", pci_bus=0x2A)
    break_port_file(root, "mlx5_0", 1, "state")
    section = make(probes, root).sample()
    broken, healthy = section["ports"]
    assert list(broken) == PORT_KEYS
    assert (broken["state"], broken["state_name"]) == (None, None)
    assert list(broken["counter_errors"]) == ["state"]
    assert "Is a directory" in broken["counter_errors"]["state"]
    assert broken["phys_state_name"] == "LinkUp"
    assert broken["counters"] == IB_COUNTERS
    assert healthy["state_name"] == "ACTIVE"
    assert healthy["counter_errors"] == {}


def test_garbled_fields_are_null_with_a_sentence(root: str, probes: list[IbProbe]) -> None:
    build_hca(root, "mlx5_0", state="ACTIVE", rate="fast", lid="none")
    port = only_port(make(probes, root).sample())
    assert (port["state"], port["state_name"], port["lid"]) == (None, None, None)
    assert port["rate"] == "fast"
    assert port["rate_gbps"] is None
    assert port["counter_errors"] == {
        "state": "unrecognised value: 'ACTIVE'",
        "rate": "unrecognised value: 'fast'",
        "lid": "unrecognised value: 'none'",
    }


def test_counter_values_are_reread_every_tick_and_data_is_times_four(
    root: str, probes: list[IbProbe]
) -> None:
    build_hca(root, "mlx5_0", counters={"port_xmit_data": 1000, "port_rcv_data": 250})
    probe = make(probes, root)
    port = only_port(probe.sample())
    assert (port["xmit_bytes"], port["rcv_bytes"]) == (4000, 1000)
    set_counter(root, "mlx5_0", 1, "port_xmit_data", 2**40)
    set_counter(root, "mlx5_0", 1, "symbol_error", 7)
    port = only_port(probe.sample())
    assert port["counters"]["port_xmit_data"] == 2**40
    assert port["xmit_bytes"] == 2**42
    assert port["counters"]["symbol_error"] == 7


def test_bytes_are_null_when_the_data_counters_are_missing(
    root: str, probes: list[IbProbe]
) -> None:
    build_hca(root, "mlx5_0")
    os.remove(os.path.join(root, "class/infiniband/mlx5_0/ports/1/counters/port_rcv_data"))
    port = only_port(make(probes, root).sample())
    assert port["xmit_bytes"] == IB_COUNTERS["port_xmit_data"] * 4
    assert port["rcv_bytes"] is None
    assert port["counter_errors"] == {}


@pytest.mark.parametrize(
    ("rate", "gbps"),
    [
        ("2.5 Gb/sec (1X SDR)", 2.5),
        ("5 Gb/sec (1X DDR)", 5.0),
        ("10 Gb/sec (4X SDR)", 10.0),
        ("14 Gb/sec (1X FDR)", 14.0),
        ("25 Gb/sec (1X EDR)", 25.0),
        ("40 Gb/sec (4X QDR)", 40.0),
        ("40 Gb/sec (4X FDR10)", 40.0),
        ("56 Gb/sec (4X FDR)", 56.0),
        ("100 Gb/sec (4X EDR)", 100.0),
        ("200 Gb/sec (4X HDR)", 200.0),
        ("300 Gb/sec (12X EDR)", 300.0),
        ("400 Gb/sec (4X NDR)", 400.0),
        ("400 Gb/sec (8X HDR)", 400.0),
        ("800 Gb/sec (4X XDR)", 800.0),
    ],
)
def test_rate_strings(root: str, probes: list[IbProbe], rate: str, gbps: float) -> None:
    build_hca(root, "mlx5_0", rate=rate)
    probe = make(probes, root)
    port = only_port(probe.sample())
    assert (port["rate"], port["rate_gbps"]) == (rate, gbps)
    assert isinstance(port["rate_gbps"], float)
    assert probe.facts()["hcas"][0]["ports"][0]["rate_gbps"] == gbps


def test_missing_class_folder_is_no_hcas_not_an_error(root: str, probes: list[IbProbe]) -> None:
    probe = make(probes, root)
    assert probe.sample() == {"ports": []}
    assert probe.facts() == {"hcas": []}
    # The driver loads later: the next tick sees it.
    build_hca(root, "mlx5_0")
    assert only_port(probe.sample())["hca"] == "mlx5_0"


def test_hca_that_disappears_and_one_that_appears(root: str, probes: list[IbProbe]) -> None:
    fake_ib_fleet(root, 2)
    probe = make(probes, root)
    assert [p["hca"] for p in probe.sample()["ports"]] == ["mlx5_0", "mlx5_1"]
    remove_hca(root, "mlx5_1")
    assert [p["hca"] for p in probe.sample()["ports"]] == ["mlx5_0"]
    build_hca(root, "mlx5_2", lid=0x40, node_guid="0c42:a103:0016:0600", pci_bus=0x5A)
    ports = probe.sample()["ports"]
    assert [p["hca"] for p in ports] == ["mlx5_0", "mlx5_2"]
    assert ports[1]["lid"] == 0x40
    assert ports[1]["counters"] == IB_COUNTERS


def test_no_descriptor_leaks_as_hcas_come_and_go(root: str, probes: list[IbProbe]) -> None:
    fd_folder = "/proc/self/fd"
    if not os.path.isdir(fd_folder):
        pytest.skip("needs /proc/self/fd")
    before = len(os.listdir(fd_folder))
    fake_ib_fleet(root, 3)
    probe = make(probes, root, relist_every=2)
    for _ in range(5):
        probe.sample()
    remove_hca(root, "mlx5_2")
    probe.sample()
    build_hca(root, "mlx5_2", pci_bus=0x7A)
    for _ in range(5):
        probe.sample()
    held = len(os.listdir(fd_folder)) - before
    assert held == 3 * 26  # five port attributes and 21 counters, for three HCAs
    probe.close()
    assert len(os.listdir(fd_folder)) == before


def test_natural_order_of_hcas_and_ports(root: str, probes: list[IbProbe]) -> None:
    for index in (10, 2, 1):
        build_hca(root, f"mlx5_{index}", ports=2, pci_bus=index)
    probe = make(probes, root)
    keys = [(p["hca"], p["port"]) for p in probe.sample()["ports"]]
    assert keys == [
        ("mlx5_1", 1),
        ("mlx5_1", 2),
        ("mlx5_2", 1),
        ("mlx5_2", 2),
        ("mlx5_10", 1),
        ("mlx5_10", 2),
    ]
    assert [hca["name"] for hca in probe.facts()["hcas"]] == ["mlx5_1", "mlx5_2", "mlx5_10"]


def test_mixed_node_ib_roce_and_efa(root: str, probes: list[IbProbe]) -> None:
    build_hca(root, "mlx5_0")
    build_roce(root, "mlx5_1", pci_bus=0x2A)
    build_efa(root, "efa_0")
    ports = make(probes, root).sample()["ports"]
    layers = {p["hca"]: p["link_layer"] for p in ports}
    assert layers == {"efa_0": "Unknown", "mlx5_0": "InfiniBand", "mlx5_1": "Ethernet"}


def test_files_past_the_descriptor_budget_are_read_the_same(
    root: str, probes: list[IbProbe]
) -> None:
    fake_ib_fleet(root, 2)
    set_counter(root, "mlx5_1", 1, "link_downed", 3)
    held = make(probes, root).sample()
    for budget in (0, 30):
        assert make(probes, root, max_held_files=budget).sample() == held


def test_a_vanished_file_replans_at_once(root: str, probes: list[IbProbe]) -> None:
    build_hca(root, "mlx5_0")
    # Without held descriptors every read opens the file, so a removal shows as ENOENT.
    probe = make(probes, root, max_held_files=0)
    assert "VL15_dropped" in only_port(probe.sample())["counters"]
    os.remove(os.path.join(root, "class/infiniband/mlx5_0/ports/1/counters/VL15_dropped"))
    port = only_port(probe.sample())
    assert "VL15_dropped" not in port["counters"]
    assert port["counter_errors"] == {}
    assert len(port["counters"]) == 20


def test_counters_that_appear_or_go_are_followed_at_the_next_relist(
    root: str, probes: list[IbProbe]
) -> None:
    # Drivers can add counters at run time (rdma "optional counters" in hw_counters/).
    build_efa(root, "efa_0")
    probe = make(probes, root, relist_every=3)
    probe.sample()
    set_counter(root, "efa_0", 1, "rx_icrc_errors", 5, hw=True)
    os.remove(os.path.join(root, "class/infiniband/efa_0/ports/1/hw_counters/rx_drops"))
    seen = [only_port(probe.sample())["counters"] for _ in range(2)]
    # Before the relist: the held descriptor of the removed file still reads (the fake's
    # regular file lives on while open), and the new file is not known yet.
    assert "rx_icrc_errors" not in seen[0]
    assert seen[1]["rx_icrc_errors"] == 5
    assert "rx_drops" not in seen[1]
    assert len(seen[1]) == len(EFA_PORT_HW_COUNTERS)


def test_eight_hca_fleet_shape(root: str, probes: list[IbProbe]) -> None:
    names = fake_ib_fleet(root, 8)
    ports = wire(make(probes, root).sample())["ports"]
    assert [p["hca"] for p in ports] == names
    assert [p["lid"] for p in ports] == list(range(0x1A, 0x22))
    assert all(p["counter_errors"] == {} and len(p["counters"]) == 21 for p in ports)


# --- the section's ready-made JSON text --------------------------------------------------


def _generic_text(section: dict[str, Any]) -> str:
    plain = json.loads(json.dumps(section))
    return json.dumps(plain, separators=(",", ":"), allow_nan=False, ensure_ascii=False)


@pytest.mark.parametrize(
    "build",
    [
        lambda root: fake_ib_fleet(root, 8),
        lambda root: build_roce(root, "mlx5_0", mac="0c:42:a1:16:05:4c"),
        lambda root: build_efa(root, "efa_0"),  # no data counters: xmit/rcv bytes null
        lambda root: build_hca(root, "mlx5_0", state="ACTIVE", rate="fast", lid="none"),
        lambda root: build_hca(root, "mlx5_0", counters={"link_downed": "N/A (no PMA)"}),
        # Quotes and a backslash in a string of the record: escaped in the text.
        lambda root: build_hca(root, "mlx5_0", ports=2, rate='40 Gb/sec (4X "QDR" \\)'),
    ],
    ids=["fleet", "roce", "efa", "garbled", "no-pma", "two-ports"],
)
def test_the_section_carries_the_json_the_generic_encoder_writes(
    root: str, probes: list[IbProbe], build: Any
) -> None:
    build(root)
    probe = make(probes, root)
    for _ in range(2):  # the first tick parses the port attributes, the second reuses that
        section = probe.sample()
        assert isinstance(section, EncodedSection)
        assert section.json == _generic_text(section)
        line = protocol.encode(
            protocol.sample(seq=1, ts=1.0, mono=1.0, agent={}, probes={"ib": section})
        )
        assert json.loads(line)["probes"]["ib"] == json.loads(json.dumps(section))


def test_new_values_reach_the_json_text_too(root: str, probes: list[IbProbe]) -> None:
    build_hca(root, "mlx5_0")
    probe = make(probes, root)
    probe.sample()
    set_counter(root, "mlx5_0", 1, "port_xmit_data", 2**40)
    set_port_file(root, "mlx5_0", 1, "state", "1: DOWN")
    section = probe.sample()
    assert isinstance(section, EncodedSection)
    port = json.loads(section.json)["ports"][0]
    assert (port["counters"]["port_xmit_data"], port["xmit_bytes"]) == (2**40, 2**42)
    assert (port["state"], port["state_name"]) == (1, "DOWN")
    assert section.json == _generic_text(section)


def test_a_failed_read_gives_a_plain_section(root: str, probes: list[IbProbe]) -> None:
    # Read failures take the file-by-file path, which the generic encoder writes.
    build_hca(root, "mlx5_0")
    break_counter(root, "mlx5_0", 1, "symbol_error")
    section = make(probes, root).sample()
    assert not isinstance(section, EncodedSection)
    assert "symbol_error" in only_port(section)["counter_errors"]


def test_an_hca_made_again_under_its_name_is_replanned_at_the_relist(
    root: str, probes: list[IbProbe]
) -> None:
    build_hca(root, "mlx5_0", lid=0x1A)
    probe = make(probes, root, relist_every=3)
    assert only_port(probe.sample())["lid"] == 0x1A
    # Gone and back between two ticks (a driver reload), with another LID. On sysfs the old
    # descriptors fail with ENODEV at once; the fake's old files still read, so the inode
    # check of the relist is what notices.
    remove_hca(root, "mlx5_0")
    build_hca(root, "mlx5_0", lid=0x2B, pci_bus=0x7A)
    lids = [only_port(probe.sample())["lid"] for _ in range(3)]
    assert lids[-1] == 0x2B


def test_a_relist_lists_only_what_can_change_while_a_device_lives(
    root: str, probes: list[IbProbe], monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_ib_fleet(root, 2)
    build_efa(root, "efa_0")
    probe = make(probes, root, relist_every=2)
    probe.sample()
    listed: list[str] = []
    real_listdir = os.listdir

    def listdir(path: str) -> list[str]:
        listed.append(os.path.relpath(path, root))
        return real_listdir(path)

    monkeypatch.setattr(os, "listdir", listdir)
    probe.sample()  # the relist tick
    monkeypatch.undo()
    # The PMA counters/ group and the ports are made once, when a device registers: only
    # the EFA port's hw_counters/ is listed again (after looking for a counters/ there).
    assert sorted(listed) == [
        "class/infiniband",
        "class/infiniband/efa_0/ports/1/counters",
        "class/infiniband/efa_0/ports/1/hw_counters",
    ]
