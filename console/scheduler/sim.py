"""The ``sim`` scheduler: a job queue for the demo and the tests, so that drain, idle and bursting
mean something without a real Slurm.

The model, kept deliberately small:

* Jobs come from a seeded :mod:`workload` stream (or :meth:`SimScheduler.submit`), wait in one
  queue, and start first-fit in queue order on nodes that are up, not drained, and have enough
  free GPUs (a node may hold several small jobs: mixed). A job that cannot start yet waits;
  jobs behind it that fit start (no reservations, so big jobs wait: that is pending demand).
* A job runs for exactly its duration, then is *completing* for ``epilog_s`` (still holding its
  GPUs), then leaves.
* Drain stops new jobs on a node and touches nothing else: the jobs on it run to completion,
  and the node is drained once the last one has left. Nothing in this module ends a job early
  except :meth:`SimScheduler.node_lost`, which stands for hardware vanishing, never a drain.

Time moves only through :meth:`SimScheduler.step` (or :meth:`~SimScheduler.advance`), which
replays every event up to the given time in order, so the outcome does not depend on how often
it is stepped. :meth:`~SimScheduler.run` steps it from a clock for the demo.
"""

from __future__ import annotations

import asyncio
import enum
import math
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

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
    UnknownNodeError,
    check_node_name,
    check_node_names,
    check_reason,
    demand_of,
    drain_reason,
)
from tidectl.console.scheduler.workload import Arrival, JobSpec, Workload, arrivals

__all__ = ["FinishedJob", "Outcome", "SimScheduler"]

DEFAULT_PARTITION: Final = "gpu"
# Slurm's words for why a job waits, so the console shows the same thing for both schedulers.
WAITING_FOR_BUSY_NODES: Final = "Resources"  # enough nodes could take it; they are busy
WAITING_FOR_MORE_NODES: Final = "ReqNodeNotAvail"  # too few usable nodes: only more will do


class Outcome(enum.StrEnum):
    COMPLETED = "completed"  # ran its full duration
    NODE_FAILED = "node_failed"  # a node under it was lost (node_lost); never a drain


@dataclass(frozen=True, slots=True)
class FinishedJob:
    """A job that has left the scheduler. ``ended_at`` is when its work stopped: start plus
    duration for a completed job, the moment of the loss for a failed one."""

    id: str
    spec: JobSpec
    nodes: tuple[str, ...]
    submitted_at: float
    started_at: float
    ended_at: float
    outcome: Outcome

    @property
    def ran_s(self) -> float:
        return self.ended_at - self.started_at


@dataclass(slots=True)
class _SimJob:
    id: str
    spec: JobSpec
    submitted_at: float
    state: JobState = JobState.PENDING
    nodes: tuple[str, ...] = ()
    started_at: float = math.nan
    ends_at: float = math.inf  # when its work is done (running → completing)
    done_at: float = math.inf  # when it leaves its nodes (completing → gone)


@dataclass(slots=True)
class _SimNode:
    name: str
    gpus: int
    drain: bool = False
    down: bool = False
    reason: str | None = None
    reason_at: float | None = None
    held: dict[str, int] = field(default_factory=dict)  # job id → GPUs it holds here

    @property
    def free(self) -> int:
        return self.gpus - sum(self.held.values())

    @property
    def usable(self) -> bool:
        return not (self.drain or self.down)

    def state(self) -> SchedState:
        if self.down:
            return SchedState.DOWN
        if self.drain:
            return SchedState.DRAINING if self.held else SchedState.DRAINED
        if not self.held:
            return SchedState.IDLE
        return SchedState.ALLOCATED if self.free == 0 else SchedState.MIXED


class SimScheduler:
    """The sim scheduler. Implements :class:`~tidectl.console.scheduler.base.Scheduler`.

    ``nodes`` maps names to GPU counts. ``workload`` None means no random arrivals: only
    submitted jobs. ``start`` is the sim clock's first reading; to open the demo on a busy
    cluster, start an hour in the past and :meth:`step` to now.
    """

    def __init__(
        self,
        nodes: Mapping[str, int] | None = None,
        *,
        seed: int = 0,
        start: float = 0.0,
        workload: Workload | None = None,
        partition: str = DEFAULT_PARTITION,
        epilog_s: float = 5.0,
    ) -> None:
        if not (math.isfinite(epilog_s) and epilog_s >= 0):
            raise InvalidRequestError(
                f"epilog_s must be zero or a positive number of seconds, not {epilog_s!r}"
            )
        self._now = float(start)
        self._partition = partition
        self._epilog_s = float(epilog_s)
        self._nodes: dict[str, _SimNode] = {}
        self._jobs: dict[str, _SimJob] = {}  # pending, running, completing; in submission order
        self._finished: list[FinishedJob] = []
        self._next_id = 1000
        self._workload = workload
        self._stream: Iterator[Arrival] | None = None
        self._next_arrival: Arrival | None = None
        if workload is not None:
            self._stream = arrivals(workload, seed, self._now)
            self._next_arrival = next(self._stream)
        for name, gpus in (nodes or {}).items():
            self._add(name, gpus)

    # -- the clock ----------------------------------------------------------------------------

    @property
    def now(self) -> float:
        return self._now

    def step(self, now: float) -> None:
        """Replay every event (completions, arrivals, starts) up to ``now``, in time order."""
        if now < self._now:
            raise ValueError(
                f"the sim scheduler's clock is at {self._now} and cannot step back to {now}; "
                "pass a time at or after its `now`"
            )
        while (at := self._next_event_at()) <= now:
            if at < self._now:  # a bookkeeping bug would otherwise loop here forever
                raise RuntimeError(f"sim scheduler event at {at} is before its clock {self._now}")
            self._now = at
            self._fire()
            self._place()
        self._now = now

    def advance(self, seconds: float) -> None:
        """Step ``seconds`` forward."""
        if seconds < 0:
            raise ValueError(f"cannot advance by {seconds} seconds; give zero or more")
        self.step(self._now + seconds)

    async def run(self, clock: Callable[[], float] = time.time, interval_s: float = 1.0) -> None:
        """Step to ``clock()`` every ``interval_s`` until cancelled (the demo's driver). A clock
        that goes backwards (wall clocks do) is ignored until it catches up."""
        while True:
            self.step(max(self._now, clock()))
            await asyncio.sleep(interval_s)

    # -- the Scheduler interface --------------------------------------------------------------

    async def nodes(self) -> list[SchedNode]:
        return [self._node_view(self._nodes[name]) for name in sorted(self._nodes)]

    async def jobs(self, node: str | None = None) -> list[Job]:
        if node is not None:
            self._known([node])
            return [self._job_view(self._jobs[j]) for j in _by_id(self._nodes[node].held)]
        return [self._job_view(job) for job in self._jobs.values()]

    async def drain(self, nodes: Sequence[str], reason: str) -> None:
        check_reason(reason)
        for sim_node in self._known(nodes):
            # Jobs on the node are not touched: they finish on their own schedule in step().
            kept = drain_reason(self._node_view(sim_node), reason)
            sim_node.drain = True
            if kept != sim_node.reason:
                sim_node.reason, sim_node.reason_at = kept, self._now

    async def resume(self, nodes: Sequence[str]) -> None:
        for sim_node in self._known(nodes):
            if sim_node.usable:
                continue
            sim_node.drain = sim_node.down = False
            sim_node.reason = sim_node.reason_at = None
        self._place()

    async def pending_demand(self) -> Demand:
        return demand_of(self._job_view(j) for j in self._jobs.values())

    async def add_node(self, name: str, gpus: int) -> None:
        self._add(name, gpus)
        self._place()

    async def remove_node(self, name: str) -> None:
        (sim_node,) = self._known([name])
        if sim_node.held:
            raise NodeBusyError(name, _by_id(sim_node.held))
        del self._nodes[name]

    # -- the sim's own controls ---------------------------------------------------------------

    def submit(self, spec: JobSpec) -> str:
        """Queue ``spec`` now; it starts at once if it fits. Returns the job's id."""
        job = self._enqueue(spec)
        self._place()
        return job.id

    def node_lost(self, name: str, reason: str) -> None:
        """``name``'s hardware vanished (an instance gone, a spot interruption): the node goes
        down with ``reason`` and every job on it fails. The one way a job ends early here."""
        check_reason(reason)
        (sim_node,) = self._known([name])
        sim_node.down = True
        sim_node.reason, sim_node.reason_at = reason, self._now
        for job_id in list(sim_node.held):
            self._finish(self._jobs[job_id], Outcome.NODE_FAILED, self._now)
        self._place()  # the failed jobs' other nodes are free again

    @property
    def finished(self) -> tuple[FinishedJob, ...]:
        """Every job that has left, in the order it left."""
        return tuple(self._finished)

    # -- internals ----------------------------------------------------------------------------

    def _known(self, names: Sequence[str]) -> list[_SimNode]:
        listed = check_node_names(names)
        unknown = [n for n in listed if n not in self._nodes]
        if unknown:
            raise UnknownNodeError(unknown)
        return [self._nodes[n] for n in dict.fromkeys(listed)]

    def _add(self, name: str, gpus: int) -> None:
        check_node_name(name)
        if isinstance(gpus, bool) or not isinstance(gpus, int) or gpus < 1:
            raise InvalidRequestError(
                f"node {name}: gpus must be a whole number of at least 1, not {gpus!r}"
            )
        if name in self._nodes:
            raise DuplicateNodeError(name)
        self._nodes[name] = _SimNode(name, gpus)

    def _enqueue(self, spec: JobSpec) -> _SimJob:
        job = _SimJob(str(self._next_id), spec, self._now)
        self._next_id += 1
        self._jobs[job.id] = job
        return job

    def _next_event_at(self) -> float:
        at = self._next_arrival.at if self._next_arrival is not None else math.inf
        for job in self._jobs.values():
            if job.state is JobState.RUNNING:
                at = min(at, job.ends_at)
            elif job.state is JobState.COMPLETING:
                at = min(at, job.done_at)
        return at

    def _fire(self) -> None:
        """Everything due at ``self._now``: work that ends, jobs that leave, jobs that arrive."""
        now = self._now
        for job in list(self._jobs.values()):
            if job.state is JobState.RUNNING and job.ends_at <= now:
                job.state, job.done_at = JobState.COMPLETING, job.ends_at + self._epilog_s
            if job.state is JobState.COMPLETING and job.done_at <= now:
                self._finish(job, Outcome.COMPLETED, job.ends_at)
        while self._next_arrival is not None and self._next_arrival.at <= now:
            assert self._workload is not None and self._stream is not None
            waiting = sum(j.state is JobState.PENDING for j in self._jobs.values())
            if waiting < self._workload.max_queue:
                self._enqueue(self._next_arrival.spec)
            # A dropped arrival still uses its draw, so later arrivals stay the same.
            self._next_arrival = next(self._stream)

    def _finish(self, job: _SimJob, outcome: Outcome, ended_at: float) -> None:
        for name in job.nodes:
            sim_node = self._nodes.get(name)
            if sim_node is not None:
                sim_node.held.pop(job.id, None)
        del self._jobs[job.id]
        self._finished.append(
            FinishedJob(
                job.id, job.spec, job.nodes, job.submitted_at, job.started_at, ended_at, outcome
            )
        )

    def _place(self) -> None:
        """Start every pending job that fits, in queue order (first fit, no reservations)."""
        free = {n.name: n.free for n in self._nodes.values() if n.usable and n.free > 0}
        for job in list(self._jobs.values()):
            if not free:
                return
            if job.state is not JobState.PENDING:
                continue
            spec = job.spec
            fits = [name for name, gpus in free.items() if gpus >= spec.gpus_per_node]
            if len(fits) < spec.node_count:
                continue
            # Fullest nodes first (then by name): small jobs pack together and leave whole
            # nodes for multi-node jobs.
            chosen = sorted(fits, key=lambda name: (free[name], name))[: spec.node_count]
            for name in chosen:
                self._nodes[name].held[job.id] = spec.gpus_per_node
                free[name] -= spec.gpus_per_node
                if free[name] == 0:
                    del free[name]
            job.state, job.nodes = JobState.RUNNING, tuple(sorted(chosen))
            job.started_at, job.ends_at = self._now, self._now + spec.duration_s

    def _node_view(self, sim_node: _SimNode) -> SchedNode:
        return SchedNode(
            name=sim_node.name,
            state=sim_node.state(),
            gpus=sim_node.gpus,
            reason=sim_node.reason,
            reason_at=sim_node.reason_at,
            jobs=_by_id(sim_node.held),
            partitions=(self._partition,),
        )

    def _job_view(self, job: _SimJob) -> Job:
        pending = job.state is JobState.PENDING
        return Job(
            id=job.id,
            name=job.spec.name,
            user=job.spec.user,
            state=job.state,
            partition=self._partition,
            node_count=job.spec.node_count,
            gpus_per_node=job.spec.gpus_per_node,
            nodes=job.nodes,
            submitted_at=job.submitted_at,
            started_at=None if pending else job.started_at,
            time_limit_s=job.spec.time_limit_s,
            reason=self._pending_reason(job.spec) if pending else None,
        )

    def _pending_reason(self, spec: JobSpec) -> str:
        could_take = sum(
            1 for n in self._nodes.values() if n.usable and n.gpus >= spec.gpus_per_node
        )
        return WAITING_FOR_BUSY_NODES if could_take >= spec.node_count else WAITING_FOR_MORE_NODES


if TYPE_CHECKING:  # mypy checks here that the class keeps to the interface
    _keeps_to_the_interface: Scheduler = SimScheduler()


def _by_id(job_ids: Iterable[str]) -> tuple[str, ...]:
    """Job ids in submission order (the sim's ids are increasing integers)."""
    return tuple(sorted(job_ids, key=int))
