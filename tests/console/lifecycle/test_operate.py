"""Drain, resume, terminate, cancel and recovery against the real store, the sim cloud and the
sim scheduler: what each refuses (before writing anything), what it asks of the world, and
that no job is ever killed on the way."""

from __future__ import annotations

import pytest

from tests.console.lifecycle.world import CLUSTER, S, World, settle
from tidectl.console.lifecycle.engine import Engine
from tidectl.console.lifecycle.operate import ActionFailed, ActionRefused
from tidectl.console.lifecycle.reconcile import orphan_name
from tidectl.console.lifecycle.records import IntentAction, IntentStatus
from tidectl.console.lifecycle.states import NodeKind
from tidectl.console.providers.base import InstanceState, LaunchRequest, ownership_tags
from tidectl.console.scheduler.base import SchedState, SchedulerUnavailableError
from tidectl.console.scheduler.workload import JobSpec

WHO = {"actor": "ana", "frontend": "cli"}


async def _active(world: World, engine: Engine, count: int) -> list[str]:
    result = await engine.burst("gpu", count=count, request_id="burst-1", **WHO)
    await settle(engine, world, dict.fromkeys(result.nodes, S.ACTIVE))
    return sorted(result.nodes)


def _intents(world: World) -> list[tuple[IntentAction, IntentStatus]]:
    return [(i.action, i.status) for i in world.store.intents()]


async def test_a_drain_lets_the_job_finish_and_only_then_is_the_node_drained(
    world: World,
) -> None:
    engine = world.engine()
    first, second = await _active(world, engine, 2)
    job = world.scheduler.submit(JobSpec("train", "bo", 1, 8, 600.0))
    (busy,) = [n for n in (first, second) if await world.scheduler.jobs(n)]
    result = await engine.drain([busy], reason="maintenance: swap GPU 3", request_id="d1", **WHO)
    assert result.intent_id and [o.after for o in result.nodes] == [S.DRAINING]
    assert "1 job(s) on it run to completion" in result.nodes[0].note
    (sched,) = [n for n in await world.scheduler.nodes() if n.name == busy]
    assert sched.state is SchedState.DRAINING and sched.reason == "maintenance: swap GPU 3"
    for _ in range(3):
        await engine.reconcile_once()
    assert world.states()[busy] is S.DRAINING, "drained while a job still ran"
    assert [j.id for j in await world.scheduler.jobs(busy)] == [job]
    world.scheduler.advance(700.0)
    await settle(engine, world, {busy: S.DRAINED})
    assert [f.outcome for f in world.scheduler.finished] == ["completed"]
    assert world.store.history(busy)[-2].actor == "ana"  # the person's move, then reconcile's
    assert _intents(world)[-1] == (IntentAction.DRAIN, IntentStatus.DONE)


async def test_the_same_drain_twice_is_done_once_and_bad_drains_write_nothing(
    world: World,
) -> None:
    engine = world.engine()
    (node,) = await _active(world, engine, 1)
    written = len(world.store.intents())
    for names, reason, words in [
        ([node], "", "needs a reason"),
        ([node], "two\nlines", "line break"),
        (["nope-1"], "x", "no node named nope-1"),
        ([], "x", "no nodes were named"),
    ]:
        with pytest.raises(ActionRefused, match=words):
            await engine.drain(names, reason=reason, request_id="bad", **WHO)
    assert len(world.store.intents()) == written
    first = await engine.drain([node], reason="x", request_id="d1", **WHO)
    again = await engine.drain([node], reason="x", request_id="d1", **WHO)
    assert again.replayed and again.intent_id == first.intent_id
    assert [t.after for t in world.store.history(node)].count(S.DRAINING) == 1


async def test_a_node_not_in_the_scheduler_yet_cannot_be_drained(world: World) -> None:
    engine = world.engine()
    world.default_health = None  # held in bootstrapping
    result = await engine.burst("gpu", count=1, request_id="b", **WHO)
    (node,) = result.nodes
    await settle(engine, world, {node: S.BOOTSTRAPPING})
    with pytest.raises(ActionRefused, match="bootstrapping; it is not in the scheduler yet"):
        await engine.drain([node], reason="x", request_id="d", **WHO)


async def test_an_on_prem_node_is_drained_and_resumed_through_the_scheduler(
    world: World,
) -> None:
    await world.scheduler.add_node("gpu001", 8)  # a machine tidectl never launched
    engine = world.engine()
    await engine.drain(["gpu001"], reason="firmware", request_id="d", **WHO)
    record = world.store.node("gpu001")
    assert record is not None and record.kind is NodeKind.ONPREM
    assert [t.after for t in world.store.history("gpu001")] == [S.ACTIVE, S.DRAINING]
    await settle(engine, world, {"gpu001": S.DRAINED})
    with pytest.raises(ActionRefused, match="on-prem node: tidectl never terminates"):
        await engine.terminate(["gpu001"], request_id="t", **WHO)
    resumed = await engine.resume(["gpu001"], request_id="r", **WHO)
    assert [o.after for o in resumed.nodes] == [S.ACTIVE]
    (sched,) = await world.scheduler.nodes()
    assert sched.state is SchedState.IDLE
    assert world.store.ledger("gpu001") == []  # on-prem nodes never bill here


async def test_automation_never_resumes_a_persons_drain(world: World) -> None:
    await world.scheduler.add_node("gpu001", 8)
    await world.scheduler.drain(["gpu001"], "rma: bad HBM")  # a person, outside tidectl
    engine = world.engine()
    with pytest.raises(ActionRefused, match="drained by a person"):
        await engine.resume(["gpu001"], request_id="r", automation=True, **WHO)
    assert (await world.scheduler.nodes())[0].state is SchedState.DRAINED
    # A person asking through tidectl may.
    await engine.resume(["gpu001"], request_id="r2", **WHO)
    assert (await world.scheduler.nodes())[0].state is SchedState.IDLE


async def test_terminate_refuses_a_node_with_a_job_and_ends_a_drained_one(world: World) -> None:
    engine = world.engine()
    (node,) = await _active(world, engine, 1)
    world.scheduler.submit(JobSpec("train", "bo", 1, 8, 600.0))
    with pytest.raises(ActionRefused, match="it is active; drain it first"):
        await engine.terminate([node], request_id="t1", **WHO)
    await engine.drain([node], reason="done", request_id="d", **WHO)
    with pytest.raises(ActionRefused, match="draining; its drain is not finished"):
        await engine.terminate([node], request_id="t2", **WHO)
    world.scheduler.advance(700.0)
    await settle(engine, world, {node: S.DRAINED})
    result = await engine.terminate([node], request_id="t3", **WHO)
    assert [o.after for o in result.nodes] == [S.TERMINATING]
    assert await world.scheduler.nodes() == []  # let go before the instance ends
    await settle(engine, world, {node: S.TERMINATED})
    assert {i.state for i in await world.instances()} <= {InstanceState.TERMINATED}
    (stretch,) = world.store.ledger(node)
    assert stretch.stopped_at is not None and stretch.price_per_hour == 24.0
    assert world.store.burn_rate() == 0.0


async def test_terminate_refuses_when_the_scheduler_still_shows_a_job(world: World) -> None:
    """The store says drained, the scheduler disagrees: the scheduler's word wins."""
    engine = world.engine()
    (node,) = await _active(world, engine, 1)
    await engine.drain([node], reason="done", request_id="d", **WHO)
    await settle(engine, world, {node: S.DRAINED})
    await world.scheduler.resume([node])  # someone resumed it outside tidectl
    world.scheduler.submit(JobSpec("train", "bo", 1, 8, 600.0))
    with pytest.raises(ActionRefused, match="never terminates a node with a job on it"):
        await engine.terminate([node], request_id="t", **WHO)
    assert world.states()[node] is S.DRAINED


async def test_cancel_ends_the_nodes_that_have_not_joined(world: World) -> None:
    engine = world.engine()
    world.default_health = None
    result = await engine.burst("gpu", count=3, request_id="b", **WHO)
    await settle(engine, world, dict.fromkeys(result.nodes, S.BOOTSTRAPPING))
    assert result.intent_id is not None
    with pytest.raises(ActionRefused, match="no burst with intent id"):
        await engine.cancel("nope", request_id="c0", **WHO)
    cancelled = await engine.cancel(result.intent_id, request_id="c", **WHO)
    assert {o.after for o in cancelled.nodes} == {S.TERMINATING}
    await settle(engine, world, dict.fromkeys(result.nodes, S.TERMINATED))
    assert {i.state for i in await world.instances()} == {InstanceState.TERMINATED}


async def test_a_scheduler_that_fails_the_drain_fails_the_intent_and_moves_nothing(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = world.engine()
    (node,) = await _active(world, engine, 1)

    async def down(nodes: object, reason: str) -> None:
        raise SchedulerUnavailableError("slurmctld does not answer")

    monkeypatch.setattr(world.scheduler, "drain", down)
    with pytest.raises(ActionFailed, match="refused the drain: slurmctld does not answer"):
        await engine.drain([node], reason="x", request_id="d", **WHO)
    assert world.states()[node] is S.ACTIVE
    assert _intents(world)[-1] == (IntentAction.DRAIN, IntentStatus.FAILED)


async def test_recovery_finishes_a_drain_the_control_plane_stopped_in(world: World) -> None:
    """The intent was written, then the process died before asking the scheduler."""
    engine = world.engine()
    (node,) = await _active(world, engine, 1)
    world.store.add_intent(
        token="drain:lost",
        action=IntentAction.DRAIN,
        pool=None,
        actor="ana",
        frontend="cli",
        request_id="lost",
        at=world.clock(),
        detail={"nodes": [node], "reason": "kernel update"},
    )
    restarted = world.engine()
    (sentence,) = await restarted.recover()
    assert "drain set on 1 node(s)" in sentence
    assert world.states()[node] is S.DRAINING
    assert (await world.scheduler.nodes())[0].reason == "kernel update"
    assert await restarted.recover() == []  # nothing pending any more


async def test_recovery_closes_the_unlaunched_nodes_of_an_interrupted_burst(
    world: World,
) -> None:
    engine = world.engine()
    intent = world.store.add_intent(
        token="burst:lost",
        action=IntentAction.BURST,
        pool="gpu",
        actor="ana",
        frontend="cli",
        request_id="lost",
        at=world.clock(),
        count=1,
    )
    world.store.add_node(
        "gpu-lost-1",
        NodeKind.CLOUD,
        "gpu",
        S.REQUESTED,
        world.clock(),
        reason="burst",
        actor="ana",
        request_id="lost",
        intent_id=intent.id,
    )
    (sentence,) = await engine.recover()
    assert "1 unlaunched node(s) closed" in sentence
    await settle(engine, world, {"gpu-lost-1": S.TERMINATED})
    assert world.store.intent(intent.id).status is IntentStatus.FAILED  # type: ignore[union-attr]


async def test_an_orphan_of_a_cancelled_burst_is_ended_not_brought_in(world: World) -> None:
    """A launch whose answer was lost surfaces after its burst was cancelled: it is adopted
    (known, billed) and terminated at once, never joined."""
    engine = world.engine()
    world.default_health = None
    result = await engine.burst("gpu", count=1, request_id="b", **WHO)
    assert result.intent_id is not None
    await engine.cancel(result.intent_id, request_id="c", **WHO)
    late = await world.cloud.launch(
        LaunchRequest(
            pool="gpu",
            count=1,
            instance_type="sim.gpu8",
            region="sim-local",
            image_id="sim-default",
            token="lost-answer",
            tags=ownership_tags(CLUSTER, "gpu", result.intent_id),
        )
    )
    world.default_health = True
    orphan = orphan_name("gpu", late[0].instance_id)
    await settle(engine, world, {orphan: S.TERMINATED})
    assert S.JOINING not in [t.after for t in world.store.history(orphan)]
    assert await world.scheduler.nodes() == []
