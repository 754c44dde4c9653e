"""A scheduler whose whole state is one JSON file, so it outlives the process that uses it.

The sim scheduler keeps its nodes and jobs in memory, which a ``kill -9`` of the control plane
would wipe along with the jobs a crash test must see survive. Here every call reads the file
and every change writes it whole, atomically (a temporary file beside it, then
``os.replace``): a process killed at any moment leaves the file before or after one call,
never half of it, as a real scheduler's own state would be.

Jobs do not arrive or run by themselves: a test places them with :func:`place_job` (as if the
scheduler had started them there) and ends them with :func:`end_job`. A job placed on nodes is
running; one placed on no node is pending. The node states follow the sim scheduler: idle,
mixed or allocated by the GPUs its jobs hold; a drain is draining while a job is on the node
and drained once none is. Removing a node refuses while any job is on it.

The file is small and read on every call, synchronously: a few hundred microseconds, which a
test's event loop can afford.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from tidectl.console.scheduler.base import (
    Demand,
    DuplicateNodeError,
    InvalidRequestError,
    Job,
    JobState,
    NodeBusyError,
    SchedNode,
    SchedState,
    Scheduler,
    SchedulerUnavailableError,
    UnknownNodeError,
    check_node_name,
    check_node_names,
    check_reason,
    demand_of,
    drain_reason,
)

__all__ = ["FileScheduler", "end_job", "place_job"]

PARTITION: Final = "gpu"

# The file: {"nodes": {name: {"gpus", "drain", "reason"}},
#            "jobs": {id: {"name", "user", "nodes", "gpus_per_node", "node_count"}}}
State = dict[str, dict[str, dict[str, Any]]]


def _read(path: Path) -> State:
    try:
        text = path.read_text()
    except FileNotFoundError:
        return {"nodes": {}, "jobs": {}}
    try:
        state: State = json.loads(text)
    except json.JSONDecodeError as error:
        raise SchedulerUnavailableError(
            f"the scheduler's state file {path} is not JSON ({error}); delete it to start empty"
        ) from None
    return state


def _write(path: Path, state: State) -> None:
    """Write ``state`` whole: a reader (or a restart) sees the old file or the new one."""
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(handle, "w") as out:
            json.dump(state, out, indent=1, sort_keys=True)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _jobs_on(state: State, node: str) -> list[str]:
    return sorted(job_id for job_id, job in state["jobs"].items() if node in job["nodes"])


def place_job(
    path: Path, job_id: str, nodes: Sequence[str], *, gpus_per_node: int = 1, user: str = "test"
) -> None:
    """Start job ``job_id`` on ``nodes`` (pending if none), as the scheduler would have."""
    state = _read(path)
    unknown = [n for n in nodes if n not in state["nodes"]]
    if unknown:
        raise UnknownNodeError(unknown)
    if job_id in state["jobs"]:
        raise InvalidRequestError(f"job {job_id} exists already in {path}; pick another id")
    state["jobs"][job_id] = {
        "name": f"job-{job_id}",
        "user": user,
        "nodes": sorted(nodes),
        "gpus_per_node": gpus_per_node,
        "node_count": max(1, len(nodes)),
    }
    _write(path, state)


def end_job(path: Path, job_id: str) -> None:
    """The job finished and left its nodes."""
    state = _read(path)
    state["jobs"].pop(job_id, None)
    _write(path, state)


class FileScheduler:
    """The scheduler of the file at ``path`` (created on the first change). Implements
    :class:`~tidectl.console.scheduler.base.Scheduler`."""

    def __init__(self, path: Path) -> None:
        self.path = path

    async def nodes(self) -> list[SchedNode]:
        state = _read(self.path)
        return [self._view(state, name) for name in sorted(state["nodes"])]

    async def jobs(self, node: str | None = None) -> list[Job]:
        state = _read(self.path)
        if node is not None and node not in state["nodes"]:
            raise UnknownNodeError([node])
        return [
            _job(job_id, job)
            for job_id, job in sorted(state["jobs"].items())
            if node is None or node in job["nodes"]
        ]

    async def drain(self, nodes: Sequence[str], reason: str) -> None:
        check_reason(reason)
        state = _read(self.path)
        for name in self._known(state, nodes):
            kept = drain_reason(self._view(state, name), reason)
            state["nodes"][name].update(drain=True, reason=kept)
        _write(self.path, state)

    async def resume(self, nodes: Sequence[str]) -> None:
        state = _read(self.path)
        for name in self._known(state, nodes):
            state["nodes"][name].update(drain=False, reason=None)
        _write(self.path, state)

    async def pending_demand(self) -> Demand:
        return demand_of(await self.jobs())

    async def add_node(self, name: str, gpus: int) -> None:
        check_node_name(name)
        if isinstance(gpus, bool) or not isinstance(gpus, int) or gpus < 1:
            raise InvalidRequestError(
                f"node {name}: gpus must be a whole number of at least 1, not {gpus!r}"
            )
        state = _read(self.path)
        if name in state["nodes"]:
            raise DuplicateNodeError(name)
        state["nodes"][name] = {"gpus": gpus, "drain": False, "reason": None}
        _write(self.path, state)

    async def remove_node(self, name: str) -> None:
        state = _read(self.path)
        self._known(state, [name])
        on_it = _jobs_on(state, name)
        if on_it:
            raise NodeBusyError(name, on_it)
        del state["nodes"][name]
        _write(self.path, state)

    @staticmethod
    def _known(state: State, names: Sequence[str]) -> list[str]:
        listed = check_node_names(names)
        unknown = [n for n in listed if n not in state["nodes"]]
        if unknown:
            raise UnknownNodeError(unknown)
        return list(dict.fromkeys(listed))

    @staticmethod
    def _view(state: State, name: str) -> SchedNode:
        node = state["nodes"][name]
        jobs = _jobs_on(state, name)
        held = sum(state["jobs"][job_id]["gpus_per_node"] for job_id in jobs)
        if node["drain"]:
            sched = SchedState.DRAINING if jobs else SchedState.DRAINED
        elif not jobs:
            sched = SchedState.IDLE
        else:
            sched = SchedState.ALLOCATED if held >= node["gpus"] else SchedState.MIXED
        return SchedNode(
            name=name,
            state=sched,
            gpus=node["gpus"],
            reason=node["reason"],
            jobs=tuple(jobs),
            partitions=(PARTITION,),
        )


def _job(job_id: str, job: dict[str, Any]) -> Job:
    nodes = tuple(job["nodes"])
    return Job(
        id=job_id,
        name=job["name"],
        user=job["user"],
        state=JobState.RUNNING if nodes else JobState.PENDING,
        partition=PARTITION,
        node_count=job["node_count"],
        gpus_per_node=job["gpus_per_node"],
        nodes=nodes,
    )


if TYPE_CHECKING:  # mypy checks here that the class keeps to the interface
    _keeps_to_the_interface: Scheduler = FileScheduler(Path("scheduler.json"))
