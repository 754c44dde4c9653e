"""What a step sees of the cluster: every node with the facts selectors and conditions test.

A :class:`World` is read once at the start of each step (and of each ``--check`` step, where
the plan then applies what earlier steps would change). It joins four sources through the
control plane: the configured on-prem machines, the lifecycle store's records, the fleet's
health and GPUs (the agents' word), and the scheduler's nodes and jobs (the last reconcile
pass's read). Nothing here does I/O; the backend gathers the pieces.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace

from tidectl.console.config.model import ClusterConfig
from tidectl.console.fleet import Fleet
from tidectl.console.lifecycle.records import NodeRecord
from tidectl.console.lifecycle.states import NodeKind, State
from tidectl.console.model import Severity
from tidectl.console.nodesets import expand
from tidectl.console.scheduler.base import (
    AUTOMATION_PREFIX,
    Job,
    JobState,
    SchedState,
    SchedulerSnapshot,
    automation_reason,
)
from tidectl.playbooks.errors import StepFailed
from tidectl.playbooks.model import Select

__all__ = ["NodeFacts", "World", "drain_prefix", "drain_reason"]

#: Cloud states that serve jobs (a drain applies), and those that bill.
SERVING = frozenset({State.ACTIVE, State.JOINING})
NOT_JOINED = frozenset({State.REQUESTED, State.PROVISIONING, State.BOOTSTRAPPING})
ENDED = frozenset({State.TERMINATED, State.FAILED})


def drain_prefix(playbook: str) -> str:
    """How a playbook's drain reasons start: the automation prefix and the playbook's name,
    so a later run knows its own drains (``drained_by_playbook``) and never a person's."""
    return f"{AUTOMATION_PREFIX} playbook {playbook}:"


def drain_reason(playbook: str, reason: str) -> str:
    """The reason a playbook's drain gives the scheduler: ``tidectl: playbook NAME: REASON``.
    Raises ``InvalidReasonError`` (a ``SchedulerError``) for one a scheduler cannot carry."""
    return automation_reason(f"playbook {playbook}: {reason}")


@dataclass(frozen=True, slots=True)
class NodeFacts:
    """One node as a step sees it."""

    name: str
    cloud: bool
    pool: str | None
    state: State
    health: Severity = Severity.UNKNOWN
    finding: str | None = None  # the worst finding's code and sentence
    gpus: int | None = None
    jobs: tuple[str, ...] = ()
    drain_reason: str | None = None
    price_per_hour: float | None = None
    launched: bool = False  # by this run's bursts
    new: bool = False  # a node a planned burst adds (in a plan only)
    recorded: bool = False  # the lifecycle store has it (a wait on its state can follow it)

    @property
    def healthy(self) -> bool:
        """The agent reports, and nothing it reports is critical."""
        return self.health in (Severity.OK, Severity.WARN)


@dataclass(slots=True)
class World:
    """Every node by name, the scheduler's jobs, and whether there is a scheduler."""

    nodes: dict[str, NodeFacts]
    jobs: tuple[Job, ...] = ()
    has_scheduler: bool = False
    planned_burn: float = 0.0  # $/h a plan's earlier steps add (negative: save)
    new_count: dict[str, int] = field(default_factory=dict)  # per pool, in a plan

    @classmethod
    def gather(
        cls,
        config: ClusterConfig,
        records: Iterable[NodeRecord],
        fleet: Fleet | None,
        snapshot: SchedulerSnapshot | None,
        *,
        launched: Collection[str] = (),
        has_scheduler: bool,
    ) -> World:
        """The world from the control plane's reads (see the module's docstring)."""
        by_name = {record.name: record for record in records}
        sched = {node.name: node for node in snapshot.nodes} if snapshot else {}
        jobs_on: dict[str, list[str]] = {}
        for job in snapshot.jobs if snapshot else ():
            if job.state is not JobState.PENDING:
                for host in job.nodes:
                    jobs_on.setdefault(host, []).append(job.id)
        names = [spec.name for spec in config.nodes]
        configured = set(names)
        names += [name for name in by_name if name not in configured]
        nodes: dict[str, NodeFacts] = {}
        for name in names:
            record = by_name.get(name)
            seen = sched.get(name)
            cloud = record is not None and record.kind is NodeKind.CLOUD
            if record is not None:
                state = record.state
            elif seen is not None and seen.state is SchedState.DRAINING:
                state = State.DRAINING
            elif seen is not None and seen.state is SchedState.DRAINED:
                state = State.DRAINED
            else:
                state = State.ACTIVE  # a configured machine tidectl never moved
            node = fleet.nodes.get(name) if fleet is not None else None
            health, finding, gpus = Severity.UNKNOWN, None, None
            if node is not None:
                health = node.health
                if node.findings:
                    worst = max(node.findings, key=lambda f: f.severity)
                    finding = f"{worst.code}: {worst.message}"
                if node.hello is not None:
                    gpus = node.hello.gpu_count
            if gpus is None and seen is not None and seen.gpus:
                gpus = seen.gpus
            nodes[name] = NodeFacts(
                name=name,
                cloud=cloud,
                pool=record.pool if record is not None else None,
                state=state,
                health=health,
                finding=finding,
                gpus=gpus,
                jobs=tuple(jobs_on.get(name, ())),
                drain_reason=seen.reason if seen is not None and seen.drain_set else None,
                price_per_hour=record.price_per_hour if record is not None else None,
                launched=name in launched,
                recorded=record is not None,
            )
        return cls(nodes, snapshot.jobs if snapshot else (), has_scheduler)

    # -- selecting --------------------------------------------------------------------------

    def select(self, select: Select, playbook: str) -> list[NodeFacts]:
        """The nodes ``select`` matches, by name. Raises ``StepFailed`` for a name in
        ``names`` this cluster does not have."""
        named: set[str] | None = None
        if select.names is not None:
            wanted = expand(select.names)
            unknown = [name for name in wanted if name not in self.nodes]
            if unknown:
                raise StepFailed(
                    f"{', '.join(unknown[:5])} {'is' if len(unknown) == 1 else 'are'} not a node "
                    "of this cluster (neither configured nor known to the lifecycle store); "
                    "check the names against tidectl nodes"
                )
            named = set(wanted)
        picked = [
            node
            for node in self.nodes.values()
            if (named is None or node.name in named) and _matches(node, select, playbook)
        ]
        return sorted(picked, key=lambda node: (node.new, node.name))

    def live_in(self, pool: str) -> list[NodeFacts]:
        """The pool's nodes that count towards ``ensure`` (not ended)."""
        return [n for n in self.nodes.values() if n.pool == pool and n.state not in ENDED]

    def job(self, wanted: str) -> list[Job]:
        """The jobs pending or running whose id or name is ``wanted`` (a completing job has
        finished its work: the scheduler is only cleaning up after it)."""
        active = (JobState.PENDING, JobState.RUNNING)
        return [job for job in self.jobs if wanted in (job.id, job.name) and job.state in active]

    @property
    def pending(self) -> list[Job]:
        return [job for job in self.jobs if job.state is JobState.PENDING]

    def burn(self) -> float:
        """Dollars an hour the billing cloud nodes cost (with a plan's changes)."""
        return sum(
            node.price_per_hour or 0.0
            for node in self.nodes.values()
            if node.cloud and node.state not in (State.TERMINATED, State.REQUESTED)
        )

    # -- a plan's changes -------------------------------------------------------------------

    def moved(self, changes: Mapping[str, State]) -> World:
        """This world with nodes moved to new states (a plan's step done)."""
        nodes = dict(self.nodes)
        for name, state in changes.items():
            if name in nodes:
                nodes[name] = replace(nodes[name], state=state)
        return World(nodes, self.jobs, self.has_scheduler, self.planned_burn, self.new_count)

    def with_new(
        self, pool: str, count: int, gpus: int, price: float | None
    ) -> tuple[World, list[str]]:
        """This world with ``count`` planned nodes in ``pool`` (active, healthy, launched by
        this run); their placeholder names."""
        nodes = dict(self.nodes)
        first = self.new_count.get(pool, 0)
        names = [f"(new {pool} node {first + i})" for i in range(1, count + 1)]
        for name in names:
            nodes[name] = NodeFacts(
                name=name,
                cloud=True,
                pool=pool,
                state=State.ACTIVE,
                health=Severity.OK,
                gpus=gpus,
                price_per_hour=price,
                launched=True,
                new=True,
                recorded=True,
            )
        counts = {**self.new_count, pool: first + count}
        return World(nodes, self.jobs, self.has_scheduler, self.planned_burn, counts), names


def _matches(node: NodeFacts, select: Select, playbook: str) -> bool:
    """Whether ``node`` matches every key ``select`` gives (``names`` is checked apart)."""
    ours = (node.drain_reason or "").startswith(drain_prefix(playbook))
    tests = (
        node.state in select.state if select.state else node.state is not State.TERMINATED,
        select.pool is None or (node.cloud and select.pool in ("*", node.pool)),
        select.onprem is None or node.cloud != select.onprem,
        not select.health or any(_health_is(node, word) for word in select.health),
        select.idle is None or (not node.jobs) == select.idle,
        select.gpus is None or bool(node.gpus) == select.gpus,
        select.launched is None or node.launched == select.launched,
        select.drained_by_playbook is None or ours == select.drained_by_playbook,
    )
    return all(tests)


def _health_is(node: NodeFacts, word: str) -> bool:
    if word == "healthy":
        return node.healthy
    if word == "unhealthy":
        return node.health is Severity.CRITICAL
    return node.health.word == word


def names_of(nodes: Sequence[NodeFacts]) -> list[str]:
    return [node.name for node in nodes]
