"""The scheduler as the console words it: a node's state as sinfo's short form, its flags,
reason and who set it, its jobs with the time each may still run, and the pending demand."""

from __future__ import annotations

import io

import pytest
from rich.console import Console, RenderableType

from tidectl.console.scheduler.base import (
    Job,
    JobState,
    NodeFlag,
    SchedNode,
    SchedState,
    SchedulerSnapshot,
)
from tidectl.console.view.actions import job_line, time_left
from tidectl.console.view.scheduler import demand_summary, node_scheduler, state_word

NOW = 1_800_000_000.0


def text(renderable: RenderableType) -> str:
    console = Console(width=120, file=io.StringIO(), record=True)
    console.print(renderable)
    return console.export_text()


def job(job_id: str, **fields: object) -> Job:
    base: dict[str, object] = {
        "id": job_id,
        "name": "train",
        "user": "ana",
        "state": JobState.RUNNING,
        "partition": "gpu",
        "node_count": 1,
        "gpus_per_node": 8,
        "nodes": ("cloud1",),
        "started_at": NOW - 600,
        "time_limit_s": 3 * 3600 + 600,
    }
    return Job(**(base | fields))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("state", "flags", "word"),
    [
        (SchedState.IDLE, {NodeFlag.CLOUD, NodeFlag.POWERED_DOWN}, "idle~"),
        (SchedState.IDLE, {NodeFlag.CLOUD, NodeFlag.POWERING_UP, NodeFlag.NOT_RESPONDING}, "idle#"),
        (SchedState.IDLE, {NodeFlag.POWERING_DOWN}, "idle%"),
        (SchedState.MIXED, {NodeFlag.POWER_DOWN_PENDING}, "mix!"),
        (SchedState.DRAINING, {NodeFlag.NOT_RESPONDING}, "drng*"),
        (SchedState.DRAINED, set(), "drain"),
        (SchedState.ALLOCATED, {NodeFlag.CLOUD}, "alloc"),
        (SchedState.DOWN, {NodeFlag.POWERED_DOWN}, "down~"),
    ],
)
def test_a_node_reads_as_sinfo_prints_it(
    state: SchedState, flags: set[NodeFlag], word: str
) -> None:
    assert state_word(SchedNode("cloud1", state, flags=frozenset(flags))) == word


def test_the_detail_section_has_the_reason_its_author_and_each_jobs_time_left() -> None:
    node = SchedNode(
        "cloud1",
        SchedState.DRAINING,
        reason="bad DIMM",
        reason_by="bo",
        partitions=("gpu",),
        flags=frozenset({NodeFlag.CLOUD}),
    )
    jobs = (job("41"), job("42", name="eval", user="cy", time_limit_s=None))
    shown = text(node_scheduler(node, jobs, NOW))
    assert "Scheduler drng  (cloud, partition gpu)" in shown
    assert "reason: bad DIMM (set by bo)" in shown
    assert "41   ana   train  8     3 h 00 min left" in shown
    assert "42   cy    eval   8     no time limit" in shown
    assert "not in the scheduler" in text(node_scheduler(None, (), NOW))
    assert "No job on it." in text(node_scheduler(SchedNode("n", SchedState.IDLE), (), NOW))


def test_time_left_and_the_drain_dialogs_job_line() -> None:
    assert time_left(job("1"), NOW) == "3 h 00 min left"
    assert time_left(job("1", time_limit_s=660), NOW) == "1 min left"
    assert time_left(job("1", time_limit_s=30), NOW) == "under a minute left"  # past its limit
    assert time_left(job("1", started_at=None), NOW) is None
    assert job_line(job("7"), NOW) == "7  train  (ana, 8 GPUs, 3 h 00 min left)"
    assert job_line(job("7")) == "7  train  (ana, 8 GPUs)"


def test_pending_demand_is_summed_and_explained_per_partition() -> None:
    pending = {"state": JobState.PENDING, "nodes": (), "started_at": None}
    snapshot = SchedulerSnapshot(
        jobs=(
            job("1"),
            job("2", **pending, reason="Resources"),
            job("3", **pending, reason="Resources", node_count=2),
            job("4", **pending, reason="Priority", partition="big"),
        )
    )
    assert snapshot.jobs_on("cloud1") == (job("1"),)
    assert demand_summary(snapshot.demand) == (
        "pending 3 jobs, 32 GPUs (big: 1 Priority; gpu: 2 Resources)"
    )
    assert demand_summary(SchedulerSnapshot().demand) is None
