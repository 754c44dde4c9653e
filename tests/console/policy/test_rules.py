"""The policy rules on a simulated clock (``console/policy/rules.py``): idle drain in two stages,
never below min_nodes and never on what is unknown; a person's drain is theirs; max lifetime;
budgets that stop a pool and warn once; bursting on pressure with hysteresis — a noisy queue
never fires, a persistent one fires once per cooldown, never past max_nodes or the budget."""

from __future__ import annotations

from dataclasses import replace

import pytest

from tidectl.console.config.model import Budget, BudgetPeriod, PoolPolicy, PoolSpec
from tidectl.console.cost.budgets import BudgetStatus
from tidectl.console.lifecycle.states import State
from tidectl.console.policy.rules import (
    Burst,
    Decision,
    Drain,
    Look,
    Memory,
    NodeLook,
    Terminate,
    Warn,
    decide,
)
from tidectl.console.scheduler.base import Job, JobState

POOL = PoolSpec(
    name="h100",
    provider="sim",
    region="sim-local",
    site="cloud",
    instance_types=("sim.gpu8",),
    zones=(),
    gpus_per_node=8,
    max_nodes=6,
    price_per_hour=98.0,
    policy=PoolPolicy(
        idle_drain_after_s=1800.0,
        idle_terminate_after_s=600.0,
        burst_on_pressure=True,
        pending_for_s=300.0,
        cooldown_s=600.0,
    ),
)
IDLE = (0.0,) * 8
BUSY = (0.0,) * 7 + (93.0,)


def node(name: str, state: State = State.ACTIVE, **kw: object) -> NodeLook:
    fields: dict[str, object] = {
        "name": name,
        "pool": "h100",
        "state": state,
        "state_since": 0.0,
        "created_at": 0.0,
        "jobs": 0,
        "gpu_utils": IDLE,
    }
    fields.update(kw)
    return NodeLook(**fields)  # type: ignore[arg-type]


def job(job_id: str, nodes: int = 1, gpus: int = 8) -> Job:
    return Job(job_id, "train", "ana", JobState.PENDING, "gpu", nodes, gpus)


class Policy:
    """The rules with a memory and a clock, as the loop runs them."""

    def __init__(self, pool: PoolSpec = POOL, fits: int | None = None) -> None:
        self.pool = pool
        self.memory = Memory()
        self.fits = fits

    def at(
        self,
        now: float,
        nodes: tuple[NodeLook, ...],
        pending: tuple[Job, ...] = (),
        budgets: tuple[BudgetStatus, ...] = (),
    ) -> list[Decision]:
        look = Look(now, nodes, pending, budgets, {"h100": 98.0})
        return decide(look, [self.pool], self.memory, lambda _pool, _price: self.fits)


def test_an_idle_node_is_drained_after_the_idle_time_then_terminated_after_the_grace() -> None:
    policy = Policy()
    nodes = (node("h-1"), node("h-2", jobs=1, gpu_utils=BUSY))
    assert policy.at(0, nodes) == []
    assert policy.at(1799, nodes) == []
    [drain] = policy.at(1800, nodes)
    assert isinstance(drain, Drain) and drain.node == "h-1" and drain.rule == "idle"
    assert drain.reason == "policy: idle: no jobs and every GPU below 5% for 30 min"
    drained = (node("h-1", State.DRAINED, state_since=1810, drain_reason=drain.reason),)
    assert policy.at(2409, drained) == []
    [end] = policy.at(2410, drained)
    assert isinstance(end, Terminate) and end.node == "h-1" and end.rule == "terminate"


def test_activity_or_a_job_restarts_the_idle_clock_and_unknown_is_never_idle() -> None:
    policy = Policy()
    policy.at(0, (node("h-1"),))
    policy.at(1000, (node("h-1", gpu_utils=BUSY),))  # a burst of GPU work
    assert policy.at(2000, (node("h-1"),)) == []  # idle again only since 2000
    policy.at(2500, (node("h-1", jobs=1),))
    assert policy.at(4400, (node("h-1"),)) == []
    assert policy.at(9999, (node("h-1", gpu_utils=None),)) == []  # not heard from
    assert policy.memory.idle_since == {}
    # Without a scheduler (jobs None) the GPUs alone decide.
    policy.at(10000, (node("h-1", jobs=None),))
    assert [d.rule for d in policy.at(11800, (node("h-1", jobs=None),))] == ["idle"]


def test_idle_drain_keeps_min_nodes_and_leaves_a_persons_drain_alone() -> None:
    policy = Policy(replace(POOL, policy=replace(POOL.policy, min_nodes=2)))
    nodes = (node("h-1"), node("h-2"), node("h-3"))
    policy.at(0, nodes)
    decided = policy.at(1800, nodes)
    assert [d.node for d in decided if isinstance(d, Drain)] == ["h-1"]  # 3 → 2, no further
    person = (node("h-9", State.DRAINED, drain_reason="bad DIMM, ticket 4411"),)
    assert [d for d in policy.at(99999, person) if not isinstance(d, Burst)] == []


def test_idle_drain_can_be_turned_off() -> None:
    policy = Policy(replace(POOL, policy=replace(POOL.policy, idle_drain_after_s=None)))
    policy.at(0, (node("h-1"),))
    assert policy.at(10**6, (node("h-1"),)) == []


def test_max_lifetime_drains_a_busy_node_too() -> None:
    policy = Policy(replace(POOL, policy=replace(POOL.policy, max_lifetime_s=86400.0)))
    busy = (node("h-1", jobs=2, gpu_utils=BUSY, created_at=1000.0),)
    assert policy.at(87399, busy) == []
    [drain] = policy.at(87400, busy)
    assert isinstance(drain, Drain) and drain.rule == "max-lifetime"
    assert drain.reason == "policy: max lifetime: up 24.0 h, the pool allows 24.0 h"


def status(spent: float, limit: float = 1000.0, pool: str | None = "h100") -> BudgetStatus:
    return BudgetStatus(Budget(limit, BudgetPeriod.DAY, pool), spent, 98.0, now=50000.0)


def test_a_reached_budget_drains_what_serves_ends_what_never_joined_and_stops_bursts() -> None:
    policy = Policy()
    nodes = (
        node("h-1", jobs=3, gpu_utils=BUSY),
        node("h-2", State.BOOTSTRAPPING),
        node("h-3", State.DRAINED, drain_reason="firmware"),
    )
    pending = (job("j1", nodes=2),)
    policy.at(0, nodes, pending)
    decided = policy.at(400, nodes, pending, (status(1000.0, pool=None),))
    assert [(type(d).__name__, getattr(d, "node", None), d.rule) for d in decided] == [
        ("Drain", "h-1", "budget"),
        ("Terminate", "h-2", "budget"),
    ]
    assert decided[0].reason == (  # type: ignore[union-attr]
        "policy: budget: the cluster's daily budget of $1,000.00 reached"
    )


def test_a_budget_past_warn_at_warns_once_a_period() -> None:
    policy = Policy()
    warned = policy.at(0, (), budgets=(status(850.0),))
    assert [w.sentence for w in warned if isinstance(w, Warn)] == [
        "budget warning: pool h100's daily budget of $1,000.00: $850.00 spent, $150.00 "
        "left — about 1.5 h at $98.00/h"
    ]
    assert policy.at(60, (), budgets=(status(900.0),)) == []
    (warning,) = warned
    assert isinstance(warning, Warn) and warning.pool == "h100"
    # The key names the budget and its period: the store keeps one per key, so a restarted
    # service does not warn again the same day.
    assert warning.key.startswith("budget-warning:h100:day:")


def test_pressure_bursts_for_what_waited_beyond_free_capacity_once_per_cooldown() -> None:
    policy = Policy()
    nodes = (node("h-1", jobs=1, gpu_utils=BUSY), node("h-2"))  # one free node
    pending = (job("j1", nodes=3), job("j2"))
    assert policy.at(0, nodes, pending) == []
    assert policy.at(299, nodes, pending) == []  # not waited long enough
    [burst] = policy.at(300, nodes, pending)
    assert burst == Burst(
        "h100",
        3,  # 4 nodes wanted, 1 free
        "policy: pressure: 32 GPU(s) in 2 job(s) waiting over 5 min, 1 node(s) free or "
        "coming; $98.00/h each",
    )
    # The queue still waits (the nodes are coming): nothing until the cooldown passes, and
    # then only for what the coming nodes do not cover.
    coming = (*nodes, *(node(f"h-{i}", State.PROVISIONING) for i in (3, 4, 5)))
    assert policy.at(600, coming, pending) == []
    assert policy.at(900, coming, pending) == []  # 4 wanted, 4 free or coming
    # More work arrives and waits: still no second burst inside the cooldown after one.
    more = (*pending, job("j3", nodes=2))
    policy.memory.last_burst["h100"] = 900.0  # as if it had burst just now
    assert policy.at(1000, coming, more) == []
    assert policy.at(1499, coming, more) == []  # waited, but 599 s since the last burst
    # 2 more wanted, but the pool holds 5 of its max 6: one.
    assert [(d.count, d.rule) for d in policy.at(1500, coming, more)] == [(1, "pressure")]


def test_a_noisy_queue_never_bursts() -> None:
    policy = Policy()
    decided: list[Decision] = []
    for minute in range(0, 120):
        # Jobs that come and go every 4 minutes: none ever waits 5.
        pending = (job(f"j{minute // 4}", nodes=2),) if minute % 4 < 3 else ()
        decided += policy.at(minute * 60.0, (), pending)
    assert [d for d in decided if isinstance(d, Burst)] == []


@pytest.mark.parametrize(("fits", "wanted"), [(None, 6), (2, 2), (0, None)])
def test_pressure_bursts_never_past_max_nodes_or_what_the_budget_fits(
    fits: int | None, wanted: int | None
) -> None:
    policy = Policy(fits=fits)
    pending = (job("big", nodes=10),)
    policy.at(0, (), pending)
    bursts = [d for d in policy.at(300, (), pending) if isinstance(d, Burst)]
    assert [b.count for b in bursts] == ([wanted] if wanted else [])


def test_a_job_too_big_for_the_pools_nodes_does_not_count() -> None:
    policy = Policy()
    pending = (job("fat", gpus=16),)
    policy.at(0, (), pending)
    assert policy.at(300, (), pending) == []


def test_min_nodes_is_a_floor_kept_by_bursting_once_per_cooldown() -> None:
    policy = Policy(replace(POOL, policy=replace(POOL.policy, min_nodes=2)))
    [burst] = policy.at(0, (node("h-1", jobs=1, gpu_utils=BUSY),))
    assert burst == Burst(
        "h100", 1, "policy: minimum: the pool keeps 2 node(s) and has 1", "minimum"
    )
    assert policy.at(60, (node("h-1", jobs=1, gpu_utils=BUSY),)) == []  # cooldown
    both = (node("h-1", jobs=1, gpu_utils=BUSY), node("h-2", State.PROVISIONING))
    assert policy.at(700, both) == []  # the floor is coming
