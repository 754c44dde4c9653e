"""The policy rules: what the cluster's automation decides, from one look at the world.

Pure functions over a :class:`Look` (the cloud nodes, their jobs and GPU use, the pending
queue, the budgets) and a :class:`Memory` of what earlier passes saw (since when a node is
idle, since when a job waits, when a pool last burst). The loop (``loop.py``) gathers the look
and carries the decisions out through the ControlPlane, as the actor ``policy``.

The rules, per pool (``[pools.policy]``) and per budget (``[[budgets]]``):

* **budget**: a hard budget reached drains every node of the pools it covers (their jobs
  finish first) and ends the nodes that have not joined yet (no job can be on them); past
  ``warn_at`` a warning is reported once per period.
* **max lifetime**: a node older than ``max_lifetime_s`` is drained.
* **idle**: a node with no jobs and every GPU below ``idle_gpu_util_below`` for
  ``idle_drain_after_s`` is drained — never below ``min_nodes``. Idleness comes from the
  GPUs and the scheduler, never from whether some process runs; a node not heard from is
  not idle (unknown is not idle).
* **terminate**: a node the policy drained that has stayed empty for
  ``idle_terminate_after_s`` is terminated (a node a person drained is theirs to end).
* **minimum**: a pool with fewer than ``min_nodes`` serving or coming is burst back up to it.
* **pressure**: GPUs waiting longer than ``pending_for_s`` beyond the capacity that is free or
  coming burst the pool, up to ``max_nodes`` and what the budgets allow, at most once per
  ``cooldown_s`` — a noisy queue (jobs that come and go) never waits long enough to fire, and
  a burst is given time to land before the next is considered.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

from tidectl.console.config.model import PoolSpec
from tidectl.console.cost.budgets import BudgetStatus, budget_name, money, period_start
from tidectl.console.lifecycle.states import State
from tidectl.console.scheduler.base import Job

__all__ = [
    "POLICY_REASON",
    "Burst",
    "Decision",
    "Drain",
    "Look",
    "Memory",
    "NodeLook",
    "Terminate",
    "Warn",
    "decide",
]

#: Every drain the policy makes starts with this, so the terminate rule knows its own.
POLICY_REASON: Final = "policy:"
_COMING: Final = frozenset(
    {State.REQUESTED, State.PROVISIONING, State.BOOTSTRAPPING, State.JOINING}
)
_NOT_JOINED: Final = frozenset({State.REQUESTED, State.PROVISIONING, State.BOOTSTRAPPING})
_TAKING_JOBS: Final = frozenset({State.ACTIVE, State.JOINING})


@dataclass(frozen=True, slots=True)
class NodeLook:
    """A live cloud node as the pass saw it."""

    name: str
    pool: str
    state: State
    state_since: float
    created_at: float
    #: Jobs on it per the scheduler; None without a scheduler (then the GPUs alone decide).
    jobs: int | None
    #: Each GPU's utilisation (percent) in its latest fresh sample; None: not heard from.
    gpu_utils: tuple[float, ...] | None
    #: The reason of its drain, when it is draining or drained.
    drain_reason: str | None = None


@dataclass(frozen=True, slots=True)
class Look:
    now: float
    nodes: tuple[NodeLook, ...]
    pending: tuple[Job, ...]  # jobs waiting in the scheduler
    budgets: tuple[BudgetStatus, ...]
    #: What one more node of each pool costs an hour (None: unknown).
    prices: Mapping[str, float | None] = field(default_factory=dict)


@dataclass
class Memory:
    """What the rules remember between passes (lost on restart, which only delays them)."""

    idle_since: dict[str, float] = field(default_factory=dict)
    pending_since: dict[str, float] = field(default_factory=dict)
    last_burst: dict[str, float] = field(default_factory=dict)
    warned: set[tuple[str | None, str, float]] = field(default_factory=set)


@dataclass(frozen=True, slots=True)
class Drain:
    node: str
    reason: str
    rule: str


@dataclass(frozen=True, slots=True)
class Terminate:
    node: str
    reason: str
    rule: str


@dataclass(frozen=True, slots=True)
class Burst:
    pool: str
    count: int
    reason: str
    rule: str = "pressure"


@dataclass(frozen=True, slots=True)
class Warn:
    sentence: str
    #: The pool the budget covers (None: every pool).
    pool: str | None = None
    #: Names this warning: the same budget's warning in the same period has the same key
    #: (the store keeps one, so a restart does not warn again).
    key: str = ""
    rule: str = "budget"


Decision = Drain | Terminate | Burst | Warn
#: How many nodes of a pool at a price fit the budgets (None: no budget covers it).
Fits = Callable[[str, float], int | None]


def decide(look: Look, pools: Sequence[PoolSpec], memory: Memory, fits: Fits) -> list[Decision]:
    """This pass's decisions, at most one per node, budgets first."""
    decisions: list[Decision] = []
    taken: set[str] = set()

    def add(decision: Drain | Terminate) -> None:
        if decision.node not in taken:
            taken.add(decision.node)
            decisions.append(decision)

    stopped = _budgets(look, pools, memory, decisions, add)
    by_pool = {pool.name: pool for pool in pools}
    _remember_idleness(look, by_pool, memory)
    for node in look.nodes:
        pool = by_pool.get(node.pool)
        if pool is None:
            continue
        lifetime = pool.policy.max_lifetime_s
        if (
            lifetime is not None
            and node.state in _TAKING_JOBS
            and look.now - node.created_at >= lifetime
        ):
            add(
                Drain(
                    node.name,
                    f"{POLICY_REASON} max lifetime: up {_span(look.now - node.created_at)}, the "
                    f"pool allows {_span(lifetime)}",
                    "max-lifetime",
                )
            )
    for pool in pools:
        _idle(look, pool, memory, add)
        _terminate(look, pool, add)
        if pool.name not in stopped:
            burst = _minimum(look, pool, memory, fits) or _pressure(look, pool, memory, fits)
            if burst is not None:
                decisions.append(burst)
    return decisions


# -- budgets ---------------------------------------------------------------------------------


def _budgets(
    look: Look,
    pools: Sequence[PoolSpec],
    memory: Memory,
    decisions: list[Decision],
    add: Callable[[Drain | Terminate], None],
) -> set[str]:
    """Drain what reached budgets cover; warn once per period past ``warn_at``. Returns the
    pools that may not grow."""
    stopped: set[str] = set()
    for status in look.budgets:
        budget = status.budget
        covered = {p.name for p in pools if budget.pool is None or p.name == budget.pool}
        if status.exhausted:
            stopped |= covered
            reason = f"{POLICY_REASON} budget: {budget_name(budget)} reached"
            for node in look.nodes:
                if node.pool not in covered:
                    continue
                if node.state in _TAKING_JOBS:
                    add(Drain(node.name, reason, "budget"))
                elif node.state in _NOT_JOINED:
                    add(Terminate(node.name, reason, "budget"))
        elif status.warning:
            key = (budget.pool, str(budget.period), _period_key(status))
            if key not in memory.warned:
                memory.warned.add(key)
                decisions.append(
                    Warn(
                        f"budget warning: {status.sentence()}",
                        pool=budget.pool,
                        key=f"budget-warning:{budget.pool or '*'}:{budget.period}:{key[2]:.0f}",
                    )
                )
    return stopped


def _period_key(status: BudgetStatus) -> float:
    return period_start(status.budget.period, status.now)


# -- idle ------------------------------------------------------------------------------------


def _is_idle(node: NodeLook, threshold: float) -> bool:
    if node.gpu_utils is None or not node.gpu_utils:
        return False  # not heard from (or no GPU seen): unknown is not idle
    if node.jobs is not None and node.jobs > 0:
        return False
    return all(util < threshold for util in node.gpu_utils)


def _remember_idleness(look: Look, pools: Mapping[str, PoolSpec], memory: Memory) -> None:
    seen = set()
    for node in look.nodes:
        pool = pools.get(node.pool)
        if pool is None:
            continue
        seen.add(node.name)
        if _is_idle(node, pool.policy.idle_gpu_util_below):
            memory.idle_since.setdefault(node.name, look.now)
        else:
            memory.idle_since.pop(node.name, None)
    for gone in set(memory.idle_since) - seen:
        del memory.idle_since[gone]


def _idle(look: Look, pool: PoolSpec, memory: Memory, add: Callable[[Drain], None]) -> None:
    after = pool.policy.idle_drain_after_s
    if after is None:
        return
    mine = [n for n in look.nodes if n.pool == pool.name]
    serving = sum(1 for n in mine if n.state in _TAKING_JOBS)
    candidates = sorted(
        (n for n in mine if n.state is State.ACTIVE and n.name in memory.idle_since),
        key=lambda n: memory.idle_since[n.name],
    )
    for node in candidates:
        idle_for = look.now - memory.idle_since[node.name]
        if idle_for < after or serving <= pool.policy.min_nodes:
            continue
        serving -= 1
        add(
            Drain(
                node.name,
                f"{POLICY_REASON} idle: no jobs and every GPU below "
                f"{pool.policy.idle_gpu_util_below:g}% for {_span(idle_for)}",
                "idle",
            )
        )


def _terminate(look: Look, pool: PoolSpec, add: Callable[[Terminate], None]) -> None:
    grace = pool.policy.idle_terminate_after_s
    for node in look.nodes:
        if node.pool != pool.name or node.state is not State.DRAINED:
            continue
        if not (node.drain_reason or "").startswith(POLICY_REASON):
            continue  # drained by a person: theirs to end
        if node.jobs:
            continue
        if look.now - node.state_since >= grace:
            add(
                Terminate(
                    node.name,
                    f"{POLICY_REASON} drained by the policy and empty for "
                    f"{_span(look.now - node.state_since)} ({node.drain_reason})",
                    "terminate",
                )
            )


# -- minimum and pressure -------------------------------------------------------------------


def _minimum(look: Look, pool: PoolSpec, memory: Memory, fits: Fits) -> Burst | None:
    """Keep ``min_nodes`` serving or coming (a floor, like Dask's adaptive minimum)."""
    floor = pool.policy.min_nodes
    if floor <= 0:
        return None
    have = sum(1 for n in look.nodes if n.pool == pool.name and n.state in _COMING | _TAKING_JOBS)
    if have >= floor:
        return None
    if _cooling(look, pool, memory):
        return None
    room = pool.max_nodes - sum(1 for n in look.nodes if n.pool == pool.name)
    count = _budget_allows(look, pool, min(floor - have, room), fits)
    if count <= 0:
        return None
    memory.last_burst[pool.name] = look.now
    return Burst(
        pool.name,
        count,
        f"{POLICY_REASON} minimum: the pool keeps {floor} node(s) and has {have}",
        "minimum",
    )


def _cooling(look: Look, pool: PoolSpec, memory: Memory) -> bool:
    """The pool burst less than its ``cooldown_s`` ago."""
    last = memory.last_burst.get(pool.name)
    return last is not None and look.now - last < pool.policy.cooldown_s


def _budget_allows(look: Look, pool: PoolSpec, count: int, fits: Fits) -> int:
    """``count``, cut to what the budgets covering the pool let it add (unchanged when no
    budget covers it, or its price is not known)."""
    price = look.prices.get(pool.name)
    allowed = fits(pool.name, price) if price is not None else None
    return count if allowed is None else min(count, allowed)


def _pressure(look: Look, pool: PoolSpec, memory: Memory, fits: Fits) -> Burst | None:
    policy = pool.policy
    if not policy.burst_on_pressure:
        return None
    for job in look.pending:
        memory.pending_since.setdefault(job.id, look.now)
    waiting_ids = {job.id for job in look.pending}
    for gone in set(memory.pending_since) - waiting_ids:
        del memory.pending_since[gone]
    waited = [
        job
        for job in look.pending
        if job.gpus_per_node <= pool.gpus_per_node
        and look.now - memory.pending_since[job.id] >= policy.pending_for_s
    ]
    wanted = sum(job.node_count for job in waited)
    if not wanted:
        return None
    if _cooling(look, pool, memory):
        return None
    mine = [n for n in look.nodes if n.pool == pool.name]
    free = sum(1 for n in mine if n.state in _COMING or (n.state is State.ACTIVE and n.jobs == 0))
    count = _budget_allows(look, pool, min(wanted - free, pool.max_nodes - len(mine)), fits)
    if count <= 0:
        return None
    gpus = sum(job.gpus for job in waited)
    price = look.prices.get(pool.name)
    memory.last_burst[pool.name] = look.now
    return Burst(
        pool.name,
        count,
        f"{POLICY_REASON} pressure: {gpus} GPU(s) in {len(waited)} job(s) waiting over "
        f"{_span(policy.pending_for_s)}, {free} node(s) free or coming"
        + (f"; {money(price)}/h each" if price is not None else ""),
    )


def _span(seconds: float) -> str:
    if math.isinf(seconds):
        return "ever"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
