"""The admission gate: whether a new cloud node may join the scheduler, read from the fleet.

A node is admitted when the console hears its agent now, the agent sees the GPUs the pool
promises, and nothing on it is critical. The verdict has three values because the engine
acts on three: True (join it), False (refused: the node is there but wrong) and None (not
heard from yet: wait, the pool's boot timeout decides how long). Each comes with a sentence
saying what is wrong and what to do.
"""

from __future__ import annotations

from dataclasses import dataclass

from tidectl.console.fleet import Fleet, NodeState
from tidectl.console.health import can_hear
from tidectl.console.model import LinkState, Severity

__all__ = ["Admission", "admit"]


@dataclass(frozen=True, slots=True)
class Admission:
    """The gate's answer for one node: ``verdict`` (True, False, None) and why."""

    verdict: bool | None
    why: str


def admit(fleet: Fleet, name: str, expected_gpus: int) -> Admission:
    """Whether node ``name`` may join: heard now, ``expected_gpus`` GPUs, nothing critical."""
    node = fleet.nodes.get(name)
    if node is None:
        return Admission(
            None,
            f"node {name} is not in the fleet, so the console has not heard from it; link "
            "it (bootstrap) first",
        )
    waiting = _not_heard(fleet, node)
    if waiting is not None:
        return Admission(None, waiting)
    if node.agent_error is not None:
        return Admission(
            False,
            f"node {name}'s agent is not understood; redeploy a matching agent, or terminate "
            f"the node. The collector says: {node.agent_error}",
        )
    wrong_count = _gpu_count_problem(node, expected_gpus)
    if wrong_count is not None:
        return Admission(False, wrong_count)
    critical = [f for f in node.findings if f.severity is Severity.CRITICAL]
    if critical:
        count = "a critical finding" if len(critical) == 1 else f"{len(critical)} critical findings"
        return Admission(
            False,
            f"node {name} has {count} and stays out of the scheduler: terminate it, or fix "
            f"it and let the gate look again. The worst: {critical[0].message}",
        )
    return Admission(
        True,
        f"node {name} streams, sees its {expected_gpus} GPUs and has no critical finding",
    )


def _not_heard(fleet: Fleet, node: NodeState) -> str | None:
    """Why the console cannot judge the node now (None: it can)."""
    name = node.name
    if node.link is not LinkState.STREAMING:
        said = f" The link says: {node.link_error}" if node.link_error else ""
        return (
            f"node {name}'s link is {node.link.value}, not streaming; wait for the agent to "
            f"stream, or fix what stops it.{said}"
        )
    if node.sample is None:
        return f"node {name}'s agent streams but has sent no sample yet; wait a few seconds"
    if not can_hear(node, fleet.thresholds, fleet.now()):
        return (
            f"node {name}'s agent has fallen silent (its last sample is stale); wait for it "
            "to send again, or look at the node"
        )
    return None


def _gpu_count_problem(node: NodeState, expected: int) -> str | None:
    """Why the node's GPUs are not the ``expected`` count (None: they are).

    Both the hello's inventory and the latest sample must show them: the inventory says what
    the node was built with, the sample what the driver sees now.
    """
    name = node.name
    section = node.sample.probes.gpu if node.sample is not None else None
    if section is not None and section.error is not None:
        return (
            f"node {name}'s GPU probe fails ({section.error}), so its {expected} GPUs cannot "
            "be counted; check the driver, or terminate the node"
        )
    inventory = node.expected_gpus
    wrong = None
    if inventory is not None and inventory != expected:
        wrong = f"its inventory lists {inventory}"
    elif section is not None and len(section.gpus) != expected:
        no_driver = f" ({section.no_driver})" if section.no_driver else ""
        wrong = f"the driver sees {len(section.gpus)}{no_driver}"
    if wrong is not None:
        return (
            f"node {name} has the wrong GPU count: {wrong}, the pool promises {expected}; "
            "terminate it (or fix the pool's gpus_per_node)"
        )
    if expected > 0 and inventory is None and section is None:
        return (
            f"node {name} reports no GPUs at all (no inventory, no GPU probe), and the pool "
            f"promises {expected}; check that the agent's gpu probe runs, or terminate the node"
        )
    return None
