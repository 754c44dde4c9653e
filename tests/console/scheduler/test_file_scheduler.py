"""The file-backed scheduler fake keeps its word across instances (processes) and keeps the
scheduler rules: a busy node cannot leave, a drain waits for the jobs on the node."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fakes.file_scheduler import FileScheduler, end_job, place_job
from tidectl.console.scheduler.base import (
    DuplicateNodeError,
    JobState,
    NodeBusyError,
    SchedState,
    UnknownNodeError,
)


async def test_nodes_and_jobs_outlive_the_instance_that_wrote_them(tmp_path: Path) -> None:
    path = tmp_path / "scheduler.json"
    await FileScheduler(path).add_node("h100-1", 8)
    place_job(path, "7", ["h100-1"], gpus_per_node=4)

    again = FileScheduler(path)  # as a restarted control plane would
    [node] = await again.nodes()
    [job] = await again.jobs("h100-1")
    assert (node.name, node.state, node.jobs) == ("h100-1", SchedState.MIXED, ("7",))
    assert (job.id, job.state, job.nodes) == ("7", JobState.RUNNING, ("h100-1",))
    assert [p.name for p in tmp_path.iterdir()] == ["scheduler.json"]  # no temporary left


async def test_a_busy_node_cannot_leave_and_a_drain_waits_for_its_job(tmp_path: Path) -> None:
    scheduler = FileScheduler(tmp_path / "scheduler.json")
    await scheduler.add_node("h100-1", 8)
    with pytest.raises(DuplicateNodeError):
        await scheduler.add_node("h100-1", 8)
    place_job(scheduler.path, "7", ["h100-1"], gpus_per_node=8)
    await scheduler.drain(["h100-1"], "tidectl: idle")

    with pytest.raises(NodeBusyError, match="7"):
        await scheduler.remove_node("h100-1")
    assert [n.state for n in await scheduler.nodes()] == [SchedState.DRAINING]

    end_job(scheduler.path, "7")
    assert [n.state for n in await scheduler.nodes()] == [SchedState.DRAINED]
    await scheduler.remove_node("h100-1")
    assert await scheduler.nodes() == []
    with pytest.raises(UnknownNodeError):
        await scheduler.jobs("h100-1")
