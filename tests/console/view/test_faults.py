"""fault_choices: faults aimed at what the node has, in lines the simulator reads and obeys."""

from __future__ import annotations

import pytest

from tests.console.test_health import Record
from tests.console.view.sim_fleets import SimFleet
from tidectl.agents.probes.simfaults import Fault, parse_line
from tidectl.console.fleet import NodeState
from tidectl.console.view.faults import FaultChoice, fault_choices

#: The finding each fault kind must give on the node it is aimed at.
FINDING = {
    "xid": "gpu.xid",
    "ecc_dbe": "gpu.ecc_dbe",
    "hot": "gpu.temp",
    "gpu_lost": "gpu.missing",
    "ib_down": "ib.port_down",
    "symbol_errors": "ib.symbol_errors",
    "disk_full": "storage.full",
    "stale_mount": "storage.stale_mount",
}


def parsed(choice: FaultChoice) -> Fault:
    rule = parse_line(choice.fault)
    assert isinstance(rule, Fault), choice
    return rule


def targets(state: NodeState) -> tuple[list[int], list[str], list[str]]:
    assert state.sample is not None
    probes = state.sample.probes
    assert probes.gpu is not None and probes.ib is not None and probes.storage is not None
    return (
        [g.index for g in probes.gpu.gpus],
        [p.key for p in probes.ib.ports],
        [m.mountpoint for m in probes.storage.mounts],
    )


def started() -> SimFleet:
    sim = SimFleet(["gpu001"])
    sim.tick(2)
    return sim


def test_choices_are_aimed_at_the_nodes_own_parts() -> None:
    sim = started()
    state = sim.state("gpu001")
    gpus, ports, mounts = targets(state)
    choices = fault_choices(state)
    faults = [parsed(choice) for choice in choices]
    assert {f.kind for f in faults} == set(FINDING)  # one of each kind the sim knows
    for fault in faults:
        if fault.gpu is not None:
            assert fault.gpu in gpus
        if fault.port is not None:
            assert fault.port in ports
        if fault.mount is not None:
            assert fault.mount in mounts
    by_kind = {f.kind: f for f in faults}
    assert by_kind["xid"].gpu == gpus[0] and by_kind["xid"].code == 79
    assert by_kind["gpu_lost"].gpu == gpus[-1]
    assert by_kind["ib_down"].port == ports[0]
    assert by_kind["symbol_errors"].port == ports[-1]
    assert by_kind["disk_full"].mount == "/scratch"  # a local disk: it can fill up
    assert by_kind["stale_mount"].mount == "/home"  # a network one: it can go stale
    # Labels are for people: each names its target.
    for choice, fault in zip(choices, faults, strict=True):
        named = f"GPU {fault.gpu}" if fault.gpu is not None else fault.target
        assert named in choice.label, choice
    assert len({c.label for c in choices}) == len(choices)


def test_choices_follow_the_latest_sample() -> None:
    sim = started()
    sim.feeds["gpu001"].node.inject(Fault("gpu_lost", gpu=7))

    def no_network_mounts(record: Record) -> None:
        storage = record["probes"]["storage"]
        storage["mounts"] = [m for m in storage["mounts"] if m["kind"] == "local"]

    sim.tick(1, mutate=no_network_mounts)
    faults = {parsed(c).kind: parsed(c) for c in fault_choices(sim.state("gpu001"))}
    assert faults["gpu_lost"].gpu == 6  # GPU 7 is gone: the last one left
    assert faults["hot"].gpu == 6
    assert "stale_mount" not in faults  # no network mount to go stale
    assert faults["disk_full"].mount == "/scratch"


def test_a_node_without_a_sample_has_no_choices() -> None:
    sim = SimFleet(["gpu001"])  # said hello, sent nothing yet
    assert sim.state("gpu001").hello is not None
    assert fault_choices(sim.state("gpu001")) == []


def test_a_failed_gpu_probe_offers_no_gpu_faults() -> None:
    sim = started()

    def gpu_failed(record: Record) -> None:
        record["probes"]["gpu"] = {"error": "nvmlInit took 5 s", "timed_out": True}

    sim.tick(1, mutate=gpu_failed)
    kinds = {parsed(c).kind for c in fault_choices(sim.state("gpu001"))}
    assert kinds == {"ib_down", "symbol_errors", "disk_full", "stale_mount"}


@pytest.mark.parametrize("kind", sorted(FINDING))
def test_every_choice_does_what_it_says_on_the_node(kind: str) -> None:
    sim = started()
    state = sim.state("gpu001")
    fault = next(parsed(c) for c in fault_choices(state) if parsed(c).kind == kind)
    sim.feeds["gpu001"].node.inject(fault)
    subject = f"gpu{fault.gpu}" if fault.gpu is not None else fault.target
    # Most faults show in the next sample; a GPU heats up over a minute or so.
    for _ in range(180):
        sim.tick(1)
        if any(f.code == FINDING[kind] and f.subject == subject for f in state.findings):
            break
    else:
        raise AssertionError(f"{fault.canonical()} gave no {FINDING[kind]}: {state.findings}")
