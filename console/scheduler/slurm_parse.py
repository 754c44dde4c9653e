"""Reading Slurm's command output into the scheduler types: pure functions, no I/O.

What is read:

* ``sinfo --json`` for nodes. Slurm 22.05 (openapi v0.0.38) gives ``state`` as the base state
  (``idle``, ``mixed``, ``allocated``, ``down``...) and the rest in ``state_flags``
  (``DRAIN``, ``NOT_RESPONDING``, ``CLOUD``, ``POWERED_DOWN``...). Slurm 23.02 and later give
  ``state`` as one list holding both; both shapes are read. A CLOUD node under power saving
  goes, as 22.05 reports it: ``[CLOUD, POWERED_DOWN]`` → (power-up asked) ``[CLOUD, POWER_UP,
  POWERED_DOWN]`` → (ResumeProgram called) ``[CLOUD, NOT_RESPONDING, POWERING_UP]`` → (its
  slurmd registered) ``[CLOUD]`` → (power-down asked) ``[CLOUD, POWER_DOWN]`` →
  (SuspendProgram called) ``[CLOUD, POWERING_DOWN]`` → (SuspendTimeout later)
  ``[CLOUD, POWERED_DOWN]``; a resume that times out leaves ``down`` ``[CLOUD, POWERED_DOWN,
  NOT_RESPONDING]``, reason ``ResumeTimeout reached``.
* ``squeue --json`` for jobs. It lists finished jobs too (and ignores ``-t``/``-w``), so only
  pending, running and completing jobs are kept. ``nodes`` is a host list (``gpu[1-4]``);
  times are plain numbers in 22.05 and ``{"set", "infinite", "number"}`` objects in 23.02+.

Anything that is not the shape above raises :class:`SlurmOutputError` with a sentence naming
the command and the field; a state or flag this module does not know is not an error (a newer
Slurm may add some): an unknown base state reads as ``unknown``, an unknown flag is ignored.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final

from tidectl.console.nodesets import NodeSetError, expand
from tidectl.console.scheduler.base import (
    Job,
    JobState,
    NodeFlag,
    SchedNode,
    SchedState,
    SchedulerUnavailableError,
)

__all__ = [
    "SlurmOutputError",
    "expand_hostlist",
    "gpus_of_gres",
    "parse_sinfo_json",
    "parse_squeue_json",
    "with_jobs",
]

# Base states as Slurm names them (lowercase in 22.05's sinfo --json, uppercase in lists).
_BASE_STATES: Final[Mapping[str, SchedState]] = {
    "idle": SchedState.IDLE,
    "mixed": SchedState.MIXED,
    "allocated": SchedState.ALLOCATED,
    "down": SchedState.DOWN,
    "error": SchedState.DOWN,  # Slurm's ERROR: a node reporting a fault; not usable
    "future": SchedState.DOWN,  # defined but not yet in service
    "unknown": SchedState.UNKNOWN,
}
_FLAGS: Final[Mapping[str, NodeFlag]] = {
    "NOT_RESPONDING": NodeFlag.NOT_RESPONDING,
    "CLOUD": NodeFlag.CLOUD,
    "POWERED_DOWN": NodeFlag.POWERED_DOWN,
    "POWERING_UP": NodeFlag.POWERING_UP,
    # A power-up asked for (scontrol or a job), not started yet: Slurm shows it beside
    # POWERED_DOWN for up to a second, and keeps it through a power-down asked meanwhile
    # (the node powers down, then up again). Read as on its way up.
    "POWER_UP": NodeFlag.POWERING_UP,
    "POWERING_DOWN": NodeFlag.POWERING_DOWN,
    "POWER_DOWN": NodeFlag.POWER_DOWN_PENDING,  # a power-down asked for, not started yet
}
# Flags that mean the node still holds work, even when the base state says idle.
_BUSY_FLAGS: Final = frozenset({"COMPLETING"})

# Job states that hold (or wait for) nodes. Every other state (COMPLETED, CANCELLED, FAILED,
# TIMEOUT, NODE_FAIL, PREEMPTED, OUT_OF_MEMORY...) is a finished job, which squeue --json
# still lists for a while.
_JOB_STATES: Final[Mapping[str, JobState]] = {
    "PENDING": JobState.PENDING,
    "REQUEUED": JobState.PENDING,
    "RUNNING": JobState.RUNNING,
    "CONFIGURING": JobState.RUNNING,  # nodes allocated, booting: they are the job's
    "SUSPENDED": JobState.RUNNING,  # still holds its nodes
    "STOPPED": JobState.RUNNING,
    "RESIZING": JobState.RUNNING,
    "SIGNALING": JobState.RUNNING,
    "STAGE_OUT": JobState.COMPLETING,
    "COMPLETING": JobState.COMPLETING,
}
_FINISHED_JOB_STATES: Final = frozenset(
    {
        "COMPLETED",
        "CANCELLED",
        "FAILED",
        "TIMEOUT",
        "NODE_FAIL",
        "PREEMPTED",
        "BOOT_FAIL",
        "DEADLINE",
        "OUT_OF_MEMORY",
        "REVOKED",
        "SPECIAL_EXIT",
    }
)
# 22.05 writes "no limit" as null; older tools use NO_VAL/INFINITE sentinels.
_NO_VALUE: Final = frozenset({0xFFFFFFFE, 0xFFFFFFFF, 0xFFFFFFFFFFFFFFFE, 0xFFFFFFFFFFFFFFFF})
# A GPU count in a gres or tres string: gpu:8, gpu:a100:8(S:0-1), gres/gpu:8, gres:gpu:2.
_GPU_COUNT: Final = re.compile(r"(?:^|[,/:])gpu(?::[^:,(]+)?:(\d+)")


class SlurmOutputError(SchedulerUnavailableError):
    """A Slurm command answered with output that cannot be read (not JSON, cut short, a field
    missing or of the wrong kind). Nothing was changed by reading it."""

    title = "Unreadable Slurm output"


def parse_sinfo_json(text: str, command: str = "sinfo --json") -> list[SchedNode]:
    """Every node in ``sinfo --json`` output, once each (a node in two partitions is listed
    twice by some versions), sorted by name. ``jobs`` is left empty: sinfo does not say which
    jobs run where; :func:`with_jobs` fills it from squeue."""
    document = _load(text, command)
    raw_nodes = _field(document, "nodes", list, command)
    by_name: dict[str, SchedNode] = {}
    for index, raw in enumerate(raw_nodes):
        where = f"{command}: nodes[{index}]"
        if not isinstance(raw, dict):
            raise SlurmOutputError(f"{where} is not an object; is this a supported Slurm?")
        node = _node(raw, where)
        seen = by_name.get(node.name)
        if seen is not None:
            node = _merge_partitions(seen, node)
        by_name[node.name] = node
    return [by_name[name] for name in sorted(by_name)]


def parse_squeue_json(text: str, command: str = "squeue --json") -> list[Job]:
    """Pending, running and completing jobs in ``squeue --json`` output, sorted by id (finished
    jobs, which squeue still lists for a while, are left out)."""
    document = _load(text, command)
    raw_jobs = _field(document, "jobs", list, command)
    jobs = []
    for index, raw in enumerate(raw_jobs):
        where = f"{command}: jobs[{index}]"
        if not isinstance(raw, dict):
            raise SlurmOutputError(f"{where} is not an object; is this a supported Slurm?")
        job = _job(raw, where)
        if job is not None:
            jobs.append(job)
    return sorted(jobs, key=_job_order)


def with_jobs(nodes: Sequence[SchedNode], jobs: Iterable[Job]) -> list[SchedNode]:
    """``nodes`` with ``jobs`` filled from a job listing, and a drain read as draining while
    any job is still on the node (Slurm's own state can say idle+DRAIN for a moment while a
    job is completing: waiting is the safe reading)."""
    on_node: dict[str, list[str]] = {}
    for job in jobs:
        if job.state is JobState.PENDING:
            continue
        for name in job.nodes:
            on_node.setdefault(name, []).append(job.id)
    result = []
    for node in nodes:
        held = tuple(on_node.get(node.name, ()))
        state = node.state
        if held and state is SchedState.DRAINED:
            state = SchedState.DRAINING
        result.append(
            SchedNode(
                name=node.name,
                state=state,
                gpus=node.gpus,
                reason=node.reason,
                reason_by=node.reason_by,
                reason_at=node.reason_at,
                jobs=held,
                partitions=node.partitions,
                flags=node.flags,
            )
        )
    return result


def expand_hostlist(hostlist: str, where: str = "Slurm") -> tuple[str, ...]:
    """``gpu[1-3],cpu1`` → ``("gpu1", "gpu2", "gpu3", "cpu1")``; empty for an empty string."""
    if not hostlist:
        return ()
    try:
        return tuple(expand(hostlist))
    except NodeSetError as error:
        raise SlurmOutputError(
            f"{where}: the node list {hostlist!r} cannot be read ({error})"
        ) from None


def gpus_of_gres(gres: str) -> int:
    """GPUs in a gres or tres string (``gpu:8``, ``gpu:a100:4(S:0-1),gpu:v100:2``,
    ``gres/gpu:2``), summed over GPU types; 0 when it names none."""
    return sum(int(count) for count in _GPU_COUNT.findall(gres or ""))


# ---------------------------------------------------------------------------------------------
# Internals


def _load(text: str, command: str) -> dict[str, Any]:
    try:
        document = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise SlurmOutputError(
            f"{command} printed something that is not JSON ({error.__class__.__name__}: "
            f"{error}); it may have been cut short: run it by hand to see"
        ) from None
    if not isinstance(document, dict):
        raise SlurmOutputError(f"{command} printed JSON that is not an object")
    errors = document.get("errors")
    if isinstance(errors, list) and errors:
        said = "; ".join(
            str(e.get("description") or e.get("error") or e) if isinstance(e, dict) else str(e)
            for e in errors
        )
        raise SlurmOutputError(f"{command} reported errors: {said}")
    return document


def _field(raw: Mapping[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
    if key not in raw:
        raise SlurmOutputError(f"{where} has no {key!r} field; is this a supported Slurm?")
    value = raw[key]
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise SlurmOutputError(
            f"{where}: {key!r} is {type(value).__name__} {value!r}, not what Slurm writes there"
        )
    return value


def _node(raw: Mapping[str, Any], where: str) -> SchedNode:
    name = _field(raw, "name", str, where)
    where = f"{where} ({name})"
    state_field = _field(raw, "state", (str, list), where)
    if isinstance(state_field, str):  # 22.05: base state, flags apart
        base = state_field.lower()
        flags = [str(f).upper() for f in _field(raw, "state_flags", list, where)]
    else:  # 23.02+: one list, base state first
        words = [str(w).upper() for w in state_field]
        base = next((w.lower() for w in words if w.lower() in _BASE_STATES), "unknown")
        flags = [w for w in words if w.lower() not in _BASE_STATES]
    state = _state(base, flags)
    reason = raw.get("reason") or None
    if reason is not None and not isinstance(reason, str):
        raise SlurmOutputError(f"{where}: 'reason' is {type(reason).__name__}, not text")
    reason_by = raw.get("reason_set_by_user") or None
    reason_at = _number(raw.get("reason_changed_at"), f"{where}: 'reason_changed_at'")
    partitions = raw.get("partitions") or []
    if not isinstance(partitions, list):
        raise SlurmOutputError(f"{where}: 'partitions' is not a list")
    gres = raw.get("gres") or ""
    return SchedNode(
        name=name,
        state=state,
        gpus=gpus_of_gres(gres if isinstance(gres, str) else ""),
        reason=reason,
        reason_by=str(reason_by) if reason_by is not None else None,
        reason_at=reason_at if reason else None,
        partitions=tuple(str(p) for p in partitions),
        flags=frozenset(_FLAGS[f] for f in flags if f in _FLAGS),
    )


def _state(base: str, flags: Sequence[str]) -> SchedState:
    """Slurm's base state and flags reduced to :class:`SchedState`: DOWN wins over a drain; a
    drain reads as draining while the node holds work (allocated, mixed, or completing)."""
    state = _BASE_STATES.get(base, SchedState.UNKNOWN)
    if state is SchedState.DOWN or "DRAIN" not in flags:
        return state
    busy = state in (SchedState.MIXED, SchedState.ALLOCATED) or any(f in _BUSY_FLAGS for f in flags)
    return SchedState.DRAINING if busy else SchedState.DRAINED


def _merge_partitions(first: SchedNode, second: SchedNode) -> SchedNode:
    partitions = tuple(dict.fromkeys(first.partitions + second.partitions))
    return SchedNode(
        name=first.name,
        state=first.state,
        gpus=first.gpus,
        reason=first.reason,
        reason_by=first.reason_by,
        reason_at=first.reason_at,
        partitions=partitions,
        flags=first.flags,
    )


def _job(raw: Mapping[str, Any], where: str) -> Job | None:
    job_id = _field(raw, "job_id", int, where)
    where = f"{where} (job {job_id})"
    state_field = _field(raw, "job_state", (str, list), where)
    words = [state_field] if isinstance(state_field, str) else [str(w) for w in state_field]
    words = [w.upper() for w in words]
    state = next((_JOB_STATES[w] for w in words if w in _JOB_STATES), None)
    if state is None:
        if any(w in _FINISHED_JOB_STATES for w in words):
            return None
        # A state this module does not know: if it names nodes, count it as running there, so
        # a node under it is never taken for empty; otherwise leave it out of the demand.
        if not raw.get("nodes"):
            return None
        state = JobState.RUNNING
    nodes = expand_hostlist(_field(raw, "nodes", str, where), where)
    pending = state is JobState.PENDING
    node_count = _number(raw.get("node_count"), f"{where}: 'node_count'")
    started = _number(raw.get("start_time"), f"{where}: 'start_time'")
    submitted = _number(raw.get("submit_time"), f"{where}: 'submit_time'")
    limit_min = _number(raw.get("time_limit"), f"{where}: 'time_limit'")
    tres = raw.get("tres_per_node") or ""
    reason = raw.get("state_reason")
    return Job(
        id=str(job_id),
        name=str(raw.get("name") or ""),
        user=str(raw.get("user_name") or raw.get("user_id") or ""),
        state=state,
        partition=str(raw.get("partition") or ""),
        node_count=int(node_count) if node_count else max(1, len(nodes)),
        gpus_per_node=gpus_of_gres(tres if isinstance(tres, str) else ""),
        nodes=() if pending else nodes,
        submitted_at=submitted or None,
        started_at=None if pending or not started else started,
        time_limit_s=limit_min * 60.0 if limit_min else None,
        reason=str(reason) if pending and reason and reason != "None" else None,
    )


def _number(value: Any, where: str) -> float | None:
    """A Slurm number: a plain number (22.05), null, or ``{"set", "infinite", "number"}``
    (23.02+). None for unset, infinite and Slurm's NO_VAL/INFINITE sentinels."""
    if value is None:
        return None
    if isinstance(value, dict):
        if not value.get("set", True) or value.get("infinite", False):
            return None
        value = value.get("number")
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise SlurmOutputError(f"{where} is {value!r}, not a number")
    if value in _NO_VALUE:
        return None
    return float(value)


def _job_order(job: Job) -> tuple[int, str]:
    return (int(job.id), job.id) if job.id.isdigit() else (1 << 62, job.id)
