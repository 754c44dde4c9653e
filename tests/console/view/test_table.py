"""The fleet table's model over real fleets: sorts, reverse, groups, folds, updates, counts."""

from __future__ import annotations

import pytest

from tests.console.test_health import Record
from tests.console.view.sim_fleets import (
    MIXED,
    Place,
    SimFleet,
    all_mounts_used,
    chain,
    every_gpu,
    gpu_mem_used,
    mixed_fleet,
    nic_rate,
    numbered,
)
from tidectl.agents.probes.simfaults import Fault
from tidectl.console.model import LinkState
from tidectl.console.view.filter import FilterError
from tidectl.console.view.table import SORT_ORDER, SORTS, FleetTableModel, GroupBy, Line

#: How far up each figure of ``ranked_fleet`` puts a node; sim12 never samples.
RANK = {"sim1": 2, "sim2": 4, "sim9": 3, "sim10": 3, "sim11": 1}
RANKED = ["sim1", "sim2", "sim9", "sim10", "sim11", "sim12"]
#: Biggest figure first, sim9 and sim10 tied (natural order: 9 before 10), no figure last.
DESCENDING = ["sim2", "sim9", "sim10", "sim1", "sim11", "sim12"]


def ranked_fleet() -> SimFleet:
    """Every figure of a node grows with its RANK: GPUs, util, memory, temperature, IB
    errors, fullest filesystem, network; sim2 sampled last, sim11 first, sim12 never."""
    sim = SimFleet([Place(name) for name in RANKED], silent=["sim12"])
    sim.fleet.on_link("sim12", LinkState.UNREACHABLE, "timed out")
    edits = {
        name: chain(
            every_gpu(util_pct=20.0 * rank, temp_c=40.0 + 10.0 * rank),
            gpu_mem_used(rank / 10.0),
            all_mounts_used(20.0 * rank),
            nic_rate(rank * 1e6),
        )
        for name, rank in RANK.items()
    }
    for name, rank in RANK.items():
        node = sim.feeds[name].node
        node.inject(Fault("symbol_errors", port=node.ports[0], rate=float(rank)))
        for lost in range(4 - rank):
            node.inject(Fault("gpu_lost", gpu=7 - lost))
    sim.tick(3, mutate=edits)
    sim.tick(1, only=["sim1", "sim2", "sim9", "sim10"], mutate=edits)
    sim.tick(1, only=["sim2"], mutate=edits)
    return sim


@pytest.fixture(scope="module")
def ranked() -> SimFleet:
    return ranked_fleet()


@pytest.fixture(scope="module")
def mixed() -> SimFleet:
    return mixed_fleet()


def model_of(sim: SimFleet) -> FleetTableModel:
    model = FleetTableModel()
    model.load(sim.fleet)
    return model


def names(model: FleetTableModel) -> list[str]:
    return [row.name for line in model.lines() for row in line.rows]


# --- sorting ------------------------------------------------------------------------------------

#: Every sort key: the fleet it is checked on and the order it must give.
EXPECTED: dict[str, tuple[str, list[str]]] = {
    "name": ("ranked", RANKED),
    "health": ("mixed", ["a2", "h1", "a3", "c1", "a1", "h2"]),  # crit, warn, unknown, ok
    # Most findings first, then by code (agent.*, gpu.*, ...), no findings last.
    "findings": ("mixed", ["a2", "c1", "h1", "a3", "a1", "h2"]),
    "site": ("mixed", ["c1", "a1", "a2", "a3", "h1", "h2"]),  # aws, dc1/a100, dc2/h100
    "gpus": ("ranked", DESCENDING),
    "util": ("ranked", DESCENDING),
    "mem": ("ranked", DESCENDING),
    "temp": ("ranked", DESCENDING),
    "ib": ("ranked", DESCENDING),
    "fs": ("ranked", DESCENDING),
    "net": ("ranked", DESCENDING),
    # The oldest sample first; never sampled is the oldest of all (its AGE reads "-").
    "age": ("ranked", ["sim12", "sim11", "sim1", "sim9", "sim10", "sim2"]),
    "link": ("links", []),  # test_sort_by_link_puts_broken_links_first
    "life": ("links", []),  # tests/console/view/test_life.py
}


def test_every_sort_key_has_an_expected_order() -> None:
    assert set(EXPECTED) == set(SORTS) == set(SORT_ORDER)


def test_the_ranked_fleet_has_the_figures_it_claims(ranked: SimFleet) -> None:
    rows = {name: ranked.row(name) for name in RANKED}
    assert rows["sim2"].gpus == 8 and rows["sim11"].gpus == 5 and rows["sim12"].gpus is None
    assert rows["sim9"].util_pct == rows["sim10"].util_pct == 60.0
    assert rows["sim9"].ib_errors_per_min == rows["sim10"].ib_errors_per_min
    assert rows["sim9"].net_bytes_s == pytest.approx(3e6)


@pytest.mark.parametrize("key", [k for k, (fleet, _) in EXPECTED.items() if fleet != "links"])
def test_sort_orders_most_interesting_first_missing_last_ties_by_natural_name(
    key: str, ranked: SimFleet, mixed: SimFleet
) -> None:
    fleet, expected = EXPECTED[key]
    model = model_of(ranked if fleet == "ranked" else mixed)
    model.set_sort(key)
    assert names(model) == expected
    assert [row.name for row in model.visible] == expected
    model.set_sort(key, reverse=True)
    assert names(model) == expected[::-1]


def test_sort_by_link_puts_broken_links_first() -> None:
    # One node per state, named in declaration order, so neither names nor the states'
    # words give the expected order; n11 ties n10 (streaming) and sorts after it.
    states = list(LinkState)
    sim = SimFleet(numbered("n", len(states) + 1), start=False)
    for i, state in enumerate([*states, LinkState.STREAMING], 1):
        if state is not LinkState.CONNECTING:  # every node starts connecting
            sim.fleet.on_link(f"n{i}", state)
    by_state = {state: f"n{i}" for i, state in enumerate(states, 1)}
    model = model_of(sim)
    model.set_sort("link")
    expected_states = [
        LinkState.HOST_KEY_MISMATCH,
        LinkState.AUTH_FAILED,
        LinkState.AGENT_FAILED,
        LinkState.UNREACHABLE,
        LinkState.STALE,
        LinkState.CONNECTING,
        LinkState.DEPLOYING,
        LinkState.CONNECTED,
        LinkState.STOPPED,
        LinkState.STREAMING,
    ]
    assert set(expected_states) == set(LinkState)
    assert names(model) == [by_state[s] for s in expected_states] + [f"n{len(states) + 1}"]


def test_sort_by_gpus_puts_unknown_below_none() -> None:
    # b1 never sampled (unknown), b2's driver is gone (no GPUs): known zero sorts first.
    sim = SimFleet(["b1", "b2", "b3"], silent=["b1"])

    def driver_gone(record: Record) -> None:
        record["probes"]["gpu"] = {"source": None, "gpus": [], "no_driver": "no libnvidia-ml"}

    sim.tick(2, mutate={"b2": driver_gone})
    assert (sim.row("b1").gpus, sim.row("b2").gpus, sim.row("b3").gpus) == (None, 0, 8)
    model = model_of(sim)
    model.set_sort("gpus")
    assert names(model) == ["b3", "b2", "b1"]


def test_bad_sort_key_is_refused_with_the_columns_and_the_old_sort_stays() -> None:
    model = FleetTableModel()
    model.set_sort("util")
    with pytest.raises(ValueError, match="no column 'colour' to sort by; columns: name, health"):
        model.set_sort("colour")
    assert model.sort == "util"


def test_cycle_sort_visits_every_key_and_wraps(ranked: SimFleet) -> None:
    model = model_of(ranked)
    model.set_sort(SORT_ORDER[0])
    seen = [model.cycle_sort() for _ in SORT_ORDER]
    assert seen == [*SORT_ORDER[1:], SORT_ORDER[0]]
    model.set_sort("name")
    model.toggle_reverse()
    assert names(model) == RANKED[::-1]
    model.toggle_reverse()
    assert names(model) == RANKED


# --- grouping -----------------------------------------------------------------------------------


def test_group_by_site_heads_each_site_with_its_count(mixed: SimFleet) -> None:
    model = model_of(mixed)
    model.set_sort("health")
    assert model.cycle_group() is GroupBy.SITE
    lines = model.lines()
    assert [(line.kind, line.label) for line in lines] == [
        ("group", "site aws: 1 nodes"),
        ("node", "c1"),
        ("group", "site dc1: 3 nodes"),
        ("node", "a2"),  # inside a group, still by health
        ("node", "a3"),
        ("node", "a1"),
        ("group", "site dc2: 2 nodes"),
        ("node", "h1"),
        ("node", "h2"),
    ]
    assert lines[2].key == "group:site:dc1"
    assert lines[2].rows == ()


def test_group_by_pool(mixed: SimFleet) -> None:
    model = model_of(mixed)
    model.set_sort("name")
    model.group = GroupBy.POOL
    headings = [line.label for line in model.lines() if line.kind == "group"]
    assert headings == ["pool -: 1 nodes", "pool a100: 3 nodes", "pool h100: 2 nodes"]
    model.set_filter("!h:ok")
    headings = [line.label for line in model.lines() if line.kind == "group"]
    # Counts are of the nodes shown; a pool with none shown has no heading.
    assert headings == ["pool -: 1 nodes", "pool a100: 2 nodes", "pool h100: 1 nodes"]
    model.set_filter("pool:h100 h:ok")
    assert [line.label for line in model.lines()] == ["pool h100: 1 nodes", "h2"]
    assert model.cycle_group() is GroupBy.NONE
    assert [line.kind for line in model.lines()] == ["node"]


# --- folding ------------------------------------------------------------------------------------


def folding_fleet() -> SimFleet:
    """n1-n12 and m1, healthy on two sites, except n5 (an IB port down), n7 and n8 (a full
    disk) and n9 (symbol errors: as bad as a full disk, but another finding)."""
    sim = SimFleet(
        [Place(f"n{i}", site="dc1" if i <= 6 else "dc2") for i in range(1, 13)]
        + [Place("m1", site="dc1")],  # another prefix, healthy too
    )
    sim.tick(2)
    n5 = sim.feeds["n5"].node
    n5.inject(Fault("ib_down", port=n5.ports[0]))
    for name in ("n7", "n8"):
        sim.feeds[name].node.inject(Fault("disk_full", mount="/scratch", pct=93.0))
    n9 = sim.feeds["n9"].node
    n9.inject(Fault("symbol_errors", port=n9.ports[0], rate=4.0))
    sim.tick(3)
    return sim


@pytest.fixture(scope="module")
def folding() -> SimFleet:
    return folding_fleet()


def summary(lines: list[Line]) -> list[tuple[str, str, int]]:
    return [(line.kind, line.label, len(line.rows)) for line in lines]


def test_identical_nodes_fold_and_exceptions_stay_single(folding: SimFleet) -> None:
    model = model_of(folding)
    model.set_sort("health")
    assert model.toggle_fold() is True
    lines = model.lines()
    # Worst first; healthy nodes fold by site (a fold is one place), whatever their prefix.
    assert summary(lines) == [
        ("node", "n5", 1),
        ("fold", "n[7-8]", 2),
        ("node", "n9", 1),  # warn too, but with another finding: not folded with n7, n8
        ("fold", "m1,n[1-4,6]", 6),
        ("fold", "n[10-12]", 3),
    ]
    assert lines[1].key == "fold:n[7-8]"
    assert lines[0].key == "n5"
    assert [row.name for row in lines[3].rows] == ["m1", "n1", "n2", "n3", "n4", "n6"]
    assert model.counts() == {"nodes": 13, "shown": 13}
    assert model.toggle_fold() is False
    assert [line.kind for line in model.lines()] == ["node"] * 13


def test_folds_stay_inside_their_group(folding: SimFleet) -> None:
    model = model_of(folding)
    model.set_sort("name")
    model.toggle_fold()
    model.cycle_group()
    assert summary(model.lines()) == [
        ("group", "site dc1: 7 nodes", 0),
        ("fold", "m1,n[1-4,6]", 6),  # where its first member (m1) sorts
        ("node", "n5", 1),
        ("group", "site dc2: 6 nodes", 0),
        ("fold", "n[7-8]", 2),
        ("node", "n9", 1),
        ("fold", "n[10-12]", 3),
    ]


def test_a_filter_narrows_folds_and_counts(folding: SimFleet) -> None:
    model = model_of(folding)
    model.toggle_fold()
    model.set_filter("n[1-10] h:ok")
    assert summary(model.lines()) == [("fold", "n[1-4,6]", 5), ("node", "n10", 1)]
    assert model.counts() == {"nodes": 13, "shown": 6}


def test_one_node_alike_to_none_is_a_node_line_not_a_fold_of_one(folding: SimFleet) -> None:
    model = model_of(folding)
    model.toggle_fold()
    model.set_filter("n7,n5")
    assert summary(model.lines()) == [("node", "n5", 1), ("node", "n7", 1)]


# --- updates and the filter's errors --------------------------------------------------------------


def test_update_rebuilds_only_the_named_rows_and_drops_removed_nodes() -> None:
    sim = SimFleet(numbered("sim", 4))
    sim.tick(2)
    sim.fleet.flush()
    model = model_of(sim)
    before = dict(model.rows)
    assert [line.key for line in model.lines()] == ["sim1", "sim2", "sim3", "sim4"]

    sim.tick(1, only=["sim2"], mutate=every_gpu(util_pct=77.0))
    sim.fleet.remove("sim3")
    changed = sim.fleet.flush()
    assert changed == {"sim2", "sim3"}
    model.update(sim.fleet, changed)
    assert set(model.rows) == {"sim1", "sim2", "sim4"}
    assert model.rows["sim1"] is before["sim1"]  # not rebuilt
    assert model.rows["sim2"] is not before["sim2"]
    assert model.rows["sim2"].util_pct == 77.0
    assert [line.key for line in model.lines()] == ["sim1", "sim2", "sim4"]  # laid out again
    assert model.counts() == {"nodes": 3, "shown": 3}


def test_a_bad_filter_keeps_the_last_one(mixed: SimFleet) -> None:
    model = model_of(mixed)
    model.set_filter("site:dc2")
    assert set(names(model)) == {"h1", "h2"}
    with pytest.raises(FilterError, match="health:purple"):
        model.set_filter("health:purple")
    assert model.filter.text == "site:dc2"
    assert set(names(model)) == {"h1", "h2"}
    assert model.counts() == {"nodes": len(MIXED), "shown": 2}
    model.set_filter("")
    assert model.counts() == {"nodes": len(MIXED), "shown": len(MIXED)}


# --- cost per tick: figures alone do not move lines ----------------------------------------


def test_figures_alone_do_not_lay_the_lines_out_again() -> None:
    sim = SimFleet(numbered("n", 4))
    sim.tick(2)
    model = FleetTableModel()
    model.load(sim.fleet)
    lines = model.lines()
    version = model.layout_version
    sim.tick(1, mutate=every_gpu(util_pct=55.0))
    model.update(sim.fleet, sim.fleet.nodes)
    assert model.lines() is lines and model.layout_version == version
    assert model.row("n1").util_pct == 55.0  # the figure is fresh when read
    assert not model.refresh_order()  # a state sort: nothing to re-sort once a second

    sim.feeds["n3"].node.inject(Fault("xid", gpu=0, code=79))
    sim.tick(1)
    model.update(sim.fleet, ["n3"])
    assert model.lines() is not lines, "a health change must lay the lines out again"
    assert model.layout_version == version + 1
    assert model.lines()[0].key == "n3"


def test_figure_sorts_re_sort_when_asked_once_a_second() -> None:
    sim = SimFleet(numbered("n", 3))
    sim.tick(
        2,
        mutate={
            "n1": every_gpu(util_pct=10.0),
            "n2": every_gpu(util_pct=20.0),
            "n3": every_gpu(util_pct=30.0),
        },
    )
    model = FleetTableModel()
    model.load(sim.fleet)
    model.set_sort("util")
    assert [line.key for line in model.lines()] == ["n3", "n2", "n1"]
    sim.tick(
        1,
        mutate={
            "n1": every_gpu(util_pct=90.0),
            "n2": every_gpu(util_pct=20.0),
            "n3": every_gpu(util_pct=30.0),
        },
    )
    model.update(sim.fleet, sim.fleet.nodes)
    assert [line.key for line in model.lines()] == ["n3", "n2", "n1"]  # held until asked
    assert model.refresh_order()
    assert [line.key for line in model.lines()] == ["n1", "n3", "n2"]
