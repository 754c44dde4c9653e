"""What the console shows of the scheduler: a node's state in its words, and its jobs.

Slurm's own short forms, so an operator reads the console as they read ``sinfo``: the base
state (``idle``, ``mix``, ``alloc``, ``drng``, ``drain``, ``down``) and the suffix of its power
or link state (``~`` powered down, ``#`` powering up, ``%`` powering down, ``!`` power-down
pending, ``*`` not responding).
"""

from __future__ import annotations

from collections.abc import Sequence

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from tidectl.console.scheduler.base import Demand, Job, NodeFlag, SchedNode, SchedState
from tidectl.console.view.actions import time_left

__all__ = ["demand_summary", "node_scheduler", "state_word"]

_BASE = {
    SchedState.IDLE: "idle",
    SchedState.MIXED: "mix",
    SchedState.ALLOCATED: "alloc",
    SchedState.DRAINING: "drng",
    SchedState.DRAINED: "drain",
    SchedState.DOWN: "down",
    SchedState.UNKNOWN: "unk",
}
#: In sinfo's order of precedence: one suffix, the most telling.
_SUFFIX = (
    (NodeFlag.POWERED_DOWN, "~"),
    (NodeFlag.POWERING_UP, "#"),
    (NodeFlag.POWERING_DOWN, "%"),
    (NodeFlag.POWER_DOWN_PENDING, "!"),
    (NodeFlag.NOT_RESPONDING, "*"),
)
_FLAG_WORDS = {
    NodeFlag.CLOUD: "cloud",
    NodeFlag.POWERED_DOWN: "powered down",
    NodeFlag.POWERING_UP: "powering up",
    NodeFlag.POWERING_DOWN: "powering down",
    NodeFlag.POWER_DOWN_PENDING: "power-down pending",
    NodeFlag.NOT_RESPONDING: "not responding",
}
_STATE_STYLE = {"down": "red", "drain": "yellow", "drng": "yellow", "unk": "dim"}


def state_word(node: SchedNode) -> str:
    """``idle~``, ``mix``, ``drng*``...: the node as ``sinfo -o %t`` would show it."""
    suffix = next((mark for flag, mark in _SUFFIX if flag in node.flags), "")
    return _BASE[node.state] + suffix


def node_scheduler(node: SchedNode | None, jobs: Sequence[Job], now: float) -> RenderableType:
    """The node detail's scheduler section: its state, flags, reason (and who set it), and
    the jobs on it with the time each may still run (``now``: the scheduler's clock)."""
    if node is None:
        return Text("Scheduler  not in the scheduler", style="dim")
    line = Text("Scheduler ", style="bold")
    word = state_word(node)
    line.append(word, style=_STATE_STYLE.get(_BASE[node.state], ""))
    words = [_FLAG_WORDS[f] for f in sorted(node.flags) if f in _FLAG_WORDS]
    if node.partitions:
        words.append("partition " + ",".join(node.partitions))
    if words:
        line.append(f"  ({', '.join(words)})", style="dim")
    if node.reason:
        by = f" (set by {node.reason_by})" if node.reason_by else ""
        line.append(f"\n  reason: {node.reason}{by}")
    if not jobs:
        return Group(line, Text("  No job on it.", style="dim"))
    table = Table(box=None, pad_edge=False, show_edge=False, header_style="bold")
    for column in ("JOB", "USER", "NAME", "GPUS", "TIME LEFT"):
        table.add_column(column)
    for job in jobs:
        table.add_row(job.id, job.user, job.name, str(job.gpus_per_node), time_left(job, now) or "")
    return Group(line, table)


def demand_summary(demand: Demand) -> str | None:
    """``"pending 12 jobs, 96 GPUs (gpu: 10 Resources, 2 Priority)"``; None when nothing waits."""
    if not demand.jobs:
        return None
    parts = []
    for name, partition in demand.partitions.items():
        reasons = ", ".join(f"{n} {why}" for why, n in sorted(partition.reasons.items()))
        parts.append(f"{name}: {reasons}")
    return f"pending {demand.jobs} jobs, {demand.gpus} GPUs ({'; '.join(parts)})"
