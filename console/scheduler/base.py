"""The scheduler interface: what the lifecycle engine may ask of a job scheduler, and the rules
that keep it from ever killing a job or undoing a person's drain.

No I/O here. One small async interface (nodes, jobs, drain, resume, pending demand, cloud nodes
joining and leaving), frozen dataclass results, typed errors whose ``str()`` is a sentence a
person can act on, and the pure rules the engine applies to what a scheduler reports:

* drains that automation sets carry the owned prefix ``tidectl:`` (:func:`automation_reason`);
  any other reason is a person's, and automation never resumes it (:func:`may_resume`) nor
  overwrites it (:func:`drain_reason`);
* a node may be terminated only when it is drained (not draining) and has no job at all
  (:func:`is_drained_and_empty`).
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import ClassVar, Final, Protocol

__all__ = [
    "AUTOMATION_PREFIX",
    "MAX_REASON_CHARS",
    "Demand",
    "DuplicateNodeError",
    "InvalidReasonError",
    "InvalidRequestError",
    "Job",
    "JobState",
    "NodeBusyError",
    "NodeFlag",
    "PartitionDemand",
    "SchedNode",
    "SchedState",
    "Scheduler",
    "SchedulerError",
    "SchedulerSnapshot",
    "SchedulerUnavailableError",
    "UnknownNodeError",
    "automation_reason",
    "check_node_name",
    "check_node_names",
    "check_reason",
    "demand_of",
    "drain_reason",
    "is_automation_reason",
    "is_drained_and_empty",
    "is_powered_down_and_empty",
    "may_resume",
    "resume_refusal",
]

#: Every drain reason automation sets starts with this; nothing else may be resumed by it.
#: Matched exactly (case and leading space count): a near miss is read as a person's reason,
#: which errs on the safe side (the node stays drained).
AUTOMATION_PREFIX: Final = "tidectl:"
MAX_REASON_CHARS: Final = 256  # long enough for a sentence, short enough for a table cell

# Scheduler host names (Slurm NodeName): no spaces, commas or brackets, which would turn one
# name into a list or a node set when it reaches a command line.
_NODE_NAME: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")


# ---------------------------------------------------------------------------------------------
# Errors


class SchedulerError(Exception):
    """A scheduler call failed. ``str()`` says what happened and what to do; ``title`` names the
    kind of failure for a notification's heading."""

    title: ClassVar[str] = "Scheduler error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class UnknownNodeError(SchedulerError):
    """One or more node names the scheduler does not know. Nothing was changed."""

    title: ClassVar[str] = "Unknown node"

    def __init__(self, names: Sequence[str]) -> None:
        listed = ", ".join(names)
        noun = "node named" if len(names) == 1 else "nodes named"
        super().__init__(
            f"the scheduler has no {noun} {listed}; check the names against `tidectl nodes` "
            "(nothing was changed)"
        )
        self.names = tuple(names)


class DuplicateNodeError(SchedulerError):
    """A node was added under a name the scheduler already has."""

    title: ClassVar[str] = "Node exists"

    def __init__(self, name: str) -> None:
        super().__init__(
            f"the scheduler already has a node named {name}; remove it first or pick another name"
        )
        self.name = name


class NodeBusyError(SchedulerError):
    """A node with jobs on it was asked to leave the scheduler: refused, the jobs keep running."""

    title: ClassVar[str] = "Node busy"

    def __init__(self, name: str, job_ids: Sequence[str]) -> None:
        count = f"{len(job_ids)} job is" if len(job_ids) == 1 else f"{len(job_ids)} jobs are"
        super().__init__(
            f"cannot remove {name}: {count} still on it ({', '.join(job_ids)}); drain it and "
            "wait until it is drained and empty (no job is ever killed to free a node)"
        )
        self.name = name
        self.job_ids = tuple(job_ids)


class InvalidReasonError(SchedulerError):
    """A drain reason that is empty, more than one line, or too long."""

    title: ClassVar[str] = "Invalid reason"


class InvalidRequestError(SchedulerError):
    """Arguments the scheduler cannot accept (a bad node name, a GPU count below one...)."""

    title: ClassVar[str] = "Invalid request"


class SchedulerUnavailableError(SchedulerError):
    """The scheduler could not be reached or answered with something unreadable (a command that
    failed or hung, output that does not parse). Retry later; nothing is known to have changed."""

    title: ClassVar[str] = "Scheduler unavailable"


# ---------------------------------------------------------------------------------------------
# What a scheduler reports


class SchedState(enum.StrEnum):
    """A node's state as the scheduler sees it, reduced to what the engine decides on.

    Slurm's base states map straight onto the first four; its DRAIN flag becomes draining
    (jobs still on the node) or drained (none left). DOWN wins over a drain.
    """

    IDLE = "idle"  # up, no job on it
    MIXED = "mixed"  # up, some of its GPUs taken by jobs
    ALLOCATED = "allocated"  # up, all of its GPUs taken
    DRAINING = "draining"  # drain set: no new job starts here; jobs on it run to completion
    DRAINED = "drained"  # drain set and no job left
    DOWN = "down"  # not usable (failed, unreachable, or set down by a person)
    UNKNOWN = "unknown"  # the scheduler does not say, or said something we do not know


class NodeFlag(enum.StrEnum):
    """Detail beside the state that some schedulers report (Slurm's state flags and suffixes).

    Informational: the engine decides on :class:`SchedState`; these explain it in the console.
    """

    NOT_RESPONDING = "not_responding"  # Slurm `*`
    CLOUD = "cloud"  # a Slurm CLOUD node (power saving may start and stop it)
    POWERED_DOWN = "powered_down"  # Slurm `~`
    POWERING_UP = "powering_up"  # Slurm `#`
    POWERING_DOWN = "powering_down"  # Slurm `%`
    POWER_DOWN_PENDING = "power_down_pending"  # Slurm `!`


class JobState(enum.StrEnum):
    PENDING = "pending"  # waiting in the queue; on no node yet
    RUNNING = "running"
    COMPLETING = "completing"  # finished its work; the scheduler is still cleaning up its nodes


@dataclass(frozen=True, slots=True)
class SchedNode:
    """One node as the scheduler reported it at the time of the call.

    ``jobs`` holds the ids of every job on the node, running or completing. ``reason`` is the
    drain or down reason, verbatim; ``reason_by`` and ``reason_at`` (seconds on the scheduler's
    clock) are filled where the scheduler records them.
    """

    name: str
    state: SchedState
    gpus: int = 0
    reason: str | None = None
    reason_by: str | None = None
    reason_at: float | None = None
    jobs: tuple[str, ...] = ()
    partitions: tuple[str, ...] = ()
    flags: frozenset[NodeFlag] = frozenset()

    def __post_init__(self) -> None:
        object.__setattr__(self, "jobs", tuple(self.jobs))
        object.__setattr__(self, "partitions", tuple(self.partitions))
        object.__setattr__(self, "flags", frozenset(self.flags))

    @property
    def drain_set(self) -> bool:
        """True while the node is draining or drained: no new job will start on it."""
        return self.state in (SchedState.DRAINING, SchedState.DRAINED)


@dataclass(frozen=True, slots=True)
class Job:
    """One job, pending or on nodes. Times are seconds on the scheduler's clock.

    ``nodes`` is empty while pending. ``reason`` says why a pending job waits (Slurm's words:
    ``Resources``, ``ReqNodeNotAvail``...). ``time_limit_s`` None means no limit.
    """

    id: str
    name: str
    user: str
    state: JobState
    partition: str
    node_count: int
    gpus_per_node: int
    nodes: tuple[str, ...] = ()
    submitted_at: float | None = None
    started_at: float | None = None
    time_limit_s: float | None = None
    reason: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "nodes", tuple(self.nodes))

    @property
    def gpus(self) -> int:
        """GPUs the job holds or wants, over all its nodes."""
        return self.node_count * self.gpus_per_node

    def time_left(self, now: float) -> float | None:
        """Seconds until the job's time limit (never below 0), or None when it has not started
        or has no limit. It is the latest the job can end, not a forecast."""
        if self.started_at is None or self.time_limit_s is None:
            return None
        return max(0.0, self.started_at + self.time_limit_s - now)


@dataclass(frozen=True, slots=True)
class PartitionDemand:
    """What the pending jobs of one partition want. ``largest_job_nodes`` matters for bursts:
    an 8-node job needs 8 nodes free at once, not 8 nodes over time."""

    partition: str
    jobs: int
    nodes: int
    gpus: int
    largest_job_nodes: int
    reasons: Mapping[str, int] = field(default_factory=dict)  # why they wait → how many jobs

    def __post_init__(self) -> None:
        object.__setattr__(self, "reasons", MappingProxyType(dict(self.reasons)))


@dataclass(frozen=True, slots=True)
class Demand:
    """Pending demand per partition; partitions with nothing pending are absent."""

    partitions: Mapping[str, PartitionDemand] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "partitions", MappingProxyType(dict(self.partitions)))

    @property
    def jobs(self) -> int:
        return sum(p.jobs for p in self.partitions.values())

    @property
    def nodes(self) -> int:
        return sum(p.nodes for p in self.partitions.values())

    @property
    def gpus(self) -> int:
        return sum(p.gpus for p in self.partitions.values())

    def of(self, partition: str) -> PartitionDemand:
        """The demand of ``partition``; all zeros when nothing is pending there."""
        return self.partitions.get(partition) or PartitionDemand(partition, 0, 0, 0, 0)


@dataclass(frozen=True, slots=True)
class SchedulerSnapshot:
    """The scheduler's nodes and jobs as one read saw them (the reconcile loop's, for the
    front ends: a view shows it, never asks the scheduler itself)."""

    nodes: tuple[SchedNode, ...] = ()
    jobs: tuple[Job, ...] = ()

    def node(self, name: str) -> SchedNode | None:
        return next((node for node in self.nodes if node.name == name), None)

    def jobs_on(self, name: str) -> tuple[Job, ...]:
        """The jobs running (or completing) on node ``name``."""
        return tuple(j for j in self.jobs if j.state is not JobState.PENDING and name in j.nodes)

    @property
    def demand(self) -> Demand:
        return demand_of(self.jobs)


def demand_of(jobs: Iterable[Job]) -> Demand:
    """Pending demand from a job list: only pending jobs count; running ones already have nodes."""
    grouped: dict[str, list[Job]] = {}
    for job in jobs:
        if job.state is JobState.PENDING:
            grouped.setdefault(job.partition, []).append(job)
    partitions = {}
    for name, pending in sorted(grouped.items()):
        reasons: dict[str, int] = {}
        for job in pending:
            why = job.reason or "unknown"
            reasons[why] = reasons.get(why, 0) + 1
        partitions[name] = PartitionDemand(
            partition=name,
            jobs=len(pending),
            nodes=sum(j.node_count for j in pending),
            gpus=sum(j.gpus for j in pending),
            largest_job_nodes=max(j.node_count for j in pending),
            reasons=reasons,
        )
    return Demand(partitions)


# ---------------------------------------------------------------------------------------------
# The interface


class Scheduler(Protocol):
    """What the lifecycle engine needs of a job scheduler. Every method is async and never
    blocks the event loop; every failure is a :class:`SchedulerError` subclass.

    ``drain`` and ``resume`` are mechanism, not policy: they do what they are told. Whether
    *automation* may resume a node is :func:`may_resume`'s answer, asked before the call.
    """

    async def nodes(self) -> list[SchedNode]:
        """Every node the scheduler knows, sorted by name."""
        ...

    async def jobs(self, node: str | None = None) -> list[Job]:
        """Pending, running and completing jobs, by id; with ``node``, only the jobs on it.
        Raises :class:`UnknownNodeError` for a node the scheduler does not know."""
        ...

    async def drain(self, nodes: Sequence[str], reason: str) -> None:
        """Stop new jobs from starting on ``nodes``; jobs on them run to completion, then each
        node is drained. Never kills a job, never sets a node down. All or nothing: an unknown
        name raises :class:`UnknownNodeError` and changes nothing. A person's drain already
        there keeps its reason against an automation reason (see :func:`drain_reason`)."""
        ...

    async def resume(self, nodes: Sequence[str]) -> None:
        """Let ``nodes`` take jobs again (undo a drain). A node that is not drained is left as
        it is. All or nothing on unknown names, as for :meth:`drain`."""
        ...

    async def pending_demand(self) -> Demand:
        """What pending jobs want, by partition."""
        ...

    async def add_node(self, name: str, gpus: int) -> None:
        """A cloud node joins: it takes jobs once added. Raises :class:`DuplicateNodeError` or
        :class:`InvalidRequestError`."""
        ...

    async def remove_node(self, name: str) -> None:
        """A cloud node leaves. Refused with :class:`NodeBusyError` while any job is on it."""
        ...


# ---------------------------------------------------------------------------------------------
# The rules


def check_reason(reason: str) -> str:
    """``reason`` if a scheduler can carry it: one non-blank line of at most
    :data:`MAX_REASON_CHARS` characters. Raises :class:`InvalidReasonError` otherwise."""
    if not isinstance(reason, str) or not reason.strip():
        raise InvalidReasonError(
            f"a drain needs a reason saying why (got {reason!r}); "
            'for example "maintenance: replacing GPU 3"'
        )
    if "\n" in reason or "\r" in reason:
        raise InvalidReasonError(
            f"the drain reason {reason!r} has a line break; give it on one line"
        )
    if len(reason) > MAX_REASON_CHARS:
        raise InvalidReasonError(
            f"the drain reason is {len(reason)} characters long; keep it to "
            f"{MAX_REASON_CHARS} or fewer"
        )
    return reason


def automation_reason(text: str) -> str:
    """The drain reason automation sets for ``text``: ``"tidectl: <text>"``. Text that already
    carries the prefix is returned as it is, so wrapping twice is harmless."""
    if isinstance(text, str) and text.startswith(AUTOMATION_PREFIX):
        return check_reason(text)
    if not isinstance(text, str) or not text.strip():
        raise InvalidReasonError(
            f"an automation drain needs a reason saying why (got {text!r}); "
            'for example "idle for 30 minutes"'
        )
    return check_reason(f"{AUTOMATION_PREFIX} {text.strip()}")


def is_automation_reason(reason: str | None) -> bool:
    """True only for a reason automation set (it starts with :data:`AUTOMATION_PREFIX`). No
    reason at all counts as a person's: the safe reading."""
    return reason is not None and reason.startswith(AUTOMATION_PREFIX)


def drain_reason(node: SchedNode, requested: str) -> str:
    """The reason ``node`` should carry after a drain asking for ``requested``.

    A person's reason on a node that is already draining, drained or down outranks an
    automation reason: overwriting it would turn a person's drain into one automation may
    resume. Every other request sets its own reason (a person's drain replaces automation's,
    which makes it the person's to undo).
    """
    held = node.drain_set or node.state is SchedState.DOWN
    if held and is_automation_reason(requested) and not is_automation_reason(node.reason):
        return node.reason or requested
    return requested


def resume_refusal(node: SchedNode) -> str | None:
    """Why automation must not resume ``node``, as a sentence; None when it may."""
    if node.state is SchedState.DOWN:
        return (
            f"{node.name} is down ({node.reason or 'no reason given'}); tidectl never brings a "
            "down node back: a person must look at it and resume it by hand"
        )
    if not node.drain_set:
        return f"{node.name} is {node.state}, not drained: there is no drain to undo"
    if not is_automation_reason(node.reason):
        said = f'reason "{node.reason}"' if node.reason else "no reason recorded"
        return (
            f"{node.name} was drained by a person ({said}); tidectl only resumes drains it set "
            f'itself (reasons starting with "{AUTOMATION_PREFIX}"): ask whoever drained it, or '
            "resume it by hand"
        )
    return None


def may_resume(node: SchedNode) -> bool:
    """Whether automation may resume ``node``: only a drain automation set, never a person's,
    never a down node."""
    return resume_refusal(node) is None


def is_drained_and_empty(node: SchedNode, jobs: Iterable[Job] = ()) -> bool:
    """The only condition under which a node may be terminated: the scheduler says drained
    (not draining) and no job is on it.

    ``jobs`` is a second witness (a job listing taken beside the node listing): any running or
    completing job naming the node makes the answer False, so a scheduler whose node and job
    views disagree for a moment errs on the side of waiting.
    """
    if node.state is not SchedState.DRAINED or node.jobs:
        return False
    return not any(job.state is not JobState.PENDING and node.name in job.nodes for job in jobs)


def is_powered_down_and_empty(node: SchedNode, jobs: Iterable[Job] = ()) -> bool:
    """The other condition under which a node may be terminated: the scheduler's power saving
    took it (Slurm: powering down or powered down, which takes no job) and no job is on it.
    ``jobs`` is a second witness, as for :func:`is_drained_and_empty`."""
    powered_down = {NodeFlag.POWERING_DOWN, NodeFlag.POWERED_DOWN}
    if not (node.flags & powered_down) or node.jobs:
        return False
    return not any(job.state is not JobState.PENDING and node.name in job.nodes for job in jobs)


def check_node_name(name: str) -> str:
    """``name`` if a scheduler can take it as one node's name; :class:`InvalidRequestError`
    otherwise."""
    if not isinstance(name, str) or not _NODE_NAME.fullmatch(name):
        raise InvalidRequestError(
            f"{name!r} is not a node name a scheduler can take: use letters, digits, '.', '_' "
            "and '-', starting with a letter or digit, at most 63 characters (expand node sets "
            "like gpu[1-4] before calling)"
        )
    return name


def check_node_names(names: Sequence[str]) -> list[str]:
    """``names`` as a list, refusing a bare string (which would be read letter by letter) and
    an empty list."""
    if isinstance(names, str):
        raise InvalidRequestError(
            f"node names must be given as a list, not the string {names!r}; "
            f"pass [{names!r}] for one node"
        )
    listed = list(names)
    if not listed:
        raise InvalidRequestError("no node names were given; name at least one node")
    return listed
