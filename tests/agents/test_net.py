"""The net probe: /proc/net/dev counters and sysfs link state, on fakes and on this machine."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import pytest

from tests.fakes.procfs import (
    DevCounters,
    FakeProc,
    FakeSysNet,
    Nic,
    einval_reader,
    net_dev_text,
)
from tidectl.agents.probes import fsread
from tidectl.agents.probes import net as netmod
from tidectl.agents.probes.net import REFRESH_EVERY, NetProbe, parse_net_dev, parse_speed

#: One NIC of the sample, exactly as docs/agent-protocol.md lists it.
NIC_KEYS = [
    "rx_bytes",
    "tx_bytes",
    "rx_packets",
    "tx_packets",
    "rx_errors",
    "tx_errors",
    "rx_drops",
    "tx_drops",
    "operstate",
    "carrier",
    "speed_mbps",
]
FACT_KEYS = ["name", "mac", "mtu", "speed_mbps", "driver"]

NICS = [
    Nic("lo", "00:00:00:00:00:00", 65536, "unknown", 1, None),
    Nic("ens1f0np0", "b8:3f:d2:0a:11:20", 9000, "up", 1, 200000, "0000:17:00.0", "mlx5_core"),
    Nic("ens1f1np1", "b8:3f:d2:0a:11:21", 1500, "down", None, None, "0000:17:00.1", "mlx5_core"),
    Nic("eno1", "3c:ec:ef:5b:20:10", 1500, "up", 1, 1000, "0000:03:00.0", "igb"),
    Nic("bond0", "b8:3f:d2:0a:11:20", 9000, "up", 1, 400000),
    Nic("docker0", "02:42:9d:3c:55:01", 1500, "down", 0, -1),
]

COUNTERS = {
    "lo": DevCounters(3193, 29, 0, 0, 3193, 29, 0, 0),
    "ens1f0np0": DevCounters(98765432109876, 81234567890, 3, 17, 12345678901234, 9876543210, 0, 2),
    "ens1f1np1": DevCounters(),
    "eno1": DevCounters(91303404, 252400, 0, 1, 144303, 1434, 0, 0),
    "bond0": DevCounters(98765432109876, 81234567890, 3, 17, 12345678901234, 9876543210, 0, 2),
    "docker0": DevCounters(),
}


@pytest.fixture
def fakes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[FakeProc, FakeSysNet]:
    proc = FakeProc(tmp_path / "proc")
    proc.write("net/dev", net_dev_text(COUNTERS))
    sysfs = FakeSysNet(tmp_path / "sys")
    for nic in NICS:
        sysfs.add_nic(nic)
    # A down link fails read() of speed and carrier with EINVAL, as the kernel does.
    monkeypatch.setattr(netmod, "read_text", einval_reader(fsread.read_text, sysfs.einval))
    return proc, sysfs


def test_net_dev_parser_real_layout_and_glued_counters() -> None:
    text = net_dev_text(COUNTERS)
    rows = parse_net_dev(text)
    assert list(rows) == list(COUNTERS)
    assert rows["ens1f0np0"] == {
        "rx_bytes": 98765432109876,
        "tx_bytes": 12345678901234,
        "rx_packets": 81234567890,
        "tx_packets": 9876543210,
        "rx_errors": 3,
        "tx_errors": 0,
        "rx_drops": 17,
        "tx_drops": 2,
    }
    # Old kernels print "%6s:%8lu": a long name and a big counter touch the colon.
    glued = text.replace("  eno1: 91303404", "eno1:91303404")
    assert "eno1:91303404" in glued
    assert parse_net_dev(glued)["eno1"]["rx_bytes"] == 91303404


def test_speed_parser() -> None:
    assert parse_speed("200000") == 200000
    assert parse_speed("-1") is None  # SPEED_UNKNOWN
    assert parse_speed("4294967295") is None  # SPEED_UNKNOWN printed unsigned
    assert parse_speed("0") is None
    with pytest.raises(ValueError):
        parse_speed("")


def test_sample(fakes: tuple[FakeProc, FakeSysNet]) -> None:
    proc, sysfs = fakes
    section = NetProbe(proc_root=proc.path, sysfs_root=sysfs.path).sample()
    assert list(section) == ["nics"]
    nics = section["nics"]
    assert list(nics) == ["ens1f0np0", "ens1f1np1", "eno1", "bond0", "docker0"]  # no lo
    assert [list(n) for n in nics.values()] == [NIC_KEYS] * 5
    assert nics["ens1f0np0"] == {
        "rx_bytes": 98765432109876,
        "tx_bytes": 12345678901234,
        "rx_packets": 81234567890,
        "tx_packets": 9876543210,
        "rx_errors": 3,
        "tx_errors": 0,
        "rx_drops": 17,
        "tx_drops": 2,
        "operstate": "up",
        "carrier": True,
        "speed_mbps": 200000,
    }
    down = nics["ens1f1np1"]
    assert (down["operstate"], down["carrier"], down["speed_mbps"]) == ("down", None, None)
    docker = nics["docker0"]
    assert (docker["operstate"], docker["carrier"], docker["speed_mbps"]) == ("down", False, None)
    assert nics["bond0"]["speed_mbps"] == 400000
    json.dumps(section, allow_nan=False)


def test_einval_on_speed_is_not_an_error(fakes: tuple[FakeProc, FakeSysNet]) -> None:
    proc, sysfs = fakes
    speed = str(sysfs.root / "class" / "net" / "ens1f1np1" / "speed")
    assert speed in sysfs.einval
    with pytest.raises(OSError) as caught:
        einval_reader(fsread.read_text, sysfs.einval)(speed)
    assert caught.value.errno == errno.EINVAL
    nic = NetProbe(proc_root=proc.path, sysfs_root=sysfs.path).sample()["nics"]["ens1f1np1"]
    assert nic["speed_mbps"] is None
    assert "field_errors" not in nic


def test_other_read_failures_are_named(fakes: tuple[FakeProc, FakeSysNet]) -> None:
    proc, sysfs = fakes
    sysfs.remove_nic("eno1")  # gone from sysfs (another netns mounted there) but in net/dev
    nic = NetProbe(proc_root=proc.path, sysfs_root=sysfs.path).sample()["nics"]["eno1"]
    assert nic["rx_bytes"] == 91303404
    assert (nic["operstate"], nic["carrier"], nic["speed_mbps"]) == (None, None, None)
    assert set(nic["field_errors"]) == {"operstate", "carrier", "speed_mbps"}
    assert nic["field_errors"]["speed_mbps"].startswith("FileNotFoundError: ")


def test_facts(fakes: tuple[FakeProc, FakeSysNet]) -> None:
    proc, sysfs = fakes
    facts = NetProbe(proc_root=proc.path, sysfs_root=sysfs.path).facts()
    assert list(facts) == ["nics"]
    nics = {n["name"]: n for n in facts["nics"]}
    assert sorted(nics) == ["bond0", "docker0", "eno1", "ens1f0np0", "ens1f1np1"]
    assert [list(n) for n in facts["nics"]] == [FACT_KEYS] * 5
    assert nics["ens1f0np0"] == {
        "name": "ens1f0np0",
        "mac": "b8:3f:d2:0a:11:20",
        "mtu": 9000,
        "speed_mbps": 200000,
        "driver": "mlx5_core",
    }
    assert nics["ens1f1np1"]["speed_mbps"] is None
    assert nics["eno1"]["driver"] == "igb"
    assert nics["bond0"]["driver"] is None  # virtual: no device link
    json.dumps(facts, allow_nan=False)


def test_ignore_patterns(fakes: tuple[FakeProc, FakeSysNet]) -> None:
    proc, sysfs = fakes
    probe = NetProbe(proc_root=proc.path, sysfs_root=sysfs.path, ignore=("lo", "docker*", "bond?"))
    assert list(probe.sample()["nics"]) == ["ens1f0np0", "ens1f1np1", "eno1"]
    assert [n["name"] for n in probe.facts()["nics"]] == ["eno1", "ens1f0np0", "ens1f1np1"]


def test_interfaces_that_appear_later_are_sampled(fakes: tuple[FakeProc, FakeSysNet]) -> None:
    proc, sysfs = fakes
    probe = NetProbe(proc_root=proc.path, sysfs_root=sysfs.path)
    assert "ib0" not in probe.sample()["nics"]
    sysfs.add_nic(
        Nic("ib0", "00:00:10:29:fe:80", 4092, "up", 1, 400000, "0000:b1:00.0", "mlx5_core")
    )
    proc.write("net/dev", net_dev_text({**COUNTERS, "ib0": DevCounters(10, 1, 0, 0, 20, 2, 0, 0)}))
    assert probe.sample()["nics"]["ib0"]["speed_mbps"] == 400000


# --- this machine ----------------------------------------------------------------------------


def _real_read(path: str) -> tuple[str | None, int | None]:
    try:
        return fsread.read_text(path), None
    except OSError as exc:
        return None, exc.errno


def test_real_machine_matches_sysfs() -> None:
    section = NetProbe().sample()
    assert "lo" not in section["nics"]
    for name, nic in section["nics"].items():
        assert list(nic)[: len(NIC_KEYS)] == NIC_KEYS
        base = os.path.join("/sys/class/net", name)
        text, err = _real_read(base + "/speed")
        if err == errno.EINVAL:  # a down link on the real kernel
            assert nic["speed_mbps"] is None
            assert "speed_mbps" not in nic.get("field_errors", {})
        elif text is not None:
            assert nic["speed_mbps"] == (int(text) if int(text) > 0 else None)
        assert nic["operstate"] == fsread.read_text(base + "/operstate")


def test_real_einval_from_a_down_link() -> None:
    down = [
        name
        for name in os.listdir("/sys/class/net")
        if _real_read(os.path.join("/sys/class/net", name, "speed"))[1] == errno.EINVAL
    ]
    if not down:
        pytest.skip("no interface with a down link on this machine")
    facts = {n["name"]: n for n in NetProbe().facts()["nics"]}
    for name in down:
        if name in facts:
            assert facts[name]["speed_mbps"] is None
            assert "field_errors" not in facts[name]


def test_reads_per_sample_are_few_and_speed_is_refreshed(
    fakes: tuple[FakeProc, FakeSysNet], monkeypatch: pytest.MonkeyPatch
) -> None:
    proc, sysfs = fakes
    reads: list[str] = []
    inner = einval_reader(fsread.read_text, sysfs.einval)  # what the fixture installed

    def counting(path: str) -> str:
        reads.append(os.path.relpath(path, sysfs.path))
        return inner(path)

    monkeypatch.setattr(netmod, "read_text", counting)
    # operstate is read through a held descriptor (fsread.HeldFile), not by path.
    held_read = fsread.HeldFile.read

    def counting_held(self: fsread.HeldFile) -> bytes:
        reads.append(os.path.relpath(self.path, sysfs.path))
        return held_read(self)

    monkeypatch.setattr(fsread.HeldFile, "read", counting_held)
    opened: list[str] = []
    real_open = os.open

    def counting_open(path: str, flags: int, mode: int = 0o777) -> int:
        opened.append(os.path.relpath(path, sysfs.path))
        return real_open(path, flags, mode)

    probe = NetProbe(proc_root=proc.path, sysfs_root=sysfs.path)
    monkeypatch.setattr(os, "open", counting_open)
    probe.sample()
    # An up link's carrier is never read: the kernel says "up" only with a carrier. A down
    # link's is: down may be "no cable" (0) or "admin down" (EINVAL).
    assert "class/net/ens1f0np0/carrier" not in reads
    assert "class/net/docker0/carrier" in reads
    reads.clear()
    opened.clear()
    second = probe.sample()["nics"]
    monkeypatch.setattr(os, "open", real_open)
    # Then, while nothing changes, one read per interface: operstate, from a descriptor
    # held since the first sample, so no file at all is opened.
    sysfs_reads = sorted(r for r in reads if r.startswith("class/"))
    assert sysfs_reads == sorted(f"class/net/{n}/operstate" for n in second)
    assert [path for path in opened if path.startswith("class/")] == []
    assert second["ens1f0np0"]["carrier"] is True
    assert second["docker0"]["carrier"] is False

    # A new speed on the same operstate shows within REFRESH_EVERY samples...
    (sysfs.root / "devices/pci0000:00/0000:03:00.0/net/eno1/speed").write_text("100\n")
    speeds = [probe.sample()["nics"]["eno1"]["speed_mbps"] for _ in range(REFRESH_EVERY)]
    assert speeds[-1] == 100
    assert speeds[0] == 1000
    # ...and at once when the link changes state.
    devdir = sysfs.root / "devices/pci0000:00/0000:17:00.1/net/ens1f1np1"
    (devdir / "operstate").write_text("up\n")
    (devdir / "carrier").write_text("1\n")
    (devdir / "speed").write_text("200000\n")
    monkeypatch.setattr(netmod, "read_text", fsread.read_text)  # the link is no longer down
    nic = probe.sample()["nics"]["ens1f1np1"]
    assert (nic["operstate"], nic["carrier"], nic["speed_mbps"]) == ("up", True, 200000)


# --- held operstate files --------------------------------------------------------------------


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_a_name_taken_by_another_device_is_read_from_the_new_one(
    fakes: tuple[FakeProc, FakeSysNet],
) -> None:
    proc, sysfs = fakes
    probe = NetProbe(proc_root=proc.path, sysfs_root=sysfs.path)
    try:
        assert probe.sample()["nics"]["eno1"]["operstate"] == "up"
        # udev renames eno1 and another device takes the name (ifindex order changes, so
        # the list of /proc/net/dev does). The held descriptor still reads the old device.
        sysfs.add_nic(Nic("eno1", mtu=1500, operstate="down", carrier=0, speed=None))
        renamed = dict(COUNTERS)
        old = renamed.pop("eno1")
        renamed["enp3s0"] = old
        renamed["eno1"] = DevCounters(1, 1, 0, 0, 1, 1, 0, 0)
        proc.write("net/dev", net_dev_text(renamed))
        sysfs.add_nic(
            Nic("enp3s0", "3c:ec:ef:5b:20:10", 1500, "up", 1, 1000, "0000:03:00.0", "igb")
        )
        nics = probe.sample()["nics"]
        assert (nics["eno1"]["operstate"], nics["eno1"]["rx_bytes"]) == ("down", 1)
        assert nics["enp3s0"]["operstate"] == "up"
    finally:
        probe.close()


def test_operstate_changes_are_seen_through_the_held_descriptor(
    fakes: tuple[FakeProc, FakeSysNet],
) -> None:
    proc, sysfs = fakes
    probe = NetProbe(proc_root=proc.path, sysfs_root=sysfs.path)
    try:
        probe.sample()
        devdir = sysfs.root / "devices/pci0000:00/0000:03:00.0/net/eno1"
        (devdir / "operstate").write_text("lowerlayerdown\n")  # in place, like sysfs
        (devdir / "carrier").write_text("0\n")
        nic = probe.sample()["nics"]["eno1"]
        assert (nic["operstate"], nic["carrier"]) == ("lowerlayerdown", False)
    finally:
        probe.close()


def test_a_vanished_interface_releases_its_descriptor(fakes: tuple[FakeProc, FakeSysNet]) -> None:
    proc, sysfs = fakes
    before = _fds()
    probe = NetProbe(proc_root=proc.path, sysfs_root=sysfs.path)
    probe.sample()
    assert _fds() == before + 1 + 5  # /proc/net/dev, and operstate of each interface but lo
    fewer = {name: counters for name, counters in COUNTERS.items() if name != "docker0"}
    proc.write("net/dev", net_dev_text(fewer))
    assert "docker0" not in probe.sample()["nics"]
    assert _fds() == before + 1 + 4
    probe.close()
    assert _fds() == before


def test_past_the_descriptor_budget_interfaces_are_read_by_path(
    fakes: tuple[FakeProc, FakeSysNet], monkeypatch: pytest.MonkeyPatch
) -> None:
    proc, sysfs = fakes
    monkeypatch.setattr(netmod, "MAX_HELD_FILES", 2)
    before = _fds()
    probe = NetProbe(proc_root=proc.path, sysfs_root=sysfs.path)
    capped = probe.sample()
    assert _fds() == before + 1 + 2
    probe.close()
    unlimited = NetProbe(proc_root=proc.path, sysfs_root=sysfs.path)
    assert unlimited.sample() == capped
    unlimited.close()
