"""The reconcile loop's first half: from what the world says, decide what to do. No I/O.

Every few seconds the engine observes three truths — the provider's instances carrying this
cluster's ownership tag, the scheduler's view of each node, and the agents' heartbeats — and
hands them here with the store's nodes and instances. ``plan`` returns the actions that make
the store and the world agree; the engine carries them out (the second half) and records
each transition in the store. Keeping the decisions pure makes every rule a table-driven test.

What it finds:

* **orphans**: a tagged instance the store does not know (the control plane died between the
  launch and its commit). Adopted as a node in ``provisioning``: it must then come up, pass
  the admission gate and join like any other, or time out, fail and be cleaned up — never
  killed on sight.
* **ghosts**: a node whose instance is gone. It fails; a failed node with no instance ends.
* **zombies**: a failed node whose instance still runs, or a node drained and empty for longer
  than ``zombie_after_s``: it bills for nothing, so it is terminated — unless the scheduler
  still shows a job on it, which is reported and never killed.
* **stuck** nodes: a waiting state past its timeout, with the outcome the timeout table says
  (fail, report, or retry the termination).

Termination is confirmed by the provider (the instance reads ``terminated`` or is no longer
listed) before a node is closed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from tidectl.console.lifecycle.records import NodeRecord
from tidectl.console.lifecycle.states import (
    DEFAULT_TIMEOUTS,
    Expiry,
    NodeKind,
    State,
    Timeout,
)
from tidectl.console.providers.base import Instance, InstanceState

#: A freshly launched instance may be missing from the provider's list for a while (EC2's
#: describe is eventually consistent): a node is not called a ghost before this.
GHOST_GRACE_S = 60.0
#: A drained, empty cloud node is terminated after this long (it bills for nothing).
ZOMBIE_AFTER_S = 3600.0
#: Instance states that no longer bill, or are about to stop.
_GONE = frozenset({InstanceState.SHUTTING_DOWN, InstanceState.TERMINATED})


@dataclass(frozen=True, slots=True)
class NodeSeen:
    """What the scheduler and the agents say of one node, at observe time."""

    #: The scheduler knows the node and places jobs on it (idle, allocated, mixed).
    scheduled: bool = False
    #: The scheduler says drained (not merely draining).
    drained: bool = False
    jobs: int = 0
    #: The admission gate: the agent answers over a verified link, with the expected GPUs and
    #: no critical finding. None: not heard from (yet).
    healthy: bool | None = None


@dataclass(frozen=True, slots=True)
class Observation:
    at: float  # wall clock, as the store's times
    #: The provider's instances carrying this cluster's ownership tag, by instance id.
    instances: Mapping[str, Instance]
    #: By node name; a node missing here is one neither scheduler nor agent knows.
    nodes: Mapping[str, NodeSeen] = field(default_factory=dict)


# -- actions -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Move:
    """Record a transition (the engine checks it against the table as it writes it)."""

    node: str
    after: State
    reason: str


@dataclass(frozen=True, slots=True)
class Adopt:
    """Record an orphan instance and a node for it, entering in ``provisioning``."""

    instance: Instance
    pool: str
    node: str
    reason: str


@dataclass(frozen=True, slots=True)
class Terminate:
    """Ask the provider to terminate (idempotent); the node is or goes ``terminating``."""

    node: str
    instance_id: str
    reason: str


@dataclass(frozen=True, slots=True)
class ConfirmTerminated:
    """The provider says the instance is gone: close its row (before the node's)."""

    node: str
    instance_id: str


@dataclass(frozen=True, slots=True)
class Join:
    """Ask the scheduler to take the node."""

    node: str


@dataclass(frozen=True, slots=True)
class Report:
    """Something an operator must know and the loop will not act on by itself."""

    node: str
    sentence: str


Action = Move | Adopt | Terminate | ConfirmTerminated | Join | Report


# -- the plan ------------------------------------------------------------------------------------


def plan(
    nodes: Sequence[NodeRecord],
    instances: Iterable[str],
    seen: Observation,
    *,
    pool_tag: str = "tidectl:pool",
    timeouts: Mapping[State, Timeout] = DEFAULT_TIMEOUTS,
    zombie_after_s: float = ZOMBIE_AFTER_S,
) -> list[Action]:
    """The actions that bring the store and the world together, node by node.

    ``instances`` are the ids of the instances the store has open (not confirmed terminated):
    the planner never adopts one of those as an orphan."""
    actions: list[Action] = []
    known = set(instances)
    known.update(node.instance_id for node in nodes if node.instance_id)
    for node in nodes:
        if node.kind is NodeKind.CLOUD:
            actions += _cloud(node, seen, timeouts, zombie_after_s)
        else:
            actions += _onprem(node, seen, timeouts)
    for instance_id, instance in sorted(seen.instances.items()):
        if instance_id in known or instance.state in _GONE:
            continue
        # Every instance here carries the cluster's tag: the provider was asked by it.
        pool = instance.tags.get(pool_tag, "unknown")
        actions.append(
            Adopt(
                instance,
                pool,
                orphan_name(pool, instance_id),
                f"tagged instance {instance_id} was not in the store (adopted; it must join "
                "within its timeouts or it is cleaned up)",
            )
        )
    return actions


def orphan_name(pool: str, instance_id: str) -> str:
    """The node name an adopted instance gets: its pool and its id, stable across restarts."""
    return f"{pool}-{instance_id.removeprefix('i-')}"


def _expired(
    node: NodeRecord, seen: Observation, timeouts: Mapping[State, Timeout]
) -> Timeout | None:
    timeout = timeouts.get(node.state)
    if timeout is None or seen.at - node.state_since <= timeout.seconds:
        return None
    return timeout


@dataclass(frozen=True, slots=True)
class _Seen:
    """One cloud node with what the world says of it."""

    node: NodeRecord
    view: NodeSeen
    instance: Instance | None
    at: float

    @property
    def name(self) -> str:
        return self.node.name

    @property
    def gone(self) -> bool:
        return self.instance is None or self.instance.state in _GONE

    @property
    def age(self) -> float:
        return self.at - self.node.state_since

    @property
    def instance_id(self) -> str:
        assert self.node.instance_id is not None, f"{self.name} bills but has no instance id"
        return self.node.instance_id


def _cloud(
    node: NodeRecord,
    seen: Observation,
    timeouts: Mapping[State, Timeout],
    zombie_after_s: float,
) -> list[Action]:
    instance = seen.instances.get(node.instance_id) if node.instance_id else None
    it = _Seen(node, seen.nodes.get(node.name, NodeSeen()), instance, seen.at)
    expired = _expired(node, seen, timeouts)
    special = _SPECIAL.get(node.state)
    if special is not None:
        return special(it, expired)
    lost = _lost(it)
    if lost is not None:
        return lost
    step = _STEPS.get(node.state)
    actions = step(it, zombie_after_s) if step is not None else []
    if any(isinstance(action, Move | Terminate) for action in actions):
        return actions  # progress beats a timeout
    # A timeout beats a request asked again (a join): the node fails rather than wait forever.
    return _on_expiry(node, expired) or actions


def _requested(it: _Seen, expired: Timeout | None) -> list[Action]:
    return _on_expiry(it.node, expired)


def _terminated(_it: _Seen, _expired: Timeout | None) -> list[Action]:
    return []


def _terminating(it: _Seen, expired: Timeout | None) -> list[Action]:
    if it.instance is None or it.instance.state is InstanceState.TERMINATED:
        confirm: list[Action] = []
        if it.node.instance_id:
            confirm.append(ConfirmTerminated(it.name, it.node.instance_id))
        return [*confirm, Move(it.name, State.TERMINATED, "the provider confirmed it is gone")]
    if it.view.jobs:
        # Whatever led here, a node the scheduler shows a job on is never terminated.
        return [
            Report(
                it.name,
                f"terminating, but the scheduler shows {it.view.jobs} job(s) on it: "
                "not terminating again until it is empty",
            )
        ]
    if it.instance.state is InstanceState.SHUTTING_DOWN and expired is None:
        # On its way, not gone: the node closes on the provider's final word.
        return []
    retry: list[Action] = [Terminate(it.name, it.instance_id, "still running: terminate again")]
    if expired is not None:
        retry.append(
            Report(it.name, f"termination not confirmed after {expired.seconds:.0f} s; retrying")
        )
    return retry


def _lost(it: _Seen) -> list[Action] | None:
    """Ghosts and reclaimed spot instances; None when the instance is there."""
    if it.gone and not (it.node.state is State.PROVISIONING and it.age < GHOST_GRACE_S):
        if it.node.state is State.FAILED:
            confirm: list[Action] = []
            if it.node.instance_id:
                confirm.append(ConfirmTerminated(it.name, it.node.instance_id))
            return [*confirm, Move(it.name, State.TERMINATED, "no instance exists for the node")]
        return [Move(it.name, State.FAILED, "its instance is gone (terminated or lost)")]
    if it.instance is not None and it.instance.interruption and it.node.state is not State.FAILED:
        return [Move(it.name, State.FAILED, "the cloud reclaimed the spot instance")]
    return None


def _failed(it: _Seen, _zombie_after_s: float) -> list[Action]:
    if it.view.jobs:
        return [
            Report(
                it.name,
                f"failed, and its instance still runs {it.view.jobs} job(s): not terminated; "
                "drain it in the scheduler, or terminate it by hand if the jobs are lost",
            )
        ]
    return [
        Move(it.name, State.TERMINATING, "a failed node's instance still bills"),
        Terminate(it.name, it.instance_id, "clean up a failed node"),
    ]


def _provisioning(it: _Seen, _zombie_after_s: float) -> list[Action]:
    if it.instance is not None and it.instance.state is InstanceState.RUNNING:
        return [Move(it.name, State.BOOTSTRAPPING, "the instance is running")]
    return []


def _bootstrapping(it: _Seen, _zombie_after_s: float) -> list[Action]:
    if it.view.healthy:
        return [Move(it.name, State.JOINING, "admission gate passed"), Join(it.name)]
    return []


def _joining(it: _Seen, _zombie_after_s: float) -> list[Action]:
    if it.view.scheduled:
        return [Move(it.name, State.ACTIVE, "the scheduler takes jobs on it")]
    # Asked again every pass until the scheduler has it: a crash between the move here and
    # the join call must not leave a node the scheduler never hears of (the engine skips a
    # node the scheduler already lists).
    return [Join(it.name)]


def _draining(it: _Seen, _zombie_after_s: float) -> list[Action]:
    if it.view.drained and not it.view.jobs:
        return [Move(it.name, State.DRAINED, "the scheduler says drained, no job left")]
    return []


def _drained(it: _Seen, zombie_after_s: float) -> list[Action]:
    if it.age > zombie_after_s and it.view.drained and not it.view.jobs:
        return [
            Move(it.name, State.TERMINATING, f"drained and empty for {it.age:.0f} s"),
            Terminate(it.name, it.instance_id, "a drained node bills for nothing"),
        ]
    return []


#: States handled before (and instead of) the lost-instance check.
_SPECIAL: Mapping[State, Callable[[_Seen, Timeout | None], list[Action]]] = {
    State.REQUESTED: _requested,
    State.TERMINATING: _terminating,
    State.TERMINATED: _terminated,
}

_STEPS: Mapping[State, Callable[[_Seen, float], list[Action]]] = {
    State.FAILED: _failed,
    State.PROVISIONING: _provisioning,
    State.BOOTSTRAPPING: _bootstrapping,
    State.JOINING: _joining,
    State.DRAINING: _draining,
    State.DRAINED: _drained,
}


def _onprem(node: NodeRecord, seen: Observation, timeouts: Mapping[State, Timeout]) -> list[Action]:
    view = seen.nodes.get(node.name, NodeSeen())
    if node.state is State.DRAINING and view.drained and not view.jobs:
        return [Move(node.name, State.DRAINED, "the scheduler says drained, no job left")]
    return _on_expiry(node, _expired(node, seen, timeouts))


def _on_expiry(node: NodeRecord, expired: Timeout | None) -> list[Action]:
    if expired is None:
        return []
    if expired.expiry is Expiry.FAIL:
        return [
            Move(
                node.name,
                State.FAILED,
                f"{node.state} for over {expired.seconds:.0f} s: {expired.why}",
            )
        ]
    return [Report(node.name, f"{node.state} for over {expired.seconds:.0f} s: {expired.why}")]
