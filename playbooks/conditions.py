"""Whether a :class:`~tidectl.playbooks.model.Condition` holds in a world: for ``check`` (a
step that fails unless it does) and ``when`` (a step skipped unless it does).

The answer is the list of reasons it does not hold, each a sentence naming the nodes or
dollars concerned; an empty list means it holds.
"""

from __future__ import annotations

from tidectl.console.cost.report import CostReport
from tidectl.playbooks.model import Condition
from tidectl.playbooks.report import money
from tidectl.playbooks.world import World

__all__ = ["needs_costs", "unmet"]


def needs_costs(condition: Condition) -> bool:
    """Whether ``condition`` asks about dollars (so the cost report must be read)."""
    return condition.burn_below is not None or condition.spend_below is not None


def unmet(
    condition: Condition,
    world: World,
    playbook: str,
    costs: CostReport | None = None,
) -> list[str]:
    """Why ``condition`` does not hold in ``world`` (empty: it holds). ``costs`` is needed
    when it asks about dollars; a plan's ``world`` carries what its earlier steps add."""
    why = _unmet_nodes(condition, world, playbook)
    scope = f"pool {condition.pool}" if condition.pool else "the cluster"
    if condition.burn_below is not None and costs is not None:
        burn = _burn(costs, condition.pool) + world.planned_burn
        if burn >= condition.burn_below:
            limit = money(condition.burn_below).lstrip("+")
            why.append(f"{scope} burns {money(burn).lstrip('+')}, not below {limit}")
    if condition.spend_below is not None and costs is not None:
        spent = _today(costs, condition.pool)
        if spent >= condition.spend_below:
            why.append(
                f"{scope} spent ${spent:,.2f} today (UTC), not below ${condition.spend_below:,.2f}"
            )
    if condition.job_active is not None and not world.job(condition.job_active):
        why.append(f"job {condition.job_active} is neither pending nor running")
    if condition.queue_empty is not None:
        pending = len(world.pending)
        if condition.queue_empty and pending:
            why.append(f"{pending} job(s) wait in the scheduler's queue")
        if not condition.queue_empty and not pending:
            why.append("no job waits in the scheduler's queue")
    return why


def _unmet_nodes(condition: Condition, world: World, playbook: str) -> list[str]:
    """Why the keys about nodes (healthy, min_nodes, max_nodes) do not hold."""
    if condition.nodes is None:
        return []
    why: list[str] = []
    nodes = world.select(condition.nodes, playbook)
    what = condition.nodes.describe()
    if condition.healthy is True:
        sick = [n for n in nodes if not n.healthy]
        if sick:
            listed = "; ".join(
                f"{n.name} is {n.health.word}" + (f" ({n.finding})" if n.finding else "")
                for n in sick[:5]
            )
            why.append(f"{len(sick)} of {len(nodes)} node(s) ({what}) not healthy: {listed}")
    if condition.healthy is False and nodes and all(n.healthy for n in nodes):
        why.append(f"all {len(nodes)} node(s) ({what}) are healthy")
    if condition.min_nodes is not None and len(nodes) < condition.min_nodes:
        why.append(f"{len(nodes)} node(s) ({what}), fewer than {condition.min_nodes}")
    if condition.max_nodes is not None and len(nodes) > condition.max_nodes:
        why.append(f"{len(nodes)} node(s) ({what}), more than {condition.max_nodes}")
    return why


def _burn(costs: CostReport, pool: str | None) -> float:
    if pool is None:
        return costs.burn_per_hour
    return sum(p.burn_per_hour for p in costs.pools if p.pool == pool)


def _today(costs: CostReport, pool: str | None) -> float:
    if pool is None:
        return costs.today
    return sum(p.today for p in costs.pools if p.pool == pool)
