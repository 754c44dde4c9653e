"""The lifecycle engine against real pieces: a store on disk, the sim cloud (instances boot into
real sim nodes on 127.0.0.1), the sim scheduler, and an admission gate the test controls.

Capacity limits the sim cannot express (room for 2 of 4) and a crash between a launch and its
commit come from thin wrappers around the real sim provider; everything else is the sim's own.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import replace

import pytest

from tests.console.lifecycle.world import CLUSTER, POOL, S, World, settle
from tidectl.console.lifecycle.burst import BurstRefused
from tidectl.console.lifecycle.engine import ACTOR
from tidectl.console.lifecycle.records import IntentStatus
from tidectl.console.providers.base import (
    CLUSTER_TAG,
    INTENT_TAG,
    POOL_TAG,
    CapacityError,
    Instance,
    InstanceState,
    LaunchRequest,
    UnavailableError,
)
from tidectl.console.providers.sim import SimProvider
from tidectl.console.scheduler.workload import JobSpec

# -- bursting -------------------------------------------------------------------------------


async def test_a_burst_writes_the_intent_and_leaves_tagged_nodes_provisioning(
    world: World,
) -> None:
    result = await world.engine().burst(
        "gpu", count=4, actor="ana", frontend="cli", request_id="r1"
    )
    assert (result.launched, result.wanted) == (4, 4)
    intent = world.store.intent(result.intent_id or "")
    assert intent is not None and intent.status is IntentStatus.DONE
    assert intent.actor == "ana" and intent.count == 4
    nodes = world.store.nodes(pool="gpu")
    assert [n.state for n in nodes] == [S.PROVISIONING] * 4
    assert sorted(n.name for n in nodes) == sorted(result.nodes)
    instances = {i.instance_id: i for i in await world.instances()}
    assert {n.instance_id for n in nodes} == set(instances)
    for instance in instances.values():
        assert instance.tags[CLUSTER_TAG] == CLUSTER
        assert instance.tags[POOL_TAG] == "gpu"
        assert instance.tags[INTENT_TAG] == intent.id
    recorded = world.store.instances(intent_id=intent.id)
    assert {r.node for r in recorded} == set(result.nodes)
    # Every node entered as requested before it was launched.
    for node in nodes:
        assert [t.after for t in world.store.history(node.name)] == [S.REQUESTED, S.PROVISIONING]


async def test_reconcile_takes_nodes_to_active_through_the_admission_gate(world: World) -> None:
    engine = world.engine()
    world.default_health = None  # the agents have not answered yet
    result = await engine.burst("gpu", count=4, actor="ana", frontend="cli", request_id="r1")
    await settle(engine, world, dict.fromkeys(result.nodes, S.BOOTSTRAPPING))
    for _ in range(3):
        await engine.reconcile_once()
    assert set(world.states().values()) == {S.BOOTSTRAPPING}, "joined without passing the gate"
    assert await world.scheduler.nodes() == []
    world.healthy[result.nodes[0]] = False  # refused: stays out
    world.default_health = True
    await settle(engine, world, dict.fromkeys(result.nodes[1:], S.ACTIVE))
    assert world.states()[result.nodes[0]] is S.BOOTSTRAPPING
    assert sorted(n.name for n in await world.scheduler.nodes()) == sorted(result.nodes[1:])
    assert all(n.gpus == 8 for n in await world.scheduler.nodes())
    moves = world.store.history(result.nodes[1])
    assert [t.after for t in moves][-3:] == [S.BOOTSTRAPPING, S.JOINING, S.ACTIVE]
    assert {t.actor for t in moves[2:]} == {ACTOR}


async def test_the_same_token_twice_launches_once(world: World) -> None:
    engine = world.engine()
    first = await engine.burst("gpu", count=3, actor="ana", frontend="tui", request_id="r1")
    again = await engine.burst("gpu", count=3, actor="ana", frontend="tui", request_id="r1")
    assert again.replayed and not first.replayed
    assert again.intent_id == first.intent_id
    assert (again.launched, sorted(again.nodes)) == (3, sorted(first.nodes))
    explicit = await engine.burst(
        "gpu", count=1, actor="ana", frontend="tui", request_id="r2", token="t-1"
    )
    repeated = await engine.burst(
        "gpu", count=1, actor="ana", frontend="tui", request_id="r3", token="t-1"
    )
    assert repeated.replayed and repeated.intent_id == explicit.intent_id
    assert len(await world.instances()) == 4
    assert len(world.store.nodes(pool="gpu")) == 4


async def test_ensure_is_idempotent(world: World) -> None:
    engine = world.engine()
    first = await engine.burst("gpu", ensure=3, actor="ana", frontend="cli", request_id="r1")
    assert (first.launched, first.wanted) == (3, 3)
    again = await engine.burst("gpu", ensure=3, actor="ana", frontend="cli", request_id="r2")
    assert (again.launched, again.wanted, again.replayed) == (0, 0, False)
    assert "nothing to do" in again.sentence
    assert len(await world.instances()) == 3
    more = await engine.burst("gpu", ensure=5, actor="ana", frontend="cli", request_id="r3")
    assert (more.launched, more.wanted) == (2, 2)
    assert len(await world.instances()) == 5


@pytest.mark.parametrize(
    ("options", "words"),
    [
        ({"count": 9}, "at most 8"),
        ({"ensure": 9}, "at most 8"),
        ({"count": 0}, "at least 1"),
        ({"count": 2, "ensure": 2}, "not both"),
        ({}, "not both"),
        ({"count": 2, "pool": "tpu"}, "no pool named 'tpu'"),
    ],
)
async def test_bad_bursts_are_refused_before_anything_is_written(
    world: World, options: dict[str, object], words: str
) -> None:
    pool = str(options.pop("pool", "gpu"))
    with pytest.raises(BurstRefused, match=words):
        await world.engine().burst(pool, actor="a", frontend="cli", request_id="r", **options)  # type: ignore[arg-type]
    assert world.store.intents() == [] and world.store.nodes() == []
    assert await world.instances() == []


async def test_a_count_over_what_is_left_of_max_nodes_is_refused(world: World) -> None:
    engine = world.engine()
    await engine.burst("gpu", count=6, actor="a", frontend="cli", request_id="r1")
    with pytest.raises(BurstRefused, match="ask for at most 2"):
        await engine.burst("gpu", count=3, actor="a", frontend="cli", request_id="r2")
    assert len(await world.instances()) == 6


async def test_no_capacity_on_the_first_type_fails_over_to_the_second(world: World) -> None:
    world.cloud.faults.no_capacity("sim.gpu8")
    engine = world.engine()
    result = await engine.burst("gpu", count=2, actor="a", frontend="cli", request_id="r1")
    assert result.launched == 2
    assert {i.instance_type for i in await world.instances()} == {"sim.gpu8b"}
    assert [a.instance_type for a in result.attempts if a.error] == ["sim.gpu8"] * 2  # 2, then 1
    # The refused type is backed off: the next burst does not ask it again.
    later = await engine.burst("gpu", count=1, actor="a", frontend="cli", request_id="r2")
    assert [(a.instance_type, a.error) for a in later.attempts] == [("sim.gpu8b", None)]


class RoomFor:
    """The sim cloud with room for only ``left`` more instances of each type: a request for
    more is refused for capacity, as EC2 refuses MinCount it cannot place."""

    def __init__(self, cloud: SimProvider, left: int) -> None:
        self.cloud = cloud
        self.left: dict[str, int] = {}
        self.start = left

    async def launch(self, request: LaunchRequest) -> list[Instance]:
        left = self.left.setdefault(request.instance_type, self.start)
        if request.count > left:
            raise CapacityError("no room", instance_type=request.instance_type, zone=request.zone)
        self.left[request.instance_type] = left - request.count
        return await self.cloud.launch(request)

    async def describe(self, tags: Mapping[str, str]) -> list[Instance]:
        return await self.cloud.describe(tags)

    async def terminate(self, instance_ids: Sequence[str]) -> None:
        await self.cloud.terminate(instance_ids)

    async def price_per_hour(self, instance_type: str, *, spot: bool) -> float | None:
        return await self.cloud.price_per_hour(instance_type, spot=spot)


async def test_a_partial_burst_launches_what_it_can_and_says_so(world: World) -> None:
    pool = replace(POOL, instance_types=("sim.gpu8",))
    result = await world.engine(pool, RoomFor(world.cloud, 3)).burst(
        "gpu", count=4, actor="a", frontend="cli", request_id="r1"
    )
    assert (result.launched, result.wanted) == (3, 4)
    assert "3 of 4" in result.sentence
    states = world.states()
    assert sorted(states.values()) == sorted([S.PROVISIONING] * 3 + [S.FAILED])
    intent = world.store.intent(result.intent_id or "")
    assert intent is not None and intent.status is IntentStatus.DONE and intent.error
    assert len(await world.instances()) == 3


async def test_an_all_or_nothing_pool_rolls_a_partial_burst_back(world: World) -> None:
    pool = replace(POOL, instance_types=("sim.gpu8",), all_or_nothing=True)
    engine = world.engine(pool, RoomFor(world.cloud, 2))
    result = await engine.burst("gpu", count=4, actor="a", frontend="cli", request_id="r1")
    assert result.rolled_back and result.launched == 0 and result.wanted == 4
    intent = world.store.intent(result.intent_id or "")
    assert intent is not None and intent.status is IntentStatus.FAILED
    assert sorted(world.states().values()) == sorted([S.TERMINATING] * 2 + [S.FAILED] * 2)
    assert {i.state for i in await world.instances()} <= {
        InstanceState.SHUTTING_DOWN,
        InstanceState.TERMINATED,
    }
    await settle(engine, world, dict.fromkeys(world.states(), S.TERMINATED))
    assert world.store.instances(open_only=True) == []


# -- crashes and the reconcile loop ---------------------------------------------------------


class Crash(BaseException):
    """The control plane dies (kill -9) right after the provider accepted the launch."""


class DiesAfterLaunch(RoomFor):
    async def launch(self, request: LaunchRequest) -> list[Instance]:
        await self.cloud.launch(request)
        raise Crash


async def test_a_crash_after_launch_leaves_orphans_the_next_pass_adopts(world: World) -> None:
    with pytest.raises(Crash):
        await world.engine(POOL, DiesAfterLaunch(world.cloud, 99)).burst(
            "gpu", count=4, actor="a", frontend="cli", request_id="r1"
        )
    launched = {i.instance_id for i in await world.instances()}
    assert len(launched) == 4 and world.store.instances() == []
    restarted = world.engine()  # a new control plane on the same store and cloud
    await restarted.reconcile_once()
    assert {r.instance_id for r in world.store.instances()} == launched
    adopted = world.store.nodes(states=[S.PROVISIONING, S.BOOTSTRAPPING])
    assert {n.instance_id for n in adopted} == launched
    await settle(restarted, world, {n.name: S.ACTIVE for n in adopted})
    instances = await world.instances()
    assert len(instances) == 4, "a duplicate was launched"
    assert {i.state for i in instances} == {InstanceState.RUNNING}, "an orphan was killed"
    # The burst's own rows never got an instance: they time out and close without one.
    world.clock.skipped = 200.0
    await restarted.reconcile_once()
    await restarted.reconcile_once()
    requested = [n for n in world.store.nodes() if n.instance_id is None]
    assert len(requested) == 4 and {n.state for n in requested} == {S.TERMINATED}
    assert len([i for i in await world.instances() if i.state is InstanceState.RUNNING]) == 4


async def test_a_lost_launch_answer_is_asked_again_with_the_same_token(world: World) -> None:
    world.cloud.faults.lose_launch_answers(times=1)
    result = await world.engine().burst("gpu", count=3, actor="a", frontend="cli", request_id="r")
    assert result.launched == 3
    assert len(await world.instances()) == 3


async def test_a_vanished_instance_fails_its_node_which_then_ends(world: World) -> None:
    engine = world.engine()
    result = await engine.burst("gpu", count=1, actor="a", frontend="cli", request_id="r1")
    (name,) = result.nodes
    await settle(engine, world, {name: S.ACTIVE})
    node = world.store.node(name)
    assert node is not None and node.instance_id
    await world.cloud.vanish(node.instance_id)
    await engine.reconcile_once()
    assert world.states()[name] is S.FAILED
    await engine.reconcile_once()
    assert world.states()[name] is S.TERMINATED
    record = world.store.instance(node.instance_id)
    assert record is not None and record.confirmed_terminated


async def test_a_failed_node_with_a_job_is_never_terminated(world: World) -> None:
    engine = world.engine()
    result = await engine.burst("gpu", count=1, actor="a", frontend="cli", request_id="r1")
    (name,) = result.nodes
    await settle(engine, world, {name: S.ACTIVE})
    job = world.scheduler.submit(JobSpec("train", "ana", 1, 8, 3600.0))
    assert [j.id for j in await world.scheduler.jobs(name)] == [job]
    world.store.transition(
        name, S.FAILED, reason="test", actor="t", request_id="", at=world.clock()
    )
    for _ in range(3):
        outcome = await engine.reconcile_once()
        assert any(r.node == name and "job" in r.sentence for r in outcome.reports)
    assert world.states()[name] is S.FAILED
    assert {i.state for i in await world.instances()} == {InstanceState.RUNNING}
    assert [j.id for j in await world.scheduler.jobs(name)] == [job]
    assert world.scheduler.finished == ()
    # Once the job is gone, the failed node is cleaned up.
    world.scheduler.advance(3600.0 + 10)
    await settle(engine, world, {name: S.TERMINATED})


class SlowAnswer(RoomFor):
    """The instances exist (and are listed) a while before the launch call returns."""

    def __init__(self, cloud: SimProvider) -> None:
        super().__init__(cloud, 99)
        self.listed = asyncio.Event()
        self.answer = asyncio.Event()

    async def launch(self, request: LaunchRequest) -> list[Instance]:
        instances = await self.cloud.launch(request)
        self.listed.set()
        await self.answer.wait()
        return instances


async def test_a_pass_during_a_launch_does_not_adopt_its_instances(world: World) -> None:
    slow = SlowAnswer(world.cloud)
    engine = world.engine(POOL, slow)
    bursting = asyncio.create_task(
        engine.burst("gpu", count=2, actor="a", frontend="cli", request_id="r1")
    )
    await slow.listed.wait()
    outcome = await engine.reconcile_once()
    assert len(await world.instances()) == 2
    assert outcome.actions == () and world.store.instances() == []
    slow.answer.set()
    result = await bursting
    assert result.launched == 2
    await engine.reconcile_once()
    assert sorted(n.name for n in world.store.nodes()) == sorted(result.nodes)


class TerminateFails(RoomFor):
    """The sim cloud whose terminate calls fail (the API is down) until told otherwise."""

    def __init__(self, cloud: SimProvider) -> None:
        super().__init__(cloud, 99)
        self.calls = 0
        self.down = True

    async def terminate(self, instance_ids: Sequence[str]) -> None:
        self.calls += 1
        if self.down:
            raise UnavailableError("the EC2 API does not answer")
        await self.cloud.terminate(instance_ids)


async def test_a_failing_terminate_is_retried_with_backoff_and_reported(world: World) -> None:
    flaky = TerminateFails(world.cloud)
    engine = world.engine(POOL, flaky)
    result = await engine.burst("gpu", count=1, actor="a", frontend="cli", request_id="r1")
    (name,) = result.nodes
    await settle(engine, world, {name: S.ACTIVE})
    await engine.drain([name], reason="done", actor="a", frontend="cli", request_id="d")
    await settle(engine, world, {name: S.DRAINED})
    world.clock.skipped += 2 * 3600  # drained and empty for two hours: a zombie
    reports = [r for _ in range(5) for r in (await engine.reconcile_once()).reports]
    assert flaky.calls == 1, "asked again on every pass instead of backing off"
    assert any("failed" in r.sentence and "EC2 API" in r.sentence for r in reports)
    assert world.states()[name] is S.TERMINATING
    flaky.down = False
    world.clock.skipped += 301  # past the longest backoff
    await settle(engine, world, {name: S.TERMINATED})
    assert flaky.calls == 2
