"""The slurm scheduler against a real Slurm (tests/harness/slurm.py): nodes and jobs as Slurm
reports them, a drain that lets the running job finish, resume, and a person's drain that
automation neither overwrites nor may resume."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import pytest

from tests.harness.slurm import SlurmCluster
from tidectl.console.scheduler.base import (
    InvalidReasonError,
    InvalidRequestError,
    JobState,
    SchedNode,
    SchedState,
    UnknownNodeError,
    automation_reason,
    is_drained_and_empty,
    may_resume,
    resume_refusal,
)
from tidectl.console.scheduler.slurm import SlurmScheduler

S = SchedState
T = TypeVar("T")
WAIT_S = 15.0  # a job starts on slurmctld's next scheduling pass, about 1-2 s here


def scheduler(cluster: SlurmCluster) -> SlurmScheduler:
    return SlurmScheduler(env=cluster.env, timeout_s=10)


async def eventually(read: Callable[[], Awaitable[T]], ok: Callable[[T], bool]) -> T:
    """Poll ``read()`` until ``ok`` (Slurm offers no event to await); fail after WAIT_S."""
    deadline = time.monotonic() + WAIT_S
    while True:
        value = await read()
        if ok(value):
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"Slurm did not get there in {WAIT_S} s; last read: {value!r}")
        await asyncio.sleep(0.1)


async def node(sched: SlurmScheduler, name: str) -> SchedNode:
    return next(n for n in await sched.nodes() if n.name == name)


async def running_on(sched: SlurmScheduler, job_id: str) -> None:
    jobs = await eventually(
        sched.jobs, lambda jobs: any(j.id == job_id and j.state is JobState.RUNNING for j in jobs)
    )
    assert next(j for j in jobs if j.id == job_id).nodes


async def test_nodes_are_every_configured_node_idle(slurm: SlurmCluster) -> None:
    nodes = await scheduler(slurm).nodes()

    assert [n.name for n in nodes] == list(slurm.names)
    assert {n.state for n in nodes} == {S.IDLE}
    assert all(n.partitions == ("gpu",) and n.jobs == () and n.reason is None for n in nodes)


async def test_a_submitted_job_shows_in_jobs_on_its_node(slurm: SlurmCluster) -> None:
    sched = scheduler(slurm)
    job_id = slurm.submit("sleep 3", "-w", "onprem1", "-J", "probe")

    await running_on(sched, job_id)

    (job,) = await sched.jobs("onprem1")
    assert (job.id, job.name, job.user, job.state, job.nodes, job.partition) == (
        job_id,
        "probe",
        "root",
        JobState.RUNNING,
        ("onprem1",),
        "gpu",
    )
    assert job.started_at is not None and abs(job.started_at - time.time()) < 30
    assert await sched.jobs("onprem2") == []
    onprem1 = await node(sched, "onprem1")
    assert (onprem1.state, onprem1.jobs) == (S.MIXED, (job_id,))  # 1 of its 2 CPUs taken
    with pytest.raises(UnknownNodeError, match="nosuch"):
        await sched.jobs("nosuch")


async def test_drain_lets_the_running_job_finish_then_drained_then_resume_gives_idle(
    slurm: SlurmCluster,
) -> None:
    sched = scheduler(slurm)
    job_id = slurm.submit("sleep 3", "-w", "onprem1")
    await running_on(sched, job_id)

    await sched.drain(["onprem1"], automation_reason("test drain"))

    draining = await node(sched, "onprem1")
    assert (draining.state, draining.jobs) == (S.DRAINING, (job_id,))
    assert (draining.reason, draining.reason_by) == ("tidectl: test drain", "root")
    assert draining.reason_at is not None and abs(draining.reason_at - time.time()) < 30
    assert not is_drained_and_empty(draining, await sched.jobs())
    assert slurm.job_fields(job_id)["JobState"] == "RUNNING"  # a drain is not a kill

    drained = await eventually(lambda: node(sched, "onprem1"), lambda n: n.state is S.DRAINED)
    assert drained.jobs == () and is_drained_and_empty(drained, await sched.jobs())
    finished = slurm.job_fields(job_id)
    assert (finished["JobState"], finished["ExitCode"]) == ("COMPLETED", "0:0")
    assert finished["RunTime"] >= "00:00:03"  # ran its whole `sleep 3`
    assert may_resume(drained)

    await sched.resume(["onprem1"])

    resumed = await node(sched, "onprem1")
    assert (resumed.state, resumed.reason) == (S.IDLE, None)  # `idle*` for a moment is still idle


async def test_a_persons_drain_keeps_its_reason_and_automation_may_not_resume_it(
    slurm: SlurmCluster,
) -> None:
    sched = scheduler(slurm)
    slurm.run("scontrol", "update", "NodeName=onprem2", "State=DRAIN", "Reason=swap GPU 3")

    await sched.drain(["onprem2", "onprem3"], automation_reason("idle for 30 minutes"))

    by_name = {n.name: n for n in await sched.nodes()}
    person, automated = by_name["onprem2"], by_name["onprem3"]
    assert (person.state, person.reason) == (S.DRAINED, "swap GPU 3")
    assert (automated.state, automated.reason) == (S.DRAINED, "tidectl: idle for 30 minutes")
    assert not may_resume(person) and "drained by a person" in (resume_refusal(person) or "")
    assert may_resume(automated)

    # A person's drain over automation's takes it over: from then on it is theirs to undo.
    await sched.drain(["onprem3"], "ops: cabling")
    taken = await node(sched, "onprem3")
    assert taken.reason == "ops: cabling" and not may_resume(taken)


async def test_drain_and_resume_are_all_or_nothing_on_unknown_names(slurm: SlurmCluster) -> None:
    sched = scheduler(slurm)

    with pytest.raises(UnknownNodeError, match="nosuch"):
        await sched.drain(["onprem1", "nosuch"], automation_reason("x"))
    with pytest.raises(UnknownNodeError, match="nosuch"):
        await sched.resume(["nosuch"])

    assert (await node(sched, "onprem1")).state is S.IDLE


async def test_resume_leaves_a_node_that_is_not_drained(slurm: SlurmCluster) -> None:
    sched = scheduler(slurm)

    await sched.resume(["onprem1", "onprem2"])  # Slurm itself would refuse: not drained

    assert {n.state for n in await sched.nodes()} == {S.IDLE}


async def test_pending_demand_counts_a_job_that_cannot_start(slurm: SlurmCluster) -> None:
    sched = scheduler(slurm)
    slurm.submit("true", "-N", "5")  # five nodes wanted, three exist: it waits

    demand = await sched.pending_demand()

    gpu = demand.of("gpu")
    assert (gpu.jobs, gpu.nodes, gpu.largest_job_nodes) == (1, 5, 5)
    assert demand.jobs == 1


@pytest.mark.parametrize("names", [["onprem1,onprem2"], ["onprem[1-2]"], ["a b"], "onprem1", []])
async def test_node_names_are_checked_before_any_command(names: list[str]) -> None:
    sched = SlurmScheduler(env={"PATH": "/nonexistent"})  # any command run would fail otherwise

    with pytest.raises(InvalidRequestError):
        await sched.drain(names, automation_reason("x"))
    with pytest.raises(InvalidRequestError):
        await sched.resume(names)


async def test_a_bad_reason_is_refused_before_any_command() -> None:
    sched = SlurmScheduler(env={"PATH": "/nonexistent"})

    with pytest.raises(InvalidReasonError):
        await sched.drain(["onprem1"], "two\nlines")
