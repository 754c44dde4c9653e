"""The cluster the reconcile benchmark runs on: a seeded store, a fake cloud, a fake scheduler.

The store is real (SQLite in WAL mode), seeded through its own API: nodes spread over the
lifecycle states as a busy cluster has them, every transition that brought them there, their
instance rows, the burst intents that launched them, and the ledger stretches the store
keeps with each move. The cloud and the scheduler are fakes held in memory that agree with
the store, so a reconcile pass over them finds nothing to change until :func:`churn` changes
the world. They answer with prepared objects: what they cost is close to nothing, so what the
benchmark times is the control plane's own work.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

from tidectl.console.config.model import PoolSpec
from tidectl.console.lifecycle.engine import Engine
from tidectl.console.lifecycle.records import IntentAction, IntentStatus
from tidectl.console.lifecycle.states import NodeKind, State
from tidectl.console.lifecycle.store import Store
from tidectl.console.providers.base import (
    Instance,
    InstanceState,
    InvalidRequestError,
    LaunchRequest,
    ownership_tags,
)
from tidectl.console.scheduler.base import (
    Demand,
    Job,
    JobState,
    NodeBusyError,
    NodeFlag,
    SchedNode,
    SchedState,
    UnknownNodeError,
    demand_of,
)

CLUSTER = "bench"
S = State

#: How a busy cluster's nodes are spread over the states; active takes what is left.
MIX: Mapping[State, float] = {
    S.PROVISIONING: 0.03,
    S.BOOTSTRAPPING: 0.02,
    S.JOINING: 0.02,
    S.DRAINING: 0.03,
    S.DRAINED: 0.02,
    S.TERMINATING: 0.01,
    S.FAILED: 0.02,
}
#: The moves that brought a node from its launch to each state, in order.
PATHS: Mapping[State, tuple[State, ...]] = {
    S.PROVISIONING: (S.PROVISIONING,),
    S.BOOTSTRAPPING: (S.PROVISIONING, S.BOOTSTRAPPING),
    S.JOINING: (S.PROVISIONING, S.BOOTSTRAPPING, S.JOINING),
    S.ACTIVE: (S.PROVISIONING, S.BOOTSTRAPPING, S.JOINING, S.ACTIVE),
    S.DRAINING: (S.PROVISIONING, S.BOOTSTRAPPING, S.JOINING, S.ACTIVE, S.DRAINING),
    S.DRAINED: (S.PROVISIONING, S.BOOTSTRAPPING, S.JOINING, S.ACTIVE, S.DRAINING, S.DRAINED),
    S.TERMINATING: (
        *(S.PROVISIONING, S.BOOTSTRAPPING, S.JOINING, S.ACTIVE, S.DRAINING, S.DRAINED),
        S.TERMINATING,
    ),
    S.FAILED: (S.PROVISIONING, S.BOOTSTRAPPING, S.JOINING, S.ACTIVE, S.FAILED),
    S.TERMINATED: (
        *(S.PROVISIONING, S.BOOTSTRAPPING, S.JOINING, S.ACTIVE, S.DRAINING, S.DRAINED),
        *(S.TERMINATING, S.TERMINATED),
    ),
}
#: How long a node has been in its state (seconds, low to high): inside every timeout, so
#: the steady passes find nothing expired.
AGES: Mapping[State, tuple[float, float]] = {
    S.PROVISIONING: (5.0, 600.0),
    S.BOOTSTRAPPING: (5.0, 400.0),
    S.JOINING: (5.0, 200.0),
    S.ACTIVE: (3600.0, 5 * 86400.0),
    S.DRAINING: (60.0, 3 * 3600.0),
    S.DRAINED: (10.0, 1800.0),
    S.TERMINATING: (5.0, 200.0),
    S.FAILED: (60.0, 3600.0),
    S.TERMINATED: (3600.0, 7 * 86400.0),
}
SEEDED = "seeded by the benchmark"
STEP_S = 60.0  # between the seeded moves of one node
BURST_SIZE = 32  # nodes per seeded burst intent
POOLS = (
    PoolSpec(
        name="a100",
        provider="aws",
        region="us-east-1",
        site="cloud",
        instance_types=("p4d.24xlarge",),
        zones=("us-east-1a",),
        gpus_per_node=8,
        max_nodes=10_000,
        price_per_hour=32.77,
    ),
    PoolSpec(
        name="h100",
        provider="aws",
        region="us-east-1",
        site="cloud",
        instance_types=("p5.48xlarge",),
        zones=("us-east-1b",),
        gpus_per_node=8,
        max_nodes=10_000,
        price_per_hour=98.32,
        spot=True,
    ),
)


# -- the fakes -------------------------------------------------------------------------------


class FakeCloud:
    """A cloud in memory (the Provider protocol). Terminating an instance shuts it down at
    once, except the ``slow`` ones, which stay running as if the cloud had not got to them."""

    def __init__(self) -> None:
        self.instances: dict[str, Instance] = {}
        self.slow: set[str] = set()
        self.terminate_calls = 0

    async def launch(self, request: LaunchRequest) -> list[Instance]:
        raise InvalidRequestError("the benchmark's cloud launches nothing; seed it instead")

    async def describe(self, tags: Mapping[str, str]) -> list[Instance]:
        wanted = tags.items()
        return [i for i in self.instances.values() if all(i.tags.get(k) == v for k, v in wanted)]

    async def terminate(self, instance_ids: Sequence[str]) -> None:
        self.terminate_calls += 1
        for instance_id in instance_ids:
            instance = self.instances.get(instance_id)
            if instance is not None and instance_id not in self.slow:
                self.instances[instance_id] = replace(instance, state=InstanceState.SHUTTING_DOWN)

    async def price_per_hour(self, instance_type: str, *, spot: bool) -> float | None:
        return None


class FakeScheduler:
    """A scheduler in memory (the Scheduler protocol): its nodes by name and its jobs."""

    def __init__(self) -> None:
        self.by_name: dict[str, SchedNode] = {}
        self.job_list: list[Job] = []
        self._sorted: list[SchedNode] | None = None

    def put(self, node: SchedNode) -> None:
        self.by_name[node.name] = node
        self._sorted = None

    def clear_jobs(self, name: str) -> None:
        """Every job on ``name`` ends (the scheduler's word for the node is not changed)."""
        self.job_list = [job for job in self.job_list if name not in job.nodes]

    async def nodes(self) -> list[SchedNode]:
        if self._sorted is None:  # a real scheduler answers sorted; sort once per change
            self._sorted = sorted(self.by_name.values(), key=lambda n: n.name)
        return list(self._sorted)

    async def jobs(self, node: str | None = None) -> list[Job]:
        if node is None:
            return list(self.job_list)
        if node not in self.by_name:
            raise UnknownNodeError([node])
        return [job for job in self.job_list if node in job.nodes]

    async def drain(self, nodes: Sequence[str], reason: str) -> None:
        for name in nodes:
            self.put(replace(self.by_name[name], state=SchedState.DRAINING, reason=reason))

    async def resume(self, nodes: Sequence[str]) -> None:
        for name in nodes:
            self.put(replace(self.by_name[name], state=SchedState.IDLE, reason=None))

    async def pending_demand(self) -> Demand:
        return demand_of(self.job_list)

    async def add_node(self, name: str, gpus: int) -> None:
        # Added, not up yet: a joining node is scheduled on a later pass.
        flags = frozenset({NodeFlag.NOT_RESPONDING})
        self.put(SchedNode(name, SchedState.UNKNOWN, gpus, flags=flags))

    async def remove_node(self, name: str) -> None:
        if name not in self.by_name:
            raise UnknownNodeError([name])
        busy = [job.id for job in self.job_list if name in job.nodes]
        if busy:
            raise NodeBusyError(name, busy)
        del self.by_name[name]
        self._sorted = None


# -- the seeded cluster ----------------------------------------------------------------------


@dataclass
class World:
    store: Store
    cloud: FakeCloud
    scheduler: FakeScheduler
    now: float
    rng: random.Random
    healthy: dict[str, bool | None] = field(default_factory=dict)
    next_instance: int = 1

    def engine(self) -> Engine:
        return Engine(
            self.store,
            dict.fromkeys((pool.name for pool in POOLS), self.cloud),
            self.scheduler,
            {pool.name: pool for pool in POOLS},
            CLUSTER,
            health=self.healthy.get,
            clock=lambda: self.now,
        )

    def new_instance_id(self) -> str:
        self.next_instance += 1
        return f"i-{self.next_instance:017x}"


def state_counts(nodes: int) -> dict[State, int]:
    counts = {state: round(share * nodes) for state, share in MIX.items()}
    counts[S.ACTIVE] = nodes - sum(counts.values())
    return counts


def seed(world: World, nodes: int, history: int) -> None:
    """Write ``nodes`` live nodes and ``history`` terminated ones, and the world around them."""
    finals = [state for state, count in state_counts(nodes).items() for _ in range(count)]
    finals += [S.TERMINATED] * history
    world.rng.shuffle(finals)
    intents: dict[str, str] = {}
    for index, final in enumerate(finals):
        pool = POOLS[index % len(POOLS)]
        burst = f"{pool.name}-{index // (BURST_SIZE * len(POOLS))}"
        if burst not in intents:
            intents[burst] = _seed_intent(world, pool, burst)
        _seed_node(world, f"{pool.name}-{index:05d}", pool, final, intents[burst])
    _seed_jobs(world)


def _seed_intent(world: World, pool: PoolSpec, burst: str) -> str:
    at = world.now - AGES[S.TERMINATED][1]
    intent = world.store.add_intent(
        token=f"seed-{burst}",
        action=IntentAction.BURST,
        pool=pool.name,
        actor="bench",
        frontend="bench",
        request_id=f"seed-{burst}",
        at=at,
        count=BURST_SIZE,
    )
    world.store.set_intent_status(intent.id, IntentStatus.DONE, at=at)
    return intent.id


def _seed_node(world: World, name: str, pool: PoolSpec, final: State, intent: str) -> None:
    store, path = world.store, PATHS[final]
    since = world.now - world.rng.uniform(*AGES[final])
    launched = since - STEP_S * len(path)
    instance_id = world.new_instance_id()
    store.add_node(
        name,
        NodeKind.CLOUD,
        pool.name,
        S.REQUESTED,
        launched,
        reason=SEEDED,
        actor="bench",
        request_id="seed",
        intent_id=intent,
    )
    for step, state in enumerate(path):
        at = since - STEP_S * (len(path) - 1 - step)
        store.transition(
            name,
            state,
            reason=SEEDED,
            actor="bench",
            request_id="seed",
            at=at,
            # The launch's answer: the store opens the node's ledger stretch at this price
            # (and closes it when the node stops billing).
            instance_id=instance_id if state is S.PROVISIONING else None,
            price_per_hour=pool.price_per_hour if state is S.PROVISIONING else None,
        )
    instance = Instance(
        instance_id,
        _instance_state(final),
        pool.instance_types[0],
        pool.zones[0],
        datetime.fromtimestamp(launched, UTC),
        ownership_tags(CLUSTER, pool.name, intent),
        private_ip=None if final is S.TERMINATED else f"10.0.{len(world.cloud.instances)}.1",
        spot=pool.spot,
    )
    store.record_instance(
        instance_id,
        provider=pool.provider,
        pool=pool.name,
        region=pool.region,
        zone=instance.zone,
        instance_type=instance.instance_type,
        intent_id=intent,
        node=name,
        launched_at=launched,
        tags=instance.tags,
        state=str(instance.state),
        seen_at=world.now,
    )
    if final is S.TERMINATED:
        store.confirm_terminated(instance_id, since)
        # The cloud still lists an instance for a while after it ends (EC2: about an hour).
        if world.now - since < 2 * 3600.0:
            world.cloud.instances[instance_id] = instance
        return
    world.cloud.instances[instance_id] = instance
    if final is S.TERMINATING:
        world.cloud.slow.add(instance_id)
    world.healthy[name] = None if final in (S.PROVISIONING, S.BOOTSTRAPPING) else True
    sched = _sched_state(final)
    if sched is not None:
        world.scheduler.put(SchedNode(name, sched, pool.gpus_per_node, partitions=(pool.name,)))


def _instance_state(final: State) -> InstanceState:
    if final is S.PROVISIONING:
        return InstanceState.PENDING
    if final is S.TERMINATED:
        return InstanceState.TERMINATED
    return InstanceState.RUNNING


def _sched_state(final: State) -> SchedState | None:
    """What the scheduler says of a node in ``final``, before jobs are placed."""
    return {
        S.JOINING: SchedState.UNKNOWN,  # added, not up yet
        S.ACTIVE: SchedState.IDLE,
        S.DRAINING: SchedState.DRAINING,
        S.DRAINED: SchedState.DRAINED,
        S.TERMINATING: SchedState.DRAINED,
        S.FAILED: SchedState.DOWN,
    }.get(final)


def _seed_jobs(world: World) -> None:
    """Running jobs on most active nodes (1 to 8 nodes each), one on every draining node and
    every failed one (so the steady passes leave them be), and some pending ones."""
    sched, rng = world.scheduler, world.rng
    placed: dict[str, list[str]] = {}
    busy: dict[str, list[str]] = {}
    for node in world.store.nodes():
        if node.state is S.ACTIVE and rng.random() < 0.8:
            busy.setdefault(node.pool or "", []).append(node.name)
        elif node.state in (S.DRAINING, S.FAILED):
            _add_job(sched, placed, node.pool or "", [node.name], world.now)
    for pool_name, names in sorted(busy.items()):
        start = 0
        while start < len(names):
            size = rng.choice((1, 1, 2, 4, 8))
            _add_job(sched, placed, pool_name, names[start : start + size], world.now)
            start += size
    for name, jobs in placed.items():
        state = sched.by_name[name].state
        if state is SchedState.IDLE:
            state = SchedState.ALLOCATED if rng.random() < 0.85 else SchedState.MIXED
        sched.put(replace(sched.by_name[name], state=state, jobs=tuple(jobs)))
    for number in range(len(sched.job_list) // 10):
        pool = POOLS[number % len(POOLS)]
        sched.job_list.append(
            Job(
                id=f"p{number}",
                name="train",
                user="alice",
                state=JobState.PENDING,
                partition=pool.name,
                node_count=2,
                gpus_per_node=pool.gpus_per_node,
                submitted_at=world.now,
                reason="Resources",
            )
        )


def _add_job(
    sched: FakeScheduler, placed: dict[str, list[str]], pool: str, names: list[str], now: float
) -> None:
    job_id = str(len(sched.job_list) + 1)
    sched.job_list.append(
        Job(
            id=job_id,
            name="train",
            user="alice",
            state=JobState.RUNNING,
            partition=pool,
            node_count=len(names),
            gpus_per_node=8,
            nodes=tuple(names),
            submitted_at=now - 7200,
            started_at=now - 3600,
            time_limit_s=86400.0,
        )
    )
    for name in names:
        placed.setdefault(name, []).append(job_id)


# -- churn -----------------------------------------------------------------------------------


def _booted(world: World, name: str, instance_id: str) -> None:
    world.cloud.instances[instance_id] = replace(
        world.cloud.instances[instance_id], state=InstanceState.RUNNING
    )


def _passed_the_gate(world: World, name: str, instance_id: str) -> None:
    world.healthy[name] = True


def _admitted(world: World, name: str, instance_id: str) -> None:
    world.scheduler.put(
        replace(world.scheduler.by_name[name], state=SchedState.IDLE, flags=frozenset())
    )


def _drained(world: World, name: str, instance_id: str) -> None:
    world.scheduler.clear_jobs(name)
    world.scheduler.put(replace(world.scheduler.by_name[name], state=SchedState.DRAINED, jobs=()))


def _lost(world: World, name: str, instance_id: str) -> None:
    del world.cloud.instances[instance_id]


def _reclaimed(world: World, name: str, instance_id: str) -> None:
    world.cloud.instances[instance_id] = replace(
        world.cloud.instances[instance_id], interruption=True
    )


#: Each kind of change, and the state of the nodes it can happen to.
CHANGES: Sequence[tuple[str, State, Callable[[World, str, str], None]]] = (
    ("booted", S.PROVISIONING, _booted),
    ("passed the admission gate", S.BOOTSTRAPPING, _passed_the_gate),
    ("admitted by the scheduler", S.JOINING, _admitted),
    ("drained by the scheduler", S.DRAINING, _drained),
    ("instance lost", S.ACTIVE, _lost),
    ("spot instance reclaimed", S.ACTIVE, _reclaimed),
)


def churn(world: World, count: int) -> Counter[str]:
    """Change ``count`` things in the world, a kind at a time in turn; an orphan instance
    (tagged, not in the store) is one kind, and a kind with no node left loses an instance."""
    candidates: dict[State, list[tuple[str, str]]] = {}
    for node in world.store.nodes():
        if node.instance_id and node.instance_id in world.cloud.instances:
            candidates.setdefault(node.state, []).append((node.name, node.instance_id))
    for names in candidates.values():
        world.rng.shuffle(names)
    done: Counter[str] = Counter()
    for turn in range(count):
        if turn % (len(CHANGES) + 1) == len(CHANGES):
            _orphan(world)
            done["orphan instance"] += 1
            continue
        what, state, change = CHANGES[turn % (len(CHANGES) + 1)]
        if not candidates.get(state):
            what, state, change = CHANGES[4]  # instance lost: there are always active nodes
        name, instance_id = _pick(world, candidates[state], spot=change is _reclaimed)
        change(world, name, instance_id)
        done[what] += 1
    return done


def _pick(world: World, names: list[tuple[str, str]], *, spot: bool) -> tuple[str, str]:
    """The last candidate (a spot one when ``spot``, or the last at all when none is)."""
    if spot:
        for index in range(len(names) - 1, -1, -1):
            if world.cloud.instances[names[index][1]].spot:
                return names.pop(index)
    return names.pop()


def _orphan(world: World) -> None:
    pool = POOLS[world.next_instance % len(POOLS)]
    instance_id = world.new_instance_id()
    world.cloud.instances[instance_id] = Instance(
        instance_id,
        InstanceState.RUNNING,
        pool.instance_types[0],
        pool.zones[0],
        datetime.fromtimestamp(world.now - 30, UTC),
        ownership_tags(CLUSTER, pool.name, "crashed-before-commit"),
        spot=pool.spot,
    )
