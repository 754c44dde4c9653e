"""node_row: the figures of one node, read from real samples of simulated nodes."""

from __future__ import annotations

import math

import pytest

from tests.console.view.sim_fleets import Place, SimFleet, failed_section, gpu_utils, mount_used
from tidectl.agents.probes.simfaults import Fault
from tidectl.console.health import IB_ACTIVE
from tidectl.console.model import LinkState, Severity
from tidectl.console.view.rows import NO_POOL, node_row, row_age


def test_figures_come_from_the_latest_sample() -> None:
    sim = SimFleet([Place("gpu001", site="dc2", pool="h100")])
    sim.tick(3)
    state = sim.state("gpu001")
    before = state.sample
    sim.tick(1, mutate=gpu_utils([10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0, 80.0]))
    sample = state.sample
    assert before is not None and sample is not None
    gpu, ib, storage, net = (
        sample.probes.gpu,
        sample.probes.ib,
        sample.probes.storage,
        sample.probes.net,
    )
    assert gpu is not None and ib is not None and storage is not None and net is not None
    row = node_row(state)

    assert (row.name, row.site, row.pool) == ("gpu001", "dc2", "h100")
    assert row.link is LinkState.STREAMING
    assert row.health is Severity.OK and row.codes == () and row.worst is None
    assert row.gpus == len(gpu.gpus) == 8
    assert row.gpus_expected == 8
    assert row.util_pct == pytest.approx(45.0)
    used = sum(g.mem_used_bytes or 0 for g in gpu.gpus)
    total = sum(g.mem_total_bytes or 0 for g in gpu.gpus)
    assert row.mem_pct == pytest.approx(used / total * 100.0)
    assert row.hottest_c == max(g.temp_c for g in gpu.gpus if g.temp_c is not None)
    assert row.ib_total == len(ib.ports)
    assert row.ib_up == sum(p.state == IB_ACTIVE for p in ib.ports) == row.ib_total
    assert row.ib_errors_per_min == 0.0  # ports, but no errors: zero, not unknown
    fullest = max(storage.mounts, key=lambda m: m.used_fraction or 0.0)
    assert row.fs_mount == fullest.mountpoint
    assert row.fs_pct == pytest.approx((fullest.used_fraction or 0.0) * 100.0)
    # Received plus sent, per second, over the last step of the fake clock.
    assert before.probes.net is not None
    moved = sum((nic.rx_bytes or 0) + (nic.tx_bytes or 0) for nic in net.nics.values()) - sum(
        (nic.rx_bytes or 0) + (nic.tx_bytes or 0) for nic in before.probes.net.nics.values()
    )
    assert row.net_bytes_s == pytest.approx(moved / 1.0)
    assert row.sample_at == sim.now
    assert row_age(row, sim.now + 2.5) == pytest.approx(2.5)


def test_the_fullest_filesystem_wins_by_use_percent() -> None:
    sim = SimFleet(["gpu001"])
    sim.tick(1, mutate=mount_used("/scratch", 88.0))
    row = sim.row("gpu001")
    assert row.fs_mount == "/scratch"
    assert row.fs_pct == pytest.approx(88.0, abs=1e-6)


def test_a_node_without_a_sample_knows_nothing_but_its_place_and_link() -> None:
    sim = SimFleet([Place("cloud1", site="aws", pool="spot")], start=False)
    sim.fleet.on_link("cloud1", LinkState.UNREACHABLE, "connection refused")
    row = sim.row("cloud1")
    assert (row.site, row.pool) == ("aws", "spot")
    assert row.link is LinkState.UNREACHABLE
    assert row.link_error == "connection refused"
    assert row.health is Severity.UNKNOWN
    figures = (
        row.gpus,
        row.gpus_expected,
        row.util_pct,
        row.mem_pct,
        row.hottest_c,
        row.ib_up,
        row.ib_total,
        row.ib_errors_per_min,
        row.fs_pct,
        row.fs_mount,
        row.net_bytes_s,
    )
    assert figures == (None,) * len(figures)
    assert row.sample_at == -math.inf
    assert row_age(row, sim.now) is None
    assert row.codes == ("agent.link",)
    assert row.worst is not None and "connection refused" in row.worst


def test_a_node_without_a_pool_label_is_in_no_pool() -> None:
    sim = SimFleet(["gpu001"])
    assert sim.row("gpu001").pool == NO_POOL


def test_a_lost_gpu_shows_fewer_gpus_than_expected() -> None:
    sim = SimFleet(["gpu001"])
    sim.tick(2)
    sim.feeds["gpu001"].node.inject(Fault("gpu_lost", gpu=5))
    sim.tick(1)
    row = sim.row("gpu001")
    assert (row.gpus, row.gpus_expected) == (7, 8)
    assert row.health is Severity.CRITICAL
    assert row.codes == ("gpu.missing",)
    assert row.worst is not None and row.worst.startswith("1 of 8 GPUs missing (GPU 5)")


def test_codes_are_worst_first_and_listed_once() -> None:
    sim = SimFleet(["gpu001"])
    sim.tick(2)
    node = sim.feeds["gpu001"].node
    port = node.ports[0]
    # WARN: two disks over 90 % (one code, twice); CRITICAL: a port down.
    node.inject(Fault("disk_full", mount="/scratch", pct=93.0))
    node.inject(Fault("ib_down", port=port))
    node.inject(Fault("disk_full", mount="/", pct=94.0))
    sim.tick(2)
    state = sim.state("gpu001")
    row = node_row(state)
    severities = {f.code: f.severity for f in state.findings}
    assert severities["ib.port_down"] is Severity.CRITICAL
    assert severities["storage.full"] is Severity.WARN
    assert row.codes[0] == "ib.port_down"
    assert row.codes.count("storage.full") == 1  # two full mounts, one code
    ranks = [severities[code] for code in row.codes]
    assert ranks == sorted(ranks, reverse=True)
    assert row.worst is not None and port in row.worst
    assert (row.ib_up, row.ib_total) == (len(node.ports) - 1, len(node.ports))


def test_symbol_errors_give_the_worst_ports_rate_per_minute() -> None:
    sim = SimFleet(["gpu001"])
    sim.tick(2)
    state = sim.state("gpu001")
    sim.feeds["gpu001"].node.inject(Fault("symbol_errors", port=sim.feeds["gpu001"].node.ports[1]))
    sim.tick(5)
    row = node_row(state)
    worst = max(rate for port in state.rates.ib_errors.values() for rate in port.values())
    assert row.ib_errors_per_min == pytest.approx(worst * 60.0)
    assert row.ib_errors_per_min is not None and row.ib_errors_per_min > 0


def test_a_failed_probe_leaves_its_figures_unknown() -> None:
    sim = SimFleet(["gpu001"])
    sim.tick(1)
    sim.tick(1, mutate=failed_section("gpu"))
    row = sim.row("gpu001")
    assert (row.gpus, row.util_pct, row.mem_pct, row.hottest_c) == (None, None, None, None)
    assert row.ib_total is not None  # the other sections still read
    sim.tick(1, mutate=failed_section("storage"))
    row = sim.row("gpu001")
    assert (row.fs_pct, row.fs_mount) == (None, None)
    assert row.gpus == 8
