"""What the console's lifecycle actions show and allow, without a screen.

The keys ``b`` (burst), ``d`` (drain), ``r`` (resume) and ``t`` (terminate) act through the
control plane, which checks every request again and refuses with its own sentence; what is
here lets the console refuse at once, without a round trip, what a node's state rules out
(terminate an active node), and words the dialogs: the cost a burst adds, the jobs a drain
lets finish, what a terminate ends. The sentences name the console's keys, not CLI commands.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from tidectl.console.config.model import PoolSpec
from tidectl.console.cost.budgets import BudgetStatus, budget_name, money, period_end
from tidectl.console.lifecycle.records import NodeRecord
from tidectl.console.lifecycle.states import NodeKind, State
from tidectl.console.scheduler.base import Job
from tidectl.console.view.header import money_per_hour

__all__ = [
    "BurstForm",
    "burst_form",
    "burst_projection",
    "default_drain_reason",
    "drain_heading",
    "drain_refusal",
    "job_line",
    "live_in",
    "no_plane",
    "resume_refusal",
    "terminate_question",
    "terminate_refusal",
    "time_left",
]

_DRAINABLE = frozenset({State.ACTIVE, State.JOINING})
_RESUMABLE = frozenset({State.DRAINING, State.DRAINED})
#: Cloud states the console offers terminate from: no job can be on the node (drained and
#: empty, failed, or not joined yet). The control plane also checks the scheduler.
_TERMINABLE = frozenset({State.DRAINED, State.FAILED, State.PROVISIONING, State.BOOTSTRAPPING})
#: Lifecycle states that still count against a pool's ``max_nodes`` (as the engine counts).
_ENDED = frozenset({State.TERMINATED, State.FAILED})

_DRAIN_HINTS = {
    State.DRAINING: "it is draining already; r resumes it",
    State.DRAINED: "it is drained already; r resumes it, t terminates a cloud node",
    State.REQUESTED: "it is not in the scheduler yet and runs no job; wait until it is active",
    State.PROVISIONING: "it is not in the scheduler yet and runs no job: t terminates it",
    State.BOOTSTRAPPING: "it is not in the scheduler yet and runs no job: t terminates it",
    State.FAILED: "it runs no job: t terminates it",
}
_TERMINATE_HINTS = {
    State.ACTIVE: "drain it first (d) and terminate it once it is drained; a terminate never "
    "kills a job",
    State.DRAINING: "its drain is not finished (jobs still run on it); terminate it once it "
    "is drained",
    State.JOINING: "a job may already be placed on it: drain it first (d)",
    State.REQUESTED: "its launch is still being asked for; wait a moment",
    State.TERMINATING: "it is terminating already; the reconcile loop confirms it",
    State.TERMINATED: "it is terminated already",
}


def default_drain_reason(user: str) -> str:
    return f"drained by {user} via tidectl console"


def no_plane(problem: str | None) -> str:
    """Why a lifecycle key does nothing: the plane is not up yet, or cannot run here."""
    if problem:
        return f"Lifecycle actions are off in this console: {problem}."
    return "The control plane is still starting; try again in a moment."


def drain_refusal(name: str, record: NodeRecord | None) -> str | None:
    """Why ``name`` cannot be drained as the console last saw it, or None when it can.
    ``record`` None: the store does not know the node (an on-prem node never drained)."""
    if record is None or record.state in _DRAINABLE:
        return None
    hint = _DRAIN_HINTS.get(record.state, "nothing can be done to it in that state")
    return f"Cannot drain {name}: it is {record.state}; {hint}."


def resume_refusal(name: str, record: NodeRecord | None) -> str | None:
    if record is not None and record.state in _RESUMABLE:
        return None
    if record is None or record.state is State.ACTIVE:
        return f"{name} is not drained or draining: it takes jobs already, nothing to resume."
    if record.state is State.JOINING:
        return f"Cannot resume {name}: it is joining; it takes jobs once the scheduler admits it."
    return f"Cannot resume {name}: it is {record.state}; only a drained node can be resumed."


def terminate_refusal(name: str, record: NodeRecord | None) -> str | None:
    if record is None or record.kind is NodeKind.ONPREM:
        return (
            f"{name} is an on-prem node: tidectl never terminates a machine it did not "
            "launch; d drains it instead."
        )
    if record.state in _TERMINABLE:
        return None
    hint = _TERMINATE_HINTS.get(record.state, "nothing can be done to it in that state")
    return f"Cannot terminate {name}: it is {record.state}; {hint}."


def terminate_question(record: NodeRecord) -> list[str]:
    """The lines of the terminate confirmation."""
    instance = f" (instance {record.instance_id})" if record.instance_id else ""
    lines = [f"Terminate {record.name}{instance}, {record.state}?"]
    cost = (
        f", which costs {money_per_hour(record.price_per_hour)}"
        if record.price_per_hour is not None
        else ""
    )
    lines.append(
        f"Its instance is ended{cost}; the node leaves the pool and the fleet. "
        "This cannot be undone."
    )
    return lines


def job_line(job: Job, now: float | None = None) -> str:
    """One job as a drain lists it; with ``now`` (the scheduler's clock: wall time for Slurm)
    and a time limit, how long it may still run."""
    where = f"{job.gpus_per_node} GPUs" + (
        f" on each of {job.node_count} nodes" if job.node_count > 1 else ""
    )
    left = time_left(job, now) if now is not None else None
    return f"{job.id}  {job.name}  ({job.user}, {where}{', ' + left if left else ''})"


def time_left(job: Job, now: float) -> str | None:
    """``"2 h 05 min left"`` of a started job's time limit; ``"no time limit"``; None when
    the scheduler did not say when it started."""
    if job.started_at is None:
        return None
    if job.time_limit_s is None:
        return "no time limit"
    seconds = max(0.0, job.started_at + job.time_limit_s - now)
    minutes = int(seconds // 60)
    if minutes >= 60:
        return f"{minutes // 60} h {minutes % 60:02d} min left"
    return f"{minutes} min left" if minutes else "under a minute left"


def drain_heading(name: str, jobs: Sequence[Job]) -> str:
    if not jobs:
        return (
            f"Drain {name}: no new job starts on it. No job runs on it now, so it is drained "
            "as soon as the scheduler agrees."
        )
    return (
        f"Drain {name}: no new job starts on it; the {len(jobs)} job(s) on it run to "
        "completion first:"
    )


@dataclass(frozen=True, slots=True)
class BurstForm:
    """What the burst dialog shows for a pool and the count typed so far. ``count`` is set
    only when it can be burst; ``problem`` says why not otherwise."""

    pool: str
    count: int | None
    problem: str | None
    cost: str
    #: Where the burst takes the budgets that cover the pool ("" until they are read).
    projection: str = ""

    @property
    def ready(self) -> bool:
        return self.count is not None


def burst_form(
    pool: PoolSpec,
    count_text: str,
    *,
    live: int,
    price: float | None,
    priced: bool,
    budgets: Sequence[BudgetStatus] | None = None,
) -> BurstForm:
    """The form for ``pool`` with ``live`` nodes (not ended), ``count_text`` as typed, and
    one node's price an hour (``priced``: asked already; ``price`` None: not known);
    ``budgets``: every budget's status now (None: not read yet)."""
    room = max(0, pool.max_nodes - live)
    text = count_text.strip()
    count: int | None = None
    problem: str | None = None
    if room == 0:
        problem = (
            f"pool {pool.name} has {live} node(s), its max_nodes: raise max_nodes in "
            "cluster.toml to burst more"
        )
    elif not text:
        problem = f"type how many nodes to add (1 to {room})"
    elif not text.isdigit():
        problem = f"{text!r} is not a whole number: type how many nodes to add (1 to {room})"
    elif not 1 <= int(text) <= room:
        problem = (
            f"pool {pool.name} has {live} of its {pool.max_nodes} nodes: add 1 to {room}, "
            f"not {int(text)}"
        )
    else:
        count = int(text)
    adds = None if count is None or price is None else count * price
    projection = "" if budgets is None else burst_projection(pool.name, adds, budgets)
    return BurstForm(pool.name, count, problem, _cost(count, price, priced), projection)


def burst_projection(
    pool: str, adds_per_hour: float | None, budgets: Sequence[BudgetStatus]
) -> str:
    """When, at the burn of now plus what the burst adds an hour, the first budget that
    covers ``pool`` would be reached ("" while what it adds is not known)."""
    covering = [s for s in budgets if s.budget.pool is None or s.budget.pool == pool]
    if not covering:
        return "projected: no budget covers this pool"
    reached = [s for s in covering if s.exhausted]
    if reached:
        return (
            f"projected: {budget_name(reached[0].budget)} is reached already: a burst is "
            "refused until its period ends"
        )
    if adds_per_hour is None:
        return ""
    soonest: tuple[float, BudgetStatus] | None = None
    for status in covering:
        burn = status.burn_per_hour + adds_per_hour
        hours = math.inf if burn <= 0 else status.remaining / burn
        left = (period_end(status.budget.period, status.now) - status.now) / 3600.0
        if hours <= left and (soonest is None or hours < soonest[0]):
            soonest = (hours, status)
    if soonest is None:
        tightest = min(covering, key=lambda s: s.remaining)
        return (
            f"projected: no budget reached before its period ends ({money(tightest.remaining)} "
            f"left of {budget_name(tightest.budget)})"
        )
    hours, status = soonest
    burn = status.burn_per_hour + adds_per_hour
    return (
        f"projected: {budget_name(status.budget)} reached in about {_about(hours)} "
        f"(at {money_per_hour(burn)})"
    )


def _about(hours: float) -> str:
    if hours < 1:
        return f"{max(1, round(hours * 60))} min"
    return f"{hours:.1f} h"


def live_in(pool: str, records: Sequence[NodeRecord]) -> int:
    """The nodes of ``pool`` that count against its ``max_nodes``."""
    return sum(1 for r in records if r.pool == pool and r.state not in _ENDED)


def _cost(count: int | None, price: float | None, priced: bool) -> str:
    if not priced:
        return "asking the price…"
    if price is None:
        return "price not known: set price_per_hour on the pool to see what a burst costs"
    if count is None:
        return f"{money_per_hour(price)} a node"
    if count == 1:
        return f"adds {money_per_hour(price)}"
    return f"adds {money_per_hour(price * count)} ({count} nodes at {money_per_hour(price)})"
