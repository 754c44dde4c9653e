"""Lifecycle states in the console's headless core: the LIFE column, its sort, filter and folds;
nodes joining and leaving the table at runtime; the LifeFeed over a real lifecycle store; the
header's cloud nodes and burn rate; lifecycle moves merged into the events."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.console.view.sim_fleets import Place, SimFleet, node_spec, numbered
from tidectl.console.lifecycle.records import NodeRecord
from tidectl.console.lifecycle.states import NodeKind, State, Transition
from tidectl.console.lifecycle.store import Store
from tidectl.console.model import LinkState
from tidectl.console.scheduler.base import (
    Job,
    JobState,
    SchedNode,
    SchedState,
    SchedulerSnapshot,
)
from tidectl.console.view import render
from tidectl.console.view.events import FleetEvent, fleet_events
from tidectl.console.view.filter import FilterError
from tidectl.console.view.header import header_text
from tidectl.console.view.life import LifeFeed, LifeSummary
from tidectl.console.view.table import FleetTableModel

S = State


def lines_of(model: FleetTableModel) -> list[str]:
    return [row.name for line in model.lines() for row in line.rows]


def model_with(sim: SimFleet, states: dict[str, State]) -> FleetTableModel:
    model = FleetTableModel()
    model.load(sim.fleet)
    model.set_life(sim.fleet, states, states)
    return model


# --- the table ----------------------------------------------------------------------------------


def test_sort_by_life_puts_nodes_that_need_someone_first() -> None:
    # Named against the expected order, so neither names nor the states' words give it.
    order = [S.FAILED, S.TERMINATING, S.BOOTSTRAPPING, S.JOINING, S.DRAINING, S.DRAINED, S.ACTIVE]
    sim = SimFleet(numbered("n", len(order) + 1))
    names = [f"n{i}" for i in range(len(order), 0, -1)]  # n7 is failed, n1 active
    model = model_with(sim, dict(zip(names, order, strict=True)))
    model.set_sort("life")
    assert lines_of(model) == [*names, "n8"]  # n8: the store does not know it
    model.set_sort("life", reverse=True)
    assert lines_of(model) == ["n8", *reversed(names)]


def test_the_life_column_shows_the_state_and_is_blank_for_a_node_the_store_does_not_know() -> None:
    sim = SimFleet(["a1", "a2"])
    sim.tick(2)
    model = model_with(sim, {"a1": S.DRAINING})
    heading = render.heading(8, "health", False).plain
    assert "LIFE" in heading
    start = heading.index("LIFE")
    drawn = {name: render.node_text(model.row(name), 8, sim.now, []).plain for name in sim.feeds}
    assert drawn["a1"][start:].startswith("draining ")
    assert drawn["a2"][start : start + 13].strip() == ""


def test_a_lifecycle_move_lays_out_again_and_folds_nodes_apart() -> None:
    sim = SimFleet(numbered("n", 4))
    sim.tick(2)
    model = model_with(sim, {})
    model.toggle_fold()
    assert [line.kind for line in model.lines()] == ["fold"]
    version = model.layout_version
    model.set_life(sim.fleet, {"n2": S.DRAINING}, ["n2"])
    lines = model.lines()
    assert model.layout_version == version + 1
    assert sorted(line.label for line in lines) == ["n2", "n[1,3-4]"]
    assert model.row("n2").life is S.DRAINING
    model.set_life(sim.fleet, {}, ["n2"])  # it left the store (terminated, or resumed out)
    assert model.row("n2").life is None
    assert [line.kind for line in model.lines()] == ["fold"]


def test_the_life_filter_matches_states_by_prefix_and_dash_for_none() -> None:
    sim = SimFleet(["a", "b", "c"])
    model = model_with(sim, {"a": S.DRAINING, "b": S.DRAINED})
    model.set_filter("life:drain")
    assert lines_of(model) == ["a", "b"]
    model.set_filter("life:-")
    assert lines_of(model) == ["c"]
    model.set_filter("!life:-")
    assert lines_of(model) == ["a", "b"]
    model.set_filter("drained")  # a bare word finds the state too
    assert lines_of(model) == ["b"]
    with pytest.raises(FilterError, match="no lifecycle state starts with 'purple'"):
        model.set_filter("life:purple")
    assert lines_of(model) == ["b"]  # the last good filter stays


def test_cloud_nodes_join_and_leave_the_table_at_runtime() -> None:
    sim = SimFleet(["sim1"])
    model = FleetTableModel()
    model.load(sim.fleet)
    # The store knows the node before the collector adds it to the fleet (it bootstraps
    # first): the state waits in the model and costs no row.
    model.set_life(sim.fleet, {"burst-0001": S.BOOTSTRAPPING}, ["burst-0001"])
    assert lines_of(model) == ["sim1"]
    sim.fleet.add(node_spec(Place("burst-0001", site="sim-local", pool="burst")))
    model.update(sim.fleet, sim.fleet.flush())
    assert sorted(lines_of(model)) == ["burst-0001", "sim1"]
    row = model.row("burst-0001")
    assert (row.life, row.pool, row.site) == (S.BOOTSTRAPPING, "burst", "sim-local")
    assert model.counts() == {"nodes": 2, "shown": 2}
    sim.fleet.remove("burst-0001")
    model.update(sim.fleet, sim.fleet.flush())
    assert lines_of(model) == ["sim1"]
    assert model.counts() == {"nodes": 1, "shown": 1}


# --- the feed over a real store -----------------------------------------------------------------


class StoreSource:
    """What a ControlPlane reads for the console, over a store alone (no engine, no loops)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.reports: list[str] = []
        self.reported = 0

    def report(self, *sentences: str) -> None:
        self.reports.extend(sentences)
        self.reported += len(sentences)
        del self.reports[:-3]  # keeps few, as the plane keeps its last 200

    def nodes(self, pool: str | None = None, *, live_only: bool = False) -> list[NodeRecord]:
        return self.store.nodes(pool, live_only=live_only)

    def transitions(self, after_id: int = 0, limit: int = 500) -> list[tuple[int, Transition]]:
        return self.store.transitions_since(after_id, limit)

    def burn_rate(self, pool: str | None = None) -> float:
        return self.store.burn_rate(pool)

    def scheduler_snapshot(self) -> SchedulerSnapshot | None:
        return self.scheduler

    scheduler: SchedulerSnapshot | None = None


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    opened = Store.open(tmp_path / "s.sqlite3")
    yield opened
    opened.close()


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


WALL = 1_800_000_000.0
FLEET_NOW = 50.0  # the fleet's clock at WALL (monotonic seconds)


def add_cloud(store: Store, name: str, at: float = WALL) -> None:
    store.add_node(
        name, NodeKind.CLOUD, "burst", S.REQUESTED, at, reason="burst", actor="ana", request_id="r1"
    )


def move(store: Store, name: str, after: State, at: float, price: float | None = None) -> None:
    store.transition(
        name,
        after,
        reason=f"to {after}",
        actor="reconcile",
        request_id="r2",
        at=at,
        price_per_hour=price,
    )


def test_the_feed_reads_states_moves_and_burn_rate_and_says_which_nodes_moved(
    store: Store,
) -> None:
    clock = Clock()
    feed = LifeFeed(clock=clock)
    assert feed.summary() is None and not feed.poll(fleet_now=FLEET_NOW, wall_now=WALL)
    source = StoreSource(store)
    add_cloud(store, "burst-0001")
    add_cloud(store, "burst-0002")
    move(store, "burst-0001", S.PROVISIONING, WALL + 1, price=24.0)
    feed.attach(source)
    assert feed.poll(fleet_now=FLEET_NOW, wall_now=WALL) == {"burst-0001", "burst-0002"}
    assert feed.states == {"burst-0001": S.PROVISIONING, "burst-0002": S.REQUESTED}
    assert feed.summary() == LifeSummary({S.PROVISIONING: 1, S.REQUESTED: 1}, 24.0)
    # The moves, newest first, at the fleet's clock; a node's entry comes from "new".
    seen = [(e.node, e.event.before, e.event.after, e.event.at) for e in feed.events]
    assert seen == [
        ("burst-0001", "requested", "provisioning", FLEET_NOW + 1),
        ("burst-0002", "new", "requested", FLEET_NOW),
        ("burst-0001", "new", "requested", FLEET_NOW),
    ]
    assert feed.events[0].event.detail == "to provisioning (reconcile)"

    move(store, "burst-0002", S.PROVISIONING, WALL + 2, price=24.0)
    clock.now += 0.5  # within a second: the store is not read again
    assert feed.poll(fleet_now=FLEET_NOW, wall_now=WALL) == frozenset()
    assert feed.states["burst-0002"] is S.REQUESTED
    assert feed.poll(fleet_now=FLEET_NOW, wall_now=WALL, force=True) == {"burst-0002"}
    assert feed.burn_rate == 48.0 and len(feed.events) == 4
    clock.now += 1.0
    assert feed.poll(fleet_now=FLEET_NOW, wall_now=WALL) == frozenset()  # nothing moved

    for after in (S.TERMINATING, S.TERMINATED):
        move(store, "burst-0002", after, WALL + 3)
    clock.now += 1.0
    assert feed.poll(fleet_now=FLEET_NOW, wall_now=WALL) == {"burst-0002"}
    assert "burst-0002" not in feed.states  # terminated: gone from the fleet and the feed
    assert feed.summary() == LifeSummary({S.PROVISIONING: 1}, 24.0)
    assert feed.detach() == {"burst-0001"}
    assert feed.summary() is None and feed.states == {}


def test_reports_become_events_once_and_only_the_new_ones(store: Store) -> None:
    clock = Clock()
    feed = LifeFeed(clock=clock)
    source = StoreSource(store)
    source.report("gpu7: stuck draining for 4 h (jobs 12, 13 still run)")
    feed.attach(source)
    feed.poll(fleet_now=FLEET_NOW, wall_now=WALL)
    source.report(
        "reconcile pass failed: the scheduler did not answer",
        "gpu7: stuck draining for 4 h (jobs 12, 13 still run)",  # said again: not repeated
        "gpu8: terminate retried",
        "gpu9: terminate retried",  # four new, three kept: the newest three are read
    )
    clock.now += 1.0
    feed.poll(fleet_now=FLEET_NOW + 1, wall_now=WALL + 1)
    said = [(e.node, e.event.kind, e.event.detail) for e in feed.events]
    assert said == [
        ("gpu9", "report", "terminate retried"),
        ("gpu8", "report", "terminate retried"),
        ("gpu7", "report", "stuck draining for 4 h (jobs 12, 13 still run)"),
    ]


def test_a_long_history_is_read_in_pages_and_only_the_newest_are_kept(store: Store) -> None:
    feed = LifeFeed(keep=10)
    for i in range(1, 1201):
        add_cloud(store, f"b{i}", at=WALL + i)
    feed.attach(StoreSource(store))
    feed.poll(fleet_now=FLEET_NOW, wall_now=WALL)
    assert len(feed.events) == 10 and len(feed.states) == 1200
    assert feed.events[0].node == "b1200" and feed.events[-1].node == "b1191"


def test_the_feed_says_which_nodes_changed_in_the_scheduler_and_sums_what_waits(
    store: Store,
) -> None:
    clock = Clock()
    feed = LifeFeed(clock=clock)
    source = StoreSource(store)
    feed.attach(source)
    assert feed.poll(fleet_now=FLEET_NOW, wall_now=WALL) == frozenset()
    assert feed.summary() == LifeSummary({}, 0.0, None)  # no scheduler: nothing pending said
    running = Job("5", "train", "ana", JobState.RUNNING, "gpu", 1, 8, ("gpu2",))
    waiting = Job("6", "eval", "bo", JobState.PENDING, "gpu", 2, 8, reason="Resources")
    idle = SchedNode("gpu1", SchedState.IDLE)
    source.scheduler = SchedulerSnapshot(
        (idle, SchedNode("gpu2", SchedState.MIXED)), (running, waiting)
    )
    clock.now += 1.0
    assert feed.poll(fleet_now=FLEET_NOW, wall_now=WALL) == {"gpu1", "gpu2"}
    summary = feed.summary()
    assert summary is not None and summary.pending is not None
    assert (summary.pending.jobs, summary.pending.gpus) == (1, 16)
    # Only gpu2's job ended: only gpu2 is said to have changed.
    source.scheduler = SchedulerSnapshot((idle, SchedNode("gpu2", SchedState.IDLE)), (waiting,))
    clock.now += 1.0
    assert feed.poll(fleet_now=FLEET_NOW, wall_now=WALL) == {"gpu2"}
    assert feed.scheduler is not None and feed.scheduler.jobs_on("gpu2") == ()


# --- header and events --------------------------------------------------------------------------


def test_the_header_shows_cloud_nodes_by_state_and_the_burn_rate() -> None:
    sim = SimFleet(["a"])
    summary = sim.fleet.summary()
    assert "cloud" not in header_text("lab", summary).plain
    life = LifeSummary({S.ACTIVE: 2, S.BOOTSTRAPPING: 1}, 72.0)
    first = header_text("lab", summary, life).plain.splitlines()[0]
    assert first.endswith("· cloud 3 (1 bootstrapping, 2 active) · burn $72.00/h")
    none = header_text("lab", summary, LifeSummary({}, 0.0)).plain.splitlines()[0]
    assert none.endswith("· cloud 0 · burn $0.00/h")
    # What waits in the scheduler's queue, on the second line; nothing said when nothing waits.
    waiting = Job("6", "eval", "bo", JobState.PENDING, "gpu", 2, 8, reason="Resources")
    queued = LifeSummary({}, 0.0, SchedulerSnapshot(jobs=(waiting,)).demand)
    second = header_text("lab", summary, queued).plain.splitlines()[1]
    assert second.endswith(" · pending 1 jobs, 16 GPUs")
    empty = LifeSummary({}, 0.0, SchedulerSnapshot().demand)
    assert "pending" not in header_text("lab", summary, empty).plain


def test_lifecycle_moves_merge_into_the_fleet_events_newest_first(store: Store) -> None:
    sim = SimFleet(["gpu1"])  # streaming from the start, ten seconds ago
    sim.tick(10)
    sim.fleet.on_link("gpu1", LinkState.UNREACHABLE, "connection refused")  # at sim.now
    add_cloud(store, "burst-0001", at=WALL)
    move(store, "burst-0001", S.PROVISIONING, WALL + 10)
    feed = LifeFeed()
    feed.attach(StoreSource(store))
    # The fleet's clock reads sim.now at WALL + 5: one move before the link event, one after.
    feed.poll(fleet_now=sim.now, wall_now=WALL + 5)
    events = [e for e in fleet_events(sim.fleet, extra=feed.events) if e.event.kind != "health"]
    order = [(e.node, e.event.kind, e.event.after) for e in events[:3]]
    assert order == [
        ("burst-0001", "life", "provisioning"),
        ("gpu1", "link", "unreachable"),
        ("burst-0001", "life", "requested"),
    ]
    only = fleet_events(sim.fleet, "life provisioning", extra=feed.events)
    assert [(e.node, e.event.after) for e in only] == [("burst-0001", "provisioning")]
    assert isinstance(only[0], FleetEvent)
