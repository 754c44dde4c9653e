"""Slurm's power-saving programs through the ControlPlane, over a real store and the sim cloud:
``slurm_resume`` launches the CLOUD nodes named (in the pool whose ``slurm_nodes`` holds them,
once however often Slurm asks, and again under the same name after they ended);
``slurm_suspend`` ends nodes Slurm is powering down — never one with a job, never one Slurm
still schedules; ``slurm_resume_failed`` fails the nodes that never registered, with the
reason, and terminates their instances.

Slurm's view of power saving (the POWERING_DOWN flag) comes from a sim scheduler that shows
it for the nodes a test names; tests/console/scheduler/ read the real flags from a real Slurm.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest

from tests.console.lifecycle.world import CLUSTER, POOL, S, World
from tests.console.linkers import Bookkeeping
from tests.console.roles import TEST_ROLES
from tidectl.console.config.loader import parse_config
from tidectl.console.control.caller import Caller, Frontend
from tidectl.console.control.errors import Refused
from tidectl.console.control.plane import ControlPlane
from tidectl.console.lifecycle.engine import Engine
from tidectl.console.providers.base import InstanceState
from tidectl.console.scheduler.base import NodeFlag, SchedNode
from tidectl.console.scheduler.sim import SimScheduler
from tidectl.console.scheduler.workload import JobSpec

SLURM = Caller("root", Frontend.SLURM)
CLOUD = replace(POOL, slurm_nodes=("cloud1", "cloud2", "cloud3"), max_nodes=3)
OTHER = replace(POOL, name="other", slurm_nodes=("big1",), max_nodes=1)


class PowerSavingScheduler(SimScheduler):
    """The sim scheduler, showing Slurm's POWERING_DOWN flag on the nodes in
    ``powering_down`` (as Slurm does once it has decided to suspend an idle node)."""

    def __init__(self) -> None:
        super().__init__()
        self.powering_down: set[str] = set()
        self.powering_up: set[str] = set()
        self.powered_down: set[str] = set()  # a power-up asked, not under way yet
        self.asked_to_add: list[str] = []

    async def nodes(self) -> list[SchedNode]:
        shown = await super().nodes()
        return [replace(n, flags=n.flags | self._flags(n.name)) for n in shown]

    def _flags(self, name: str) -> set[NodeFlag]:
        if name in self.powered_down:
            return {NodeFlag.CLOUD, NodeFlag.POWERED_DOWN, NodeFlag.POWERING_UP}
        if name in self.powering_down:
            return {NodeFlag.CLOUD, NodeFlag.POWERING_DOWN}
        if name in self.powering_up:
            return {NodeFlag.CLOUD, NodeFlag.POWERING_UP}
        return set()

    async def add_node(self, name: str, gpus: int) -> None:
        """As Slurm's: the CLOUD node is always there; asking again is no error."""
        self.asked_to_add.append(name)
        if name not in {n.name for n in await super().nodes()}:
            await super().add_node(name, gpus)


@pytest.fixture
async def plane(world: World, tmp_path: Path) -> AsyncIterator[ControlPlane]:
    (tmp_path / "known_hosts").write_text("")
    text = (
        '[cluster]\nname = "c1"\n[ssh]\nuser = "t"\nknown_hosts = "known_hosts"\n'
        '[[nodes]]\nnames = "onprem[1-2]"\n' + TEST_ROLES
    )
    config = replace(parse_config(text, tmp_path / "cluster.toml"), pools=(CLOUD, OTHER))
    world.scheduler = PowerSavingScheduler()
    engine = Engine(
        world.store,
        {CLOUD.name: world.cloud, OTHER.name: world.cloud},  # two pools, one sim cloud
        world.scheduler,
        {CLOUD.name: CLOUD, OTHER.name: OTHER},
        CLUSTER,
        health=lambda name: world.healthy.get(name, world.default_health),
        clock=world.clock,
    )
    yield ControlPlane(config, world.store, engine, scheduler=world.scheduler, interval_s=0.05)


def scheduler(world: World) -> PowerSavingScheduler:
    assert isinstance(world.scheduler, PowerSavingScheduler)
    return world.scheduler


async def active(plane: ControlPlane, names: list[str]) -> None:
    progress = await plane.wait(names, {S.ACTIVE}, timeout_s=20)
    assert set(progress.states.values()) == {S.ACTIVE}, progress


async def test_resume_launches_the_named_nodes_once_however_often_slurm_asks(
    plane: ControlPlane, world: World
) -> None:
    (first,) = await plane.slurm_resume(SLURM, "cloud[1-2]")
    assert (first.pool, first.launched, first.nodes) == ("gpu", 2, ("cloud1", "cloud2"))
    intent = world.store.intent(first.intent_id or "")
    assert intent is not None and (intent.actor, intent.frontend) == ("root", "slurm")
    (again,) = await plane.slurm_resume(SLURM, "cloud[1-2]")
    assert (again.launched, again.nodes) == (0, ())
    assert "nothing to do" in again.sentence
    assert len(await world.instances()) == 2
    # Names of two pools: a burst in each.
    both = await plane.slurm_resume(SLURM, "cloud3,big1")
    assert {(r.pool, r.nodes) for r in both} == {("gpu", ("cloud3",)), ("other", ("big1",))}


async def test_a_name_no_pool_holds_refuses_the_whole_call(
    plane: ControlPlane, world: World
) -> None:
    with pytest.raises(Refused, match=r"no pool has cloud9 in its slurm_nodes"):
        await plane.slurm_resume(SLURM, "cloud[1,9]")
    assert world.store.nodes() == [] and await world.instances() == []


async def test_a_count_burst_takes_the_first_free_slurm_names(
    plane: ControlPlane, world: World
) -> None:
    await plane.slurm_resume(SLURM, "cloud2")
    result = await plane.burst(Caller("ana", Frontend.CLI), "gpu", count=2)
    assert result.nodes == ("cloud1", "cloud3")
    with pytest.raises(Refused, match="allows at most 3"):
        await plane.burst(Caller("ana", Frontend.CLI), "gpu", count=1)


async def test_suspend_ends_an_idle_node_slurm_powers_down_and_resume_brings_it_back(
    plane: ControlPlane, world: World
) -> None:
    await plane.slurm_resume(SLURM, "cloud1")
    await active(plane, ["cloud1"])
    first = world.store.node("cloud1")
    assert first is not None and first.instance_id
    # Slurm has not decided to power it down: a suspend by hand is refused.
    with pytest.raises(Refused, match="the scheduler is not powering it down"):
        await plane.slurm_suspend(SLURM, "cloud1")
    scheduler(world).powering_down.add("cloud1")
    ended = await plane.slurm_suspend(SLURM, "cloud1")
    assert [(o.before, o.after) for o in ended.nodes] == [(S.ACTIVE, S.TERMINATING)]
    progress = await plane.wait(["cloud1"], {S.TERMINATED}, timeout_s=20)
    assert progress.states == {"cloud1": S.TERMINATED}
    moves = [(t.before, t.after) for t in world.store.history("cloud1")]
    assert moves[-4:] == [
        (S.ACTIVE, S.DRAINING),
        (S.DRAINING, S.DRAINED),
        (S.DRAINED, S.TERMINATING),
        (S.TERMINATING, S.TERMINATED),
    ]
    assert "Slurm powers it down idle" in world.store.history("cloud1")[-3].reason
    assert (await plane.slurm_suspend(SLURM, "cloud1")).nodes == ()  # asked again: nothing
    ending = {InstanceState.SHUTTING_DOWN, InstanceState.TERMINATED}
    old = [i.state for i in await world.instances() if i.instance_id == first.instance_id]
    assert set(old) <= ending
    # Slurm resumes it once more: the same name, a new instance, a second ledger stretch.
    scheduler(world).powering_down.clear()
    (again,) = await plane.slurm_resume(SLURM, "cloud1")
    assert again.nodes == ("cloud1",)
    await active(plane, ["cloud1"])
    second = world.store.node("cloud1")
    assert second is not None and second.instance_id not in (None, first.instance_id)
    assert (S.TERMINATED, S.REQUESTED) in [
        (t.before, t.after) for t in world.store.history("cloud1")
    ]
    assert [e.stopped_at is None for e in world.store.ledger("cloud1")] == [False, True]


async def test_suspend_never_ends_a_node_with_a_job(plane: ControlPlane, world: World) -> None:
    await plane.slurm_resume(SLURM, "cloud1")
    await active(plane, ["cloud1"])
    job = scheduler(world).submit(JobSpec("train", "ana", 1, 8, duration_s=3600.0))
    scheduler(world).powering_down.add("cloud1")  # even if Slurm's view were this wrong
    with pytest.raises(Refused, match=f"still has jobs \\({job}\\)"):
        await plane.slurm_suspend(SLURM, "cloud1")
    record = world.store.node("cloud1")
    assert record is not None and record.state is S.ACTIVE
    assert [j.id for j in await world.scheduler.jobs()] == [job]


async def test_suspend_of_a_node_still_booting_terminates_it_and_unknown_names_are_no_op(
    plane: ControlPlane, world: World
) -> None:
    await plane.slurm_resume(SLURM, "cloud2")
    ended = await plane.slurm_suspend(SLURM, "cloud[1-3]")  # cloud1, cloud3: never launched
    assert [o.node for o in ended.nodes] == ["cloud2"]
    assert ended.nodes[0].after is S.TERMINATING
    nothing = await plane.slurm_suspend(SLURM, "cloud[1,3]")
    assert nothing.nodes == () and "nothing to end" in nothing.sentence


async def test_resume_fail_fails_the_node_with_the_reason_and_ends_its_instance(
    plane: ControlPlane, world: World
) -> None:
    world.default_health = None  # the agent never answers: the node stays bootstrapping
    (result,) = await plane.slurm_resume(SLURM, "cloud1")
    await plane.reconcile_now()
    record = world.store.node("cloud1")
    assert record is not None and record.state in (S.PROVISIONING, S.BOOTSTRAPPING)
    ended = await plane.slurm_resume_failed(SLURM, "cloud1")
    assert ended.nodes[0].after is S.TERMINATING
    history = world.store.history("cloud1")
    failed = [t for t in history if t.after is S.FAILED]
    assert len(failed) == 1 and "did not register within ResumeTimeout" in failed[0].reason
    assert failed[0].actor == "root"
    progress = await plane.wait(["cloud1"], {S.TERMINATED}, timeout_s=20)
    assert progress.states == {"cloud1": S.TERMINATED}
    assert all(e.stopped_at is not None for e in world.store.ledger("cloud1"))
    assert {i.state for i in await world.instances()} <= {
        InstanceState.SHUTTING_DOWN,
        InstanceState.TERMINATED,
    }
    assert result.intent_id


async def test_a_cloud_node_joins_only_once_slurm_shows_it_taking_jobs(
    plane: ControlPlane, world: World
) -> None:
    """Slurm lists a CLOUD node idle while its slurmd has not registered (POWERING_UP): it is
    not active until that clears. It is asked to join each pass while no power-up shows, and
    not asked while one does (each ask costs slurmctld a full sinfo and squeue)."""
    slurm = scheduler(world)
    await plane.slurm_resume(SLURM, "cloud1")
    reached = await plane.wait(["cloud1"], {S.JOINING, S.ACTIVE}, timeout_s=20)
    assert reached.states == {"cloud1": S.JOINING}
    slurm.powering_up.add("cloud1")  # from here on, Slurm shows the power-up
    asked = slurm.asked_to_add.count("cloud1")
    assert asked >= 1
    for _ in range(3):
        await plane.reconcile_now()
    record = world.store.node("cloud1")
    assert record is not None and record.state is S.JOINING
    # The first pass may have read Slurm before the flag showed; none after it asks.
    assert slurm.asked_to_add.count("cloud1") <= asked + 1
    settled = slurm.asked_to_add.count("cloud1")
    for _ in range(3):
        await plane.reconcile_now()
    assert slurm.asked_to_add.count("cloud1") == settled
    slurm.powering_up.clear()
    await active(plane, ["cloud1"])


class RecordingLinker(Bookkeeping):
    """Links nothing (no agent here); records what the engine runs on each node, and fails
    the next ``fail_next`` commands as a node whose command exits 1 would."""

    def __init__(self) -> None:
        super().__init__()
        self.ran: list[tuple[str, str]] = []
        self.fail_next = 0

    async def run(self, node: str, command: str, timeout_s: float) -> str | None:
        self.ran.append((node, command))
        if self.fail_next:
            self.fail_next -= 1
            return f"{command!r} exited 1 on {node}"
        return None


async def test_the_join_command_runs_once_slurm_powers_the_node_up(
    world: World, tmp_path: Path
) -> None:
    """Once per node, with its name, only once Slurm's power-up is under way (a slurmd that
    registers before is not heard, and a pending power-up outlives a power-down); a failure
    is reported and tried again; a node launched again under its name runs it again."""
    pool = replace(CLOUD, bootstrap=replace(CLOUD.bootstrap, join_command="start-slurmd -N {node}"))
    (tmp_path / "known_hosts").write_text("")
    text = (
        '[cluster]\nname = "c1"\n[ssh]\nuser = "t"\nknown_hosts = "known_hosts"\n'
        '[[nodes]]\nnames = "onprem[1-2]"\n' + TEST_ROLES
    )
    config = replace(parse_config(text, tmp_path / "cluster.toml"), pools=(pool,))
    slurm = PowerSavingScheduler()
    linker = RecordingLinker()
    engine = Engine(
        world.store,
        {pool.name: world.cloud},
        slurm,
        {pool.name: pool},
        CLUSTER,
        linker=linker,
        health=lambda name: True,
        clock=world.clock,
    )
    plane = ControlPlane(config, world.store, engine, scheduler=slurm, interval_s=0.05)
    slurm.powered_down.add("cloud1")
    await plane.slurm_resume(SLURM, "cloud1")
    await plane.wait(["cloud1"], {S.JOINING}, timeout_s=20)
    for _ in range(3):
        await plane.reconcile_now()
    assert linker.ran == []  # asked, not under way
    slurm.powered_down.clear()
    slurm.powering_up.add("cloud1")
    linker.fail_next = 1
    result = await plane.reconcile_now()
    assert [r.sentence for r in result.reports if r.node == "cloud1"] == [
        "the join command failed (tried again next pass): "
        "'start-slurmd -N cloud1' exited 1 on cloud1"
    ]
    for _ in range(3):
        await plane.reconcile_now()
    assert linker.ran == [("cloud1", "start-slurmd -N cloud1")] * 2  # failed, then once
    slurm.powering_up.clear()
    await active(plane, ["cloud1"])
    # Ended and launched again under its name: a new machine, joined anew.
    slurm.powering_down.add("cloud1")
    await plane.slurm_suspend(SLURM, "cloud1")
    await plane.wait(["cloud1"], {S.TERMINATED}, timeout_s=20)
    await plane.reconcile_now()
    slurm.powering_down.clear()
    await plane.slurm_resume(SLURM, "cloud1")
    await active(plane, ["cloud1"])
    assert len(linker.ran) == 3
