"""The sim scheduler: jobs start, run their full duration, complete and leave; drain stops new
jobs and waits; nodes join and leave; the same seed gives the same cluster."""

from __future__ import annotations

import asyncio
import itertools
import math
import random

import pytest

from tidectl.console.scheduler.base import (
    DuplicateNodeError,
    InvalidReasonError,
    InvalidRequestError,
    JobState,
    NodeBusyError,
    SchedState,
    UnknownNodeError,
    automation_reason,
    is_drained_and_empty,
    may_resume,
)
from tidectl.console.scheduler.sim import FinishedJob, Outcome, SimScheduler
from tidectl.console.scheduler.workload import JobSpec, Workload, arrivals

S = SchedState


def spec(nodes: int = 1, gpus: int = 8, duration: float = 100.0, name: str = "train") -> JobSpec:
    return JobSpec(name, "ana", nodes, gpus, duration, time_limit_s=duration * 2)


def cluster(count: int = 3, gpus: int = 8, **options: object) -> SimScheduler:
    return SimScheduler({f"gpu{i}": gpus for i in range(1, count + 1)}, **options)  # type: ignore[arg-type]


async def states(sim: SimScheduler) -> dict[str, SchedState]:
    return {n.name: n.state for n in await sim.nodes()}


async def on(sim: SimScheduler, name: str) -> tuple[str, ...]:
    return next(n.jobs for n in await sim.nodes() if n.name == name)


# -- a job's life -----------------------------------------------------------------------------


async def test_a_job_starts_runs_its_duration_completes_and_leaves() -> None:
    sim = cluster(3, epilog_s=5.0, start=1000.0)
    job_id = sim.submit(spec(nodes=2, duration=100.0))

    (job,) = await sim.jobs()
    assert (job.id, job.state, job.nodes, job.started_at) == (
        job_id,
        JobState.RUNNING,
        ("gpu1", "gpu2"),
        1000.0,
    )
    assert await states(sim) == {"gpu1": S.ALLOCATED, "gpu2": S.ALLOCATED, "gpu3": S.IDLE}
    assert job.time_left(1030.0) == 170.0

    sim.advance(99.9)
    assert (await sim.jobs())[0].state is JobState.RUNNING
    sim.advance(0.1)
    assert (await sim.jobs())[0].state is JobState.COMPLETING
    assert await on(sim, "gpu1") == (job_id,)  # completing jobs still hold their nodes
    sim.advance(5.0)
    assert await sim.jobs() == []
    assert set((await states(sim)).values()) == {S.IDLE}
    assert sim.finished == (
        FinishedJob(
            job_id, spec(nodes=2), ("gpu1", "gpu2"), 1000.0, 1000.0, 1100.0, Outcome.COMPLETED
        ),
    )
    assert sim.finished[0].ran_s == 100.0


async def test_small_jobs_share_a_node_fullest_first() -> None:
    sim = cluster(2)
    first = sim.submit(spec(gpus=4))
    assert await states(sim) == {"gpu1": S.MIXED, "gpu2": S.IDLE}
    second = sim.submit(spec(gpus=4))  # packs beside the first, leaving gpu2 whole
    assert await states(sim) == {"gpu1": S.ALLOCATED, "gpu2": S.IDLE}
    assert await on(sim, "gpu1") == (first, second)
    assert [j.id for j in await sim.jobs("gpu1")] == [first, second]
    assert await sim.jobs("gpu2") == []


async def test_pending_jobs_say_why_and_start_first_fit_in_queue_order() -> None:
    sim = cluster(2)
    running = sim.submit(spec(nodes=1, duration=50.0))
    too_big = sim.submit(spec(nodes=3))  # more nodes than exist
    busy = sim.submit(spec(nodes=2))  # two nodes exist, one is busy
    small = sim.submit(spec(nodes=1))  # fits behind them

    jobs = {j.id: j for j in await sim.jobs()}
    assert jobs[running].state is JobState.RUNNING
    assert jobs[small].state is JobState.RUNNING  # no reservations: it went past the others
    assert (jobs[too_big].state, jobs[too_big].reason) == (JobState.PENDING, "ReqNodeNotAvail")
    assert (jobs[busy].state, jobs[busy].reason) == (JobState.PENDING, "Resources")
    assert jobs[busy].started_at is None and jobs[busy].nodes == ()

    demand = await sim.pending_demand()
    gpu = demand.of("gpu")
    assert (gpu.jobs, gpu.nodes, gpu.gpus, gpu.largest_job_nodes) == (2, 5, 40, 3)
    assert dict(gpu.reasons) == {"ReqNodeNotAvail": 1, "Resources": 1}

    sim.advance(200.0)  # both single-node jobs are gone; the 2-node job starts, the 3 waits
    jobs = {j.id: j for j in await sim.jobs()}
    assert jobs[busy].state is JobState.RUNNING
    assert jobs[busy].started_at == 105.0  # when the second node freed up: 100 + 5 epilog
    assert (await sim.pending_demand()).of("gpu").nodes == 3


# -- drain and resume -------------------------------------------------------------------------


async def test_drain_lets_every_job_finish_then_the_node_is_drained() -> None:
    sim = cluster(2, epilog_s=5.0)
    long_job = sim.submit(spec(gpus=4, duration=1000.0))
    sim.advance(10.0)

    await sim.drain(["gpu1"], automation_reason("idle pool"))
    (gpu1,) = [n for n in await sim.nodes() if n.name == "gpu1"]
    assert (gpu1.state, gpu1.reason, gpu1.reason_at) == (S.DRAINING, "tidectl: idle pool", 10.0)
    assert not is_drained_and_empty(gpu1)

    # gpu1 has 4 GPUs free but is draining: the next job goes to gpu2, the one after waits.
    elsewhere = sim.submit(spec(gpus=4, duration=5000.0))
    waiting = sim.submit(spec(gpus=8, duration=10.0))
    assert await on(sim, "gpu1") == (long_job,)
    assert await on(sim, "gpu2") == (elsewhere,)

    sim.advance(990.0)  # the long job's work ends at t=1000: completing, still on the node
    assert (await states(sim))["gpu1"] is S.DRAINING
    sim.advance(5.0)
    gpu1 = (await sim.nodes())[0]
    assert gpu1.state is S.DRAINED and gpu1.jobs == ()
    assert is_drained_and_empty(gpu1, await sim.jobs())
    (done,) = sim.finished
    assert (done.id, done.outcome, done.ran_s) == (long_job, Outcome.COMPLETED, 1000.0)
    assert {j.id: j.state for j in await sim.jobs()}[waiting] is JobState.PENDING

    assert may_resume(gpu1)
    await sim.resume(["gpu1"])
    gpu1 = (await sim.nodes())[0]
    assert (gpu1.state, gpu1.reason, gpu1.jobs) == (S.ALLOCATED, None, (waiting,))


async def test_an_idle_node_drains_at_once_and_resume_is_idempotent() -> None:
    sim = cluster(1)
    await sim.drain(["gpu1"], "maintenance")
    assert await states(sim) == {"gpu1": S.DRAINED}
    await sim.resume(["gpu1"])
    await sim.resume(["gpu1"])
    assert await states(sim) == {"gpu1": S.IDLE}


async def test_an_automation_drain_keeps_a_persons_reason() -> None:
    sim = cluster(1)
    await sim.drain(["gpu1"], "bad DIMM, ticket 4411")
    await sim.drain(["gpu1"], automation_reason("idle"))
    (gpu1,) = await sim.nodes()
    assert gpu1.reason == "bad DIMM, ticket 4411"
    assert not may_resume(gpu1)

    sim2 = cluster(1)
    await sim2.drain(["gpu1"], automation_reason("idle"))
    await sim2.drain(["gpu1"], "bad DIMM, ticket 4411")  # the person's drain takes over
    (gpu1,) = await sim2.nodes()
    assert gpu1.reason == "bad DIMM, ticket 4411" and not may_resume(gpu1)


async def test_drain_and_resume_are_all_or_nothing_on_unknown_names() -> None:
    sim = cluster(2)
    with pytest.raises(UnknownNodeError, match="no nodes named gpu8, gpu9"):
        await sim.drain(["gpu1", "gpu8", "gpu9"], "maintenance")
    assert await states(sim) == {"gpu1": S.IDLE, "gpu2": S.IDLE}
    await sim.drain(["gpu1"], "maintenance")
    with pytest.raises(UnknownNodeError, match="has no node named gpu8;"):
        await sim.resume(["gpu1", "gpu8"])
    assert (await states(sim))["gpu1"] is S.DRAINED


async def test_bad_drain_requests_are_refused() -> None:
    sim = cluster(1)
    with pytest.raises(InvalidRequestError, match=r"\['gpu1'\]"):
        await sim.drain("gpu1", "maintenance")
    with pytest.raises(InvalidReasonError):
        await sim.drain(["gpu1"], "")
    with pytest.raises(UnknownNodeError):
        await sim.jobs("gpu9")
    assert await states(sim) == {"gpu1": S.IDLE}


# -- nodes joining and leaving ----------------------------------------------------------------


async def test_an_added_node_takes_waiting_jobs_and_a_busy_node_cannot_leave() -> None:
    sim = cluster(1)
    first = sim.submit(spec(duration=100.0))
    second = sim.submit(spec(duration=100.0))
    assert (await sim.pending_demand()).jobs == 1

    await sim.add_node("burst1", 8)
    assert await on(sim, "burst1") == (second,)
    assert (await sim.pending_demand()).jobs == 0

    with pytest.raises(NodeBusyError) as refused:
        await sim.remove_node("burst1")
    assert str(refused.value) == (
        f"cannot remove burst1: 1 job is still on it ({second}); drain it and wait until it is "
        "drained and empty (no job is ever killed to free a node)"
    )
    assert await on(sim, "burst1") == (second,)  # refused: nothing changed

    await sim.drain(["burst1"], automation_reason("burst over"))
    sim.advance(200.0)
    await sim.remove_node("burst1")
    assert [n.name for n in await sim.nodes()] == ["gpu1"]
    assert {f.id: f.outcome for f in sim.finished} == {
        first: Outcome.COMPLETED,
        second: Outcome.COMPLETED,
    }


async def test_adding_and_removing_refuse_bad_names() -> None:
    sim = cluster(1)
    with pytest.raises(DuplicateNodeError, match="already has a node named gpu1"):
        await sim.add_node("gpu1", 8)
    with pytest.raises(InvalidRequestError, match="at least 1"):
        await sim.add_node("burst1", 0)
    with pytest.raises(InvalidRequestError, match="not a node name"):
        await sim.add_node("burst[1-2]", 8)
    with pytest.raises(UnknownNodeError):
        await sim.remove_node("burst1")
    assert [n.name for n in await sim.nodes()] == ["gpu1"]


async def test_a_lost_node_fails_its_jobs_and_frees_their_other_nodes() -> None:
    sim = cluster(3)
    wide = sim.submit(spec(nodes=2, duration=1000.0))
    sim.advance(30.0)
    sim.node_lost("gpu1", "instance vanished")

    (gpu1, gpu2, _) = await sim.nodes()
    assert (gpu1.state, gpu1.reason, gpu1.jobs) == (S.DOWN, "instance vanished", ())
    assert gpu2.state is S.IDLE
    assert not may_resume(gpu1)
    (lost,) = sim.finished
    assert (lost.id, lost.outcome, lost.ran_s) == (wide, Outcome.NODE_FAILED, 30.0)

    await sim.remove_node("gpu1")  # no jobs left on it: it may leave
    assert [n.name for n in await sim.nodes()] == ["gpu2", "gpu3"]


# -- the clock --------------------------------------------------------------------------------


def test_the_clock_never_steps_back() -> None:
    sim = cluster(1, start=50.0)
    with pytest.raises(ValueError, match="cannot step back to 49"):
        sim.step(49.0)
    with pytest.raises(ValueError, match="zero or more"):
        sim.advance(-1.0)


async def test_run_steps_from_the_clock_and_ignores_a_clock_going_back() -> None:
    readings = itertools.chain([10.0, 20.0, 15.0], itertools.repeat(30.0))
    sim = cluster(1)
    sim.submit(spec(duration=12.0))
    task = asyncio.create_task(sim.run(clock=lambda: next(readings), interval_s=0.001))
    for _ in range(200):
        await asyncio.sleep(0.001)
        if sim.now == 30.0:
            break
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert sim.now == 30.0
    assert [f.ended_at for f in sim.finished] == [12.0]


# -- determinism ------------------------------------------------------------------------------


async def snapshot(sim: SimScheduler) -> tuple[object, ...]:
    return (sim.now, await sim.nodes(), await sim.jobs(), sim.finished)


async def scripted(seed: int, steps: list[float]) -> tuple[object, ...]:
    """A busy 6-node cluster driven through the same script of steps, drains and resumes."""
    sim = cluster(6, seed=seed, workload=Workload())
    for at in steps:
        sim.step(at)
        if at == 3600.0:
            await sim.drain(["gpu2", "gpu5"], automation_reason("scale in"))
        if at == 5 * 3600.0:
            await sim.resume(["gpu5"])
    return await snapshot(sim)


async def test_the_same_seed_gives_the_same_cluster_however_often_it_is_stepped() -> None:
    marks = [3600.0, 5 * 3600.0, 9 * 3600.0]
    coarse = await scripted(7, marks)
    assert await scripted(7, marks) == coarse

    rng = random.Random(1)
    fine: list[float] = sorted({*marks, *(rng.uniform(0, 9 * 3600.0) for _ in range(300))})
    assert await scripted(7, fine) == coarse

    other = await scripted(8, marks)
    assert other != coarse
    _, _, _, finished = coarse
    assert isinstance(finished, tuple) and len(finished) > 10  # the script did real work


def test_arrivals_are_seeded_bounded_and_time_scale_only_compresses_them() -> None:
    workload = Workload(min_duration_s=300.0, max_duration_s=6 * 3600.0, max_nodes=8)
    first = list(itertools.islice(arrivals(workload, seed=3, start=0.0), 500))
    assert first == list(itertools.islice(arrivals(workload, seed=3, start=0.0), 500))
    assert first != list(itertools.islice(arrivals(workload, seed=4, start=0.0), 500))

    sizes = {a.spec.node_count for a in first}
    assert sizes == {1, 2, 4, 8}
    assert all(300.0 <= a.spec.duration_s <= 6 * 3600.0 for a in first)
    assert all((a.spec.time_limit_s or 0) >= a.spec.duration_s for a in first)
    assert all(a.spec.gpus_per_node == 8 for a in first if a.spec.node_count > 1)
    assert [a.at for a in first] == sorted(a.at for a in first)

    fast = Workload(min_duration_s=300.0, max_duration_s=6 * 3600.0, time_scale=1 / 60)
    scaled = list(itertools.islice(arrivals(fast, seed=3, start=0.0), 500))
    for slow, quick in zip(first, scaled, strict=True):
        assert math.isclose(quick.at, slow.at / 60)
        assert math.isclose(quick.spec.duration_s, slow.spec.duration_s / 60)
        assert (quick.spec.name, quick.spec.node_count) == (slow.spec.name, slow.spec.node_count)


async def test_arrivals_stop_queuing_when_the_queue_is_full() -> None:
    sim = SimScheduler({}, workload=Workload(mean_gap_s=60.0, max_queue=5))
    sim.advance(24 * 3600.0)
    jobs = await sim.jobs()
    assert len(jobs) == 5 and all(j.state is JobState.PENDING for j in jobs)
    assert {j.reason for j in jobs} == {"ReqNodeNotAvail"}


@pytest.mark.parametrize(
    ("fields", "words"),
    [
        ({"node_count": 0}, "node_count must be a whole number"),
        ({"gpus_per_node": True}, "gpus_per_node must be a whole number"),
        ({"duration_s": 0.0}, "duration_s must be a positive"),
        ({"duration_s": 100.0, "time_limit_s": 50.0}, "shorter than its duration"),
        ({"name": ""}, "needs a name and a user"),
    ],
)
def test_job_specs_that_cannot_run_are_refused(fields: dict[str, object], words: str) -> None:
    values: dict[str, object] = {
        "name": "train",
        "user": "ana",
        "node_count": 1,
        "gpus_per_node": 8,
        "duration_s": 10.0,
    }
    values.update(fields)
    with pytest.raises(InvalidRequestError, match=words):
        JobSpec(**values)  # type: ignore[arg-type]


def test_workloads_that_make_no_sense_are_refused() -> None:
    with pytest.raises(InvalidRequestError, match="swap them"):
        Workload(min_duration_s=100.0, max_duration_s=10.0)
    with pytest.raises(InvalidRequestError, match="time_scale must be a positive"):
        Workload(time_scale=0.0)
    with pytest.raises(InvalidRequestError, match="epilog_s"):
        SimScheduler({}, epilog_s=-1.0)
