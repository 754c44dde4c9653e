"""The fleet's events, newest first, and one node in full, rendered to text by Rich."""

from __future__ import annotations

import pytest
from rich.console import Console, RenderableType

from tests.console.view.sim_fleets import (
    MIXED,
    SimFleet,
    every_gpu,
    failed_section,
    mixed_fleet,
)
from tidectl.agents.probes.simfaults import Fault
from tidectl.console.lifecycle.records import NodeRecord
from tidectl.console.lifecycle.states import NodeKind, State
from tidectl.console.model import LinkState
from tidectl.console.view.detail import node_detail
from tidectl.console.view.events import FleetEvent, events_table, fleet_events


def rendered(renderable: RenderableType, width: int = 160) -> str:
    console = Console(record=True, width=width, color_system=None)
    console.print(renderable)
    return console.export_text()


def flat(text: str) -> str:
    """Whitespace collapsed: a sentence wrapped in a table's last column reads whole again."""
    return " ".join(text.split())


@pytest.fixture(scope="module")
def mixed() -> SimFleet:
    return mixed_fleet()


# --- fleet_events -------------------------------------------------------------------------------


def test_events_are_every_nodes_newest_first(mixed: SimFleet) -> None:
    events = fleet_events(mixed.fleet)
    times = [fe.event.at for fe in events]
    assert times == sorted(times, reverse=True)
    every = {(name, e) for name, node in mixed.fleet.nodes.items() for e in node.events}
    assert {(fe.node, fe.event) for fe in events} == every
    assert len(events) == len(every)
    # The newest are the three faults, from three nodes.
    newest = events[:3]
    assert {(fe.node, fe.event.before, fe.event.after) for fe in newest} == {
        ("a2", "ok", "critical"),
        ("a3", "ok", "warn"),
        ("h1", "ok", "critical"),
    }
    assert all(fe.event.at > events[3].event.at for fe in newest)
    # Each node's own events keep their order (a merge, not a shuffle).
    for name in MIXED:
        mine = [fe.event for fe in events if fe.node == name]
        assert mine == list(mixed.fleet.nodes[name].events)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a2", {("a2", "health", "critical"), ("a2", "health", "ok"), ("a2", "link", "streaming")}),
        ("critical", {("a2", "health", "critical"), ("h1", "health", "critical")}),
        ("h1 CRITICAL", {("h1", "health", "critical")}),  # every word, any case
        ("fallen bus", {("h1", "health", "critical")}),  # words of the detail
        ("refused", {("c1", "link", "unreachable")}),
        ("unreachable streaming", set()),
    ],
)
def test_events_filtered_by_words(
    mixed: SimFleet, text: str, expected: set[tuple[str, str, str]]
) -> None:
    events = fleet_events(mixed.fleet, text)
    assert {(fe.node, fe.event.kind, fe.event.after) for fe in events} == expected
    assert len(events) == len(expected)


def test_the_limit_keeps_the_newest(mixed: SimFleet) -> None:
    every = fleet_events(mixed.fleet)
    assert len(every) > 5
    assert fleet_events(mixed.fleet, limit=5) == every[:5]
    assert (
        fleet_events(mixed.fleet, "health", limit=2)
        == [fe for fe in every if fe.event.kind == "health"][:2]
    )
    assert fleet_events(mixed.fleet, limit=1) == every[:1]
    assert fleet_events(mixed.fleet, limit=0) == []


def test_events_table_renders_every_event(mixed: SimFleet) -> None:
    events = fleet_events(mixed.fleet)
    text = rendered(events_table(events, mixed.now + 30.0), width=140)
    lines = text.splitlines()
    assert lines[0].split() == ["AGO", "NODE", "WHAT", "CHANGE", "WHY"]
    together = flat(text)
    assert "a2 health ok → critical mlx5_0/1 is DOWN" in together
    assert "c1 link connecting → unreachable connection refused by 127.0.0.1 port 22" in together
    assert together.count("connecting → streaming") == 5
    # How long ago, in the cells' units: the faults were 30 s before "now".
    fault_at = events[0].event.at
    assert f"{mixed.now + 30.0 - fault_at:.0f}s a2 health ok → critical" in together


def test_events_table_without_the_node_column(mixed: SimFleet) -> None:
    events = [FleetEvent("h1", e) for e in mixed.fleet.nodes["h1"].events]
    text = rendered(events_table(events, mixed.now, show_node=False))
    assert text.splitlines()[0].split() == ["AGO", "WHAT", "CHANGE", "WHY"]
    assert " h1 " not in text


# --- node_detail --------------------------------------------------------------------------------


def faulty_node() -> tuple[SimFleet, str]:
    sim = SimFleet(["gpu001"])
    sim.tick(2, mutate=every_gpu(util_pct=0.0))
    node = sim.feeds["gpu001"].node
    node.inject(Fault("ib_down", port=node.ports[1]))
    node.inject(Fault("disk_full", mount="/scratch", pct=95.0))
    node.inject(Fault("stale_mount", mount="/home"))
    node.inject(Fault("xid", gpu=3, code=79))
    sim.tick(2, mutate=every_gpu(util_pct=100.0))
    return sim, node.ports[1]


def test_node_detail_shows_every_section_and_the_findings_sentences() -> None:
    sim, port = faulty_node()
    state = sim.state("gpu001")
    text = rendered(node_detail(state, sim.now + 5.0))
    lines = text.splitlines()
    assert lines[0].startswith("gpu001  root@127.0.0.1:22  site dc1  ✖ crit  link streaming")
    assert "agent 0.1.0, every 1s  last sample 5s ago" in lines[1]
    headings = [line.strip() for line in lines]
    for section in ("Findings", "GPUs", "InfiniBand", "Filesystems", "Network", "Recent events"):
        assert section in headings, section
    together = flat(text)
    assert len(state.findings) >= 5
    for finding in state.findings:
        assert f"{finding.code} {finding.subject or ''}".strip() in together
        assert flat(finding.message) in together
    by_first_word = {line.split()[0]: line for line in lines if line.strip()}
    # A row per GPU, with its utilisation history (0 %, then 100 %) and now.
    for index in range(8):
        assert str(index) in by_first_word
    gpu0 = by_first_word["0"]
    assert "▁▁██" in gpu0 and "100%" in gpu0 and "80G" in gpu0
    # The port that is down, the full disk, the stale mount, the NIC.
    assert by_first_word[port].split()[1:3] == ["DOWN", "Disabled"]
    assert by_first_word["/scratch"].split()[-3] == "95%"
    assert by_first_word["/home"].split()[-1] == "stale"
    assert by_first_word["eth0"].split()[1:4] == ["up", "100000", "Mb/s"]
    # The latest events, newest first: the faults turned the node critical.
    events = text.split("Recent events", 1)[1]
    assert flat(events).startswith("AGO WHAT CHANGE WHY")
    assert "health ok → critical" in flat(events)


def test_an_xid_shows_on_its_gpu_in_the_sample_that_reported_it() -> None:
    sim = SimFleet(["gpu001"])
    sim.tick(2)
    sim.feeds["gpu001"].node.inject(Fault("xid", gpu=3, code=79))
    sim.tick(1)
    lines = rendered(node_detail(sim.state("gpu001"), sim.now)).splitlines()
    rows = {line.split()[0]: line for line in lines if line.strip()}
    assert rows["3"].split()[-1] == "79"
    assert rows["2"].split()[-1] == "-"


def test_detail_of_a_node_never_heard_from() -> None:
    sim = SimFleet(["cloud1"], silent=["cloud1"])
    sim.fleet.on_link("cloud1", LinkState.UNREACHABLE, "connection refused")
    text = rendered(node_detail(sim.state("cloud1"), sim.now))
    assert "? unknown  link unreachable (connection refused)" in text
    assert "no sample yet" in text
    for section in ("GPUs", "InfiniBand", "Filesystems", "Network"):
        assert section not in text
    assert "agent.link" in text
    assert "connecting → unreachable" in text


def test_detail_of_a_failed_probe_says_so() -> None:
    sim = SimFleet(["gpu001"])
    sim.tick(1)
    sim.tick(1, mutate=failed_section("gpu"))
    text = rendered(node_detail(sim.state("gpu001"), sim.now))
    assert "GPUs: EIO" in text
    assert "InfiniBand" in text  # the other sections still show


def test_a_node_the_store_knows_shows_its_lifecycle_under_the_title() -> None:
    sim, _ = faulty_node()
    state = sim.state("gpu001")
    record = NodeRecord(
        name="gpu001",
        kind=NodeKind.CLOUD,
        pool="burst",
        state=State.DRAINING,
        state_since=1000.0,
        instance_id="i-0abc",
        intent_id="in-1",
        created_at=900.0,
        updated_at=1000.0,
        price_per_hour=24.0,
    )
    lines = rendered(node_detail(state, sim.now, record, wall_now=1180.0)).splitlines()
    assert lines[2] == (
        "Lifecycle draining for 3m  (cloud, pool burst, instance i-0abc, $24.00/h)"
    )  # under the title
    assert not any(
        line.startswith("Lifecycle") for line in rendered(node_detail(state, sim.now)).splitlines()
    )
