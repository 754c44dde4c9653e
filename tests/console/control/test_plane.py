"""The ControlPlane facade over a real store, the sim cloud and the sim scheduler: who asked and
which request id reach the store, refusals and failures come out typed with a sentence, node
sets expand, waits end, and the reconcile loop runs on its own once started."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest

from tests.console.lifecycle.world import POOL, S, World
from tests.console.roles import TEST_ROLES
from tidectl.console.audit import AuditLog, read
from tidectl.console.config.loader import parse_config
from tidectl.console.control.caller import Caller, Frontend
from tidectl.console.control.errors import Failed, Refused
from tidectl.console.control.plane import ControlPlane, Progress
from tidectl.console.lifecycle.records import IntentAction
from tidectl.console.scheduler.base import SchedulerUnavailableError
from tidectl.console.scheduler.workload import JobSpec

ANA = Caller("ana", Frontend.CLI)


@pytest.fixture
async def plane(world: World, tmp_path: Path) -> AsyncIterator[ControlPlane]:
    (tmp_path / "known_hosts").write_text("")
    text = (
        '[cluster]\nname = "c1"\n[ssh]\nuser = "t"\nknown_hosts = "known_hosts"\n'
        '[[nodes]]\nnames = "gpu[1-2]"\n' + TEST_ROLES
    )
    config = replace(parse_config(text, tmp_path / "cluster.toml"), pools=(POOL,))
    # The store is the world's; a plane closed by a test closes it too (closing twice is fine).
    yield ControlPlane(
        config, world.store, world.engine(), scheduler=world.scheduler, interval_s=0.05
    )


def test_a_caller_is_a_user_and_a_front_end() -> None:
    assert str(Caller("ana", Frontend.NOTEBOOK)) == "ana (notebook)"
    assert Caller.local(Frontend.CLI).user
    with pytest.raises(ValueError, match="without spaces"):
        Caller("ana smith", Frontend.CLI)
    with pytest.raises(ValueError):
        Caller("ana", "carrier-pigeon")  # type: ignore[arg-type]


async def test_actions_carry_the_caller_and_request_id_into_the_store(
    plane: ControlPlane, world: World
) -> None:
    result = await plane.burst(ANA, "gpu", count=2, request_id="req-7")
    intent = world.store.intent(result.intent_id or "")
    assert intent is not None
    assert (intent.actor, intent.frontend, intent.request_id) == ("ana", "cli", "req-7")
    progress = await plane.wait(result.nodes, {S.ACTIVE}, timeout_s=20)
    assert progress.done == 2 and set(progress.states.values()) == {S.ACTIVE}
    names = ",".join(sorted(result.nodes))
    drained = await plane.drain(Caller("bo", Frontend.CONSOLE), names, reason="done")
    assert {o.after for o in drained.nodes} == {S.DRAINING}
    moves = [t for _, t in plane.transitions() if t.after is S.DRAINING]
    assert {(t.actor, t.request_id) for t in moves} == {
        ("bo", drained.nodes and moves[0].request_id)
    }
    assert len(moves[0].request_id) == 16  # generated when not given
    assert plane.burn_rate() == pytest.approx(2 * 24.0)


async def test_refusals_and_failures_are_typed_with_the_request_id(
    plane: ControlPlane, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(Refused, match="no pool named 'tpu'") as refused:
        await plane.burst(ANA, "tpu", count=1, request_id="r1")
    assert refused.value.request_id == "r1"
    with pytest.raises(Refused, match="not a node set"):
        await plane.drain(ANA, "gpu[1-", reason="x")
    with pytest.raises(Refused, match="no node named gpu-9"):
        await plane.resume(ANA, "gpu-9")
    with pytest.raises(Refused, match="no burst with intent id"):
        await plane.cancel(ANA, "nope")
    result = await plane.burst(ANA, "gpu", count=1)
    await plane.wait(result.nodes, {S.ACTIVE}, timeout_s=20)

    async def down(*args: object) -> None:
        raise SchedulerUnavailableError("slurmctld does not answer")

    monkeypatch.setattr(world.scheduler, "drain", down)
    with pytest.raises(Failed, match="slurmctld does not answer"):
        await plane.drain(ANA, list(result.nodes), reason="x")


async def test_a_node_set_names_every_node_it_folds(plane: ControlPlane, world: World) -> None:
    for n in (1, 2, 3):
        await world.scheduler.add_node(f"gpu{n:02d}", 8)
    result = await plane.drain(ANA, "gpu[01-03]", reason="kernel update")
    assert [o.node for o in result.nodes] == ["gpu01", "gpu02", "gpu03"]


async def test_the_loop_moves_nodes_on_its_own_and_jobs_on_lists_what_a_drain_waits_for(
    plane: ControlPlane, world: World
) -> None:
    async with plane:
        result = await plane.burst(ANA, "gpu", count=1)
        seen: list[Progress] = []
        progress = await plane.wait(result.nodes, {S.ACTIVE}, timeout_s=20, on_progress=seen.append)
        assert progress.done == 1, progress
        assert seen[-1].states == progress.states and len(seen) >= 2
        job = world.scheduler.submit(JobSpec("train", "bo", 1, 8, 60.0))
        assert [j.id for j in await plane.jobs_on(result.nodes)] == [job]
        assert await plane.price_per_hour("gpu") == 24.0
        await plane.drain(ANA, list(result.nodes), reason="done")
        await asyncio.sleep(0.2)
        assert world.states()[result.nodes[0]] is S.DRAINING  # the job still runs
        world.scheduler.advance(120.0)
        drained = await plane.wait(result.nodes, {S.DRAINED}, timeout_s=20)
        assert drained.done == 1
        assert [i.action for i in world.store.intents()] == [
            IntentAction.BURST,
            IntentAction.DRAIN,
        ]
    with pytest.raises(sqlite3.ProgrammingError):  # closing the plane closed its store
        world.store.nodes()


async def test_a_wait_that_times_out_says_where_each_node_stands(
    plane: ControlPlane, world: World
) -> None:
    world.default_health = None  # never admitted
    result = await plane.burst(ANA, "gpu", count=1)
    progress = await plane.wait(result.nodes, {S.ACTIVE}, timeout_s=0.5)
    assert progress.done == 0 and progress.elapsed_s >= 0.5
    assert set(progress.states.values()) <= {S.PROVISIONING, S.BOOTSTRAPPING}


async def test_a_pass_that_crashes_is_reported_and_the_loop_goes_on(
    plane: ControlPlane, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = 0
    real = plane.engine.reconcile_once

    async def flaky() -> object:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise KeyError("a bug in a pass")
        return await real()

    monkeypatch.setattr(plane.engine, "reconcile_once", flaky)
    async with plane:
        for _ in range(100):
            if calls >= 3:
                break
            await asyncio.sleep(0.05)
        assert calls >= 3, "the loop stopped after the crash"
        assert any("reconcile pass crashed (KeyError" in r for r in plane.reports)


async def test_a_log_that_cannot_be_written_refuses_changes_and_reads_still_work(
    plane: ControlPlane, world: World, tmp_path: Path
) -> None:
    """Fail closed: the decision's record is written before anything happens, and when it
    cannot be, nothing happens."""
    path = tmp_path / "audit.jsonl"
    plane.audit = AuditLog(path)
    assert (await plane.burst(ANA, "gpu", count=1)).launched == 1
    assert [r.outcome.split(":")[0] for r in read(path)] == ["started", "done"]
    path.unlink()  # the log is gone (a disk replaced, a careless cleanup)
    with pytest.raises(Refused, match="nothing was done: the audit log cannot be written"):
        await plane.burst(ANA, "gpu", count=1)
    assert len(await world.instances()) == 1 and len(world.store.intents()) == 1
    assert len(plane.nodes()) == 1  # reads still work
    plane.audit.close()
