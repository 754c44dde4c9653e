"""The lifecycle engine: the half of the lifecycle that acts.

``reconcile.py`` decides, without I/O, what to do about each node; this module observes the
world (the provider's tagged instances, the scheduler, the admission gate), hands it to the
planner and carries the actions out. Bursts (``burst.py``) write their intent before any
provider call. Every store write the reconcile loop makes carries the actor ``reconcile``.

The loop must never crash on the world moving under it: a move the table refuses now (a
person resumed the node meanwhile) is logged and skipped, a failed provider or scheduler call
is reported and tried again on the next pass.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Protocol

from tidectl.console.config.model import DataClass, PoolSpec
from tidectl.console.lifecycle import failpoints, reconcile
from tidectl.console.lifecycle.burst import Burster, BurstResult, price_of
from tidectl.console.lifecycle.errors import StoreError, UnknownRecord
from tidectl.console.lifecycle.operate import Operations
from tidectl.console.lifecycle.reconcile import (
    Action,
    Adopt,
    ConfirmTerminated,
    Join,
    Move,
    NodeSeen,
    Observation,
    Report,
    Terminate,
)
from tidectl.console.lifecycle.records import IntentAction, NodeRecord
from tidectl.console.lifecycle.states import (
    DEFAULT_TIMEOUTS,
    IllegalTransition,
    NodeKind,
    State,
    Timeout,
    timeouts,
)
from tidectl.console.lifecycle.store import Store
from tidectl.console.lifecycle.watchdogs import Watchdogs
from tidectl.console.providers.base import (
    CLUSTER_TAG,
    DATA_CLASS_TAG,
    INTENT_TAG,
    POOL_TAG,
    Instance,
    InstanceState,
    Provider,
    ProviderError,
)
from tidectl.console.scheduler.base import (
    JobState,
    NodeFlag,
    SchedState,
    Scheduler,
    SchedulerError,
    SchedulerSnapshot,
    UnknownNodeError,
)
from tidectl.console.transport.backoff import Backoff

__all__ = ["ACTOR", "LINKED", "Engine", "Linker", "ReconcileResult", "pool_timeouts"]

_log = logging.getLogger(__name__)

#: The actor of every store write the reconcile loop makes.
ACTOR = "reconcile"
_SCHEDULED = frozenset({SchedState.IDLE, SchedState.MIXED, SchedState.ALLOCATED})
#: Flags under which a node in a scheduled state takes no job yet (or any more): a Slurm
#: CLOUD node shows IDLE while it is powered down or its slurmd has not registered.
_NOT_TAKING = frozenset(
    {
        NodeFlag.POWERED_DOWN,
        NodeFlag.POWERING_UP,
        NodeFlag.POWERING_DOWN,
        NodeFlag.NOT_RESPONDING,
    }
)
_ON_NODE = frozenset({JobState.RUNNING, JobState.COMPLETING})
_ENDING = frozenset({InstanceState.SHUTTING_DOWN, InstanceState.TERMINATED})


#: A termination not yet confirmed is asked again after this long, doubling (with jitter) up
#: to the maximum: every pass would hammer a cloud API that is slow or failing.
TERMINATE_RETRY_MIN_S = 10.0
#: The longest a pool's join command may run on a node (starting a daemon takes seconds).
JOIN_COMMAND_TIMEOUT_S = 120.0
TERMINATE_RETRY_MAX_S = 300.0
#: States in which a cloud node's instance runs and the console should hear its agent.
LINKED = frozenset(
    {State.BOOTSTRAPPING, State.JOINING, State.ACTIVE, State.DRAINING, State.DRAINED}
)


class Linker(Protocol):
    """What brings a cloud node's agent into the console (see ``bootstrap.Bootstrapper``)."""

    async def link(self, node: str, pool: str, instance_id: str) -> str | None:
        """Start watching the node; None once linked, else a sentence why not."""
        ...

    async def unlink(self, node: str) -> None: ...

    def linked(self, node: str) -> bool: ...

    def linked_names(self) -> list[str]:
        """Every node linked now."""
        ...

    async def run(self, node: str, command: str, timeout_s: float) -> str | None:
        """Run ``command`` on the node; None when it succeeded, else a sentence why not."""
        ...


@dataclass(frozen=True, slots=True)
class ReconcileResult:
    actions: tuple[Action, ...]
    reports: tuple[Report, ...]
    took_s: float  # observe + plan + act, on the monotonic clock
    observed_s: float  # of which observing the world


def pool_timeouts(pool: PoolSpec) -> Mapping[State, Timeout]:
    """The timeout table for a pool's nodes: its bootstrap settings over the defaults."""
    return timeouts(
        {
            "provisioning": pool.bootstrap.boot_timeout_s,
            "joining": pool.bootstrap.join_timeout_s,
        }
    )


class Engine:
    """Bursts and the reconcile loop over one cluster's store, providers and scheduler.

    ``providers`` maps each pool's name to its provider; ``health(node)`` is the admission
    gate (True healthy, False refused, None not heard from). ``clock`` gives the store's
    times (wall-clock seconds).
    """

    def __init__(
        self,
        store: Store,
        providers: Mapping[str, Provider],
        scheduler: Scheduler | None,
        pools: Mapping[str, PoolSpec],
        cluster: str,
        *,
        health: Callable[[str], bool | None],
        clock: Callable[[], float] = time.time,
        onprem: Collection[str] = (),
        linker: Linker | None = None,
        data_classes: Mapping[str, DataClass] = MappingProxyType({}),
    ) -> None:
        self.store = store
        self._data_classes = data_classes
        self._providers = providers
        self._scheduler = scheduler
        self._pools = pools
        self._cluster = cluster
        self._health = health
        self._clock = clock
        self._burster = Burster(store, providers, pools, cluster, clock)
        self._linker = linker
        #: Per node being terminated: when it may be asked again, and its backoff.
        self._terminate_retry: dict[str, tuple[float, Backoff]] = {}
        #: The scheduler's node names as of the last observe (a join needs no second ask).
        self._in_scheduler: set[str] = set()
        self._join_commands_run: set[str] = set()  # nodes whose join command succeeded
        self._watchdogs = Watchdogs(linker, pools, lambda name: health(name) is not None)
        #: The scheduler's nodes and jobs as the last pass read them (None before one has).
        self.scheduler_seen: SchedulerSnapshot | None = None
        #: Nodes whose link was refused, with the sentence (reported once, not every pass).
        self.link_refusals: dict[str, str] = {}
        self.operations = Operations(
            store,
            providers,
            scheduler,
            clock=clock,
            launching=self._burster.in_flight,
            onprem=onprem,
        )
        # What people ask of nodes that exist (see operate.py), as the engine's own methods.
        self.drain = self.operations.drain
        self.resume = self.operations.resume
        self.terminate = self.operations.terminate
        self.cancel = self.operations.cancel
        #: Finish the pending intents a stopped control plane left (once, at start).
        self.recover = self.operations.recover
        self._timeouts = {name: pool_timeouts(pool) for name, pool in pools.items()}

    async def burst(
        self,
        pool: str,
        *,
        count: int | None = None,
        ensure: int | None = None,
        actor: str,
        frontend: str,
        request_id: str,
        token: str | None = None,
        names: Sequence[str] | None = None,
        data_class: str | None = None,
        why: str | None = None,
    ) -> BurstResult:
        """Add ``count`` nodes to ``pool``, bring it to ``ensure`` live nodes, or launch its
        Slurm CLOUD nodes ``names`` (those not live already); ``why`` goes in their history.

        Refuses (BurstRefused) an unknown pool, a count below 1, or more than the pool's
        max_nodes; the same ``token`` (default: from ``request_id``) never launches twice.
        """
        return await self._burster.burst(
            pool,
            count=count,
            ensure=ensure,
            actor=actor,
            frontend=frontend,
            request_id=request_id,
            token=token,
            names=names,
            data_class=data_class,
            why=why,
        )

    async def price_of(self, pool_name: str) -> float | None:
        """What one more node of ``pool_name`` would cost an hour (its first instance type);
        None for an unknown pool or an unknown price."""
        pool, provider = self._pools.get(pool_name), self._providers.get(pool_name)
        if pool is None or provider is None:
            return None
        return await price_of(pool, provider, pool.instance_types[0])

    # -- observe ----------------------------------------------------------------------------

    async def observe(self, records: Sequence[NodeRecord] | None = None) -> Observation:
        """The provider's instances with this cluster's tag, the scheduler's nodes and jobs,
        and the admission gate's word on every node the store or the scheduler knows.
        ``records``: the store's live nodes, when the caller has read them already."""
        if records is None:
            records = self.store.nodes(live_only=True)
        instances: dict[str, Instance] = {}
        for provider in _distinct(self._providers.values()):
            for instance in await provider.describe({CLUSTER_TAG: self._cluster}):
                instances.setdefault(instance.instance_id, instance)
        views: dict[str, NodeSeen] = {}
        if self._scheduler is None:
            return self._observe_without_scheduler(instances, records)
        sched_nodes = await self._scheduler.nodes()
        self._in_scheduler = {node.name for node in sched_nodes}
        jobs = await self._scheduler.jobs()
        self.scheduler_seen = SchedulerSnapshot(tuple(sched_nodes), tuple(jobs))
        on_node: dict[str, int] = {}
        for job in jobs:
            if job.state in _ON_NODE:
                for name in job.nodes:
                    on_node[name] = on_node.get(name, 0) + 1
        for node in sched_nodes:
            views[node.name] = NodeSeen(
                scheduled=node.state in _SCHEDULED and not node.flags & _NOT_TAKING,
                drained=node.state is SchedState.DRAINED,
                # Two witnesses: the node's own list and the jobs that name it; the larger wins,
                # so a moment where they disagree errs on the side of a job being there.
                jobs=max(len(node.jobs), on_node.get(node.name, 0)),
            )
        for record in records:
            views.setdefault(record.name, NodeSeen())
        return Observation(
            at=self._clock(),
            instances=instances,
            nodes={name: _with_health(view, self._health(name)) for name, view in views.items()},
        )

    def _observe_without_scheduler(
        self, instances: dict[str, Instance], records: Sequence[NodeRecord]
    ) -> Observation:
        """No scheduler: nothing places jobs, so a node is usable once it is up, and a drain
        has nothing to wait for."""
        views = {
            record.name: NodeSeen(
                scheduled=True,
                drained=record.state in (State.DRAINING, State.DRAINED),
                jobs=0,
                healthy=self._health(record.name),
            )
            for record in records
        }
        return Observation(at=self._clock(), instances=instances, nodes=views)

    # -- act --------------------------------------------------------------------------------

    async def act(self, actions: Sequence[Action]) -> list[Report]:
        """Carry out the planner's actions in order; returns what must be reported.

        A node whose move was refused is left alone for the rest of this pass: what followed
        the move (a terminate after ``terminating``) was decided for a world that is gone.
        """
        reports: list[Report] = []
        skipped: set[str] = set()
        for action in actions:
            node = action.instance.instance_id if isinstance(action, Adopt) else action.node
            if node in skipped:
                continue
            try:
                report = await self._act_one(action)
            except (IllegalTransition, StoreError) as error:
                _log.info("reconcile: skipped %s: %s", action, error)
                skipped.add(node)
                continue
            if report is not None:
                reports.append(report)
        return reports

    async def _act_one(self, action: Action) -> Report | None:
        now = self._clock()
        if isinstance(action, Move):
            self.store.transition(
                action.node, action.after, reason=action.reason, actor=ACTOR, request_id="", at=now
            )
            if action.after is State.BOOTSTRAPPING:
                failpoints.reach("reconcile.bootstrapping")
        elif isinstance(action, Adopt):
            await self._adopt(action, now)
            burst = action.instance.tags.get(INTENT_TAG)
            if burst is not None and burst in self._cancelled_bursts():
                # Launched for a burst someone took back: adopted (so it is known and billed)
                # and ended at once, never brought into the cluster.
                self.store.transition(
                    action.node,
                    State.TERMINATING,
                    reason=f"its burst {burst[:8]} was cancelled",
                    actor=ACTOR,
                    request_id="",
                    at=self._clock(),
                )
                return await self._terminate(
                    Terminate(action.node, action.instance.instance_id, "burst cancelled")
                )
        elif isinstance(action, Terminate):
            return await self._terminate(action)
        elif isinstance(action, ConfirmTerminated):
            self._terminate_retry.pop(action.node, None)
            # Never recorded (a crash before its commit): nothing to close.
            with contextlib.suppress(UnknownRecord):
                self.store.confirm_terminated(action.instance_id, now)
        elif isinstance(action, Join):
            return await self._join(action)
        else:
            return action
        return None

    async def _adopt(self, action: Adopt, now: float) -> None:
        instance = action.instance
        pool = self._pools.get(action.pool)
        provider = self._providers.get(action.pool)
        price = (
            await price_of(pool, provider, instance.instance_type)
            if pool is not None and provider is not None
            else None
        )
        # The instance and its node in one transaction: apart, a crash between them would
        # leave an instance recorded (never adopted again) and bound to no node (never ended).
        with self.store.atomic():
            self.store.record_instance(
                instance.instance_id,
                provider=pool.provider if pool else "unknown",
                pool=action.pool,
                region=pool.region if pool else "unknown",
                zone=instance.zone,
                instance_type=instance.instance_type,
                intent_id=instance.tags.get(INTENT_TAG),
                node=action.node,
                launched_at=instance.launched_at.timestamp(),
                tags=instance.tags,
                state=str(instance.state),
                seen_at=now,
            )
            self.store.add_node(
                action.node,
                NodeKind.CLOUD,
                action.pool,
                State.PROVISIONING,
                now,
                reason=action.reason,
                actor=ACTOR,
                request_id="",
                instance_id=instance.instance_id,
                intent_id=instance.tags.get(INTENT_TAG),
                price_per_hour=price,
            )

    def _cancelled_bursts(self) -> set[str]:
        return {
            str(intent.detail.get("intent"))
            for intent in self.store.intents()
            if intent.action is IntentAction.CANCEL
        }

    async def _terminate(self, action: Terminate) -> Report | None:
        due, backoff = self._terminate_retry.get(action.node, (0.0, None))
        now = self._clock()
        if now < due:
            return None  # asked a moment ago: the provider is on it; ask again later
        backoff = backoff or Backoff(TERMINATE_RETRY_MIN_S, TERMINATE_RETRY_MAX_S)
        self._terminate_retry[action.node] = (now + backoff.next_delay(), backoff)
        record = self.store.node(action.node)
        provider = self._providers.get(record.pool or "") if record else None
        if provider is None:
            return Report(action.node, f"cannot terminate {action.instance_id}: no provider")
        if self._scheduler is not None:
            try:
                # The scheduler lets go of the node first, and refuses while a job is on it.
                await self._scheduler.remove_node(action.node)
            except UnknownNodeError:
                pass  # never joined, or already let go
            except SchedulerError as error:
                return Report(action.node, f"not terminated: {error}")
        try:
            await provider.terminate([action.instance_id])
        except ProviderError as error:
            return Report(
                action.node,
                f"terminating {action.instance_id} failed ({error}); retried next pass",
            )
        return None

    async def _join(self, action: Join) -> Report | None:
        if self._scheduler is None:
            return None  # no scheduler: nothing to join; the node waits in joining
        record = self.store.node(action.node)
        pool = self._pools.get(record.pool or "") if record else None
        gpus = pool.gpus_per_node if pool else 0
        try:
            # Joining again after a restart is not an error: the scheduler has it already.
            # A Slurm CLOUD node is always listed (slurm.conf names it), powered down or not:
            # it is asked each pass until it takes jobs (powering it up is idempotent) —
            # unless this pass saw its power-up asked already, when asking would change
            # nothing and cost slurmctld a full sinfo and squeue per joining node per pass.
            cloud_node = pool is not None and action.node in pool.slurm_nodes
            if cloud_node and self._power_up_seen(action.node):
                pass
            elif action.node not in self._in_scheduler or cloud_node:
                await self._scheduler.add_node(action.node, gpus)
                failpoints.reach("reconcile.joining")
                self._in_scheduler.add(action.node)
        except SchedulerError as error:
            return Report(action.node, f"the scheduler did not take the node: {error}")
        if pool is not None and pool.bootstrap.join_command:
            return await self._run_join_command(
                action.node, pool.bootstrap.join_command, cloud_node
            )
        return None

    def _power_up_seen(self, node: str) -> bool:
        """This pass's scheduler view shows ``node``'s power-up asked (or under way)."""
        seen = self.scheduler_seen.node(node) if self.scheduler_seen is not None else None
        return seen is not None and NodeFlag.POWERING_UP in seen.flags

    async def _run_join_command(self, node: str, command: str, cloud_node: bool) -> Report | None:
        """The pool's join command, once per node (again after a restart: it must be safe to
        repeat). For a Slurm CLOUD node only once Slurm's power-up is under way, as a pass
        saw it: its slurmd is heard only while Slurm powers the node up, and a power-up Slurm
        has not started yet would outlive a power-down (measured; docs/slurm.md)."""
        if node in self._join_commands_run or self._linker is None:
            return None
        if cloud_node:
            seen = self.scheduler_seen.node(node) if self.scheduler_seen is not None else None
            if seen is None or NodeFlag.POWERED_DOWN in seen.flags:
                return None  # the power-up is asked, not under way: next pass
        failure = await self._linker.run(node, command.format(node=node), JOIN_COMMAND_TIMEOUT_S)
        if failure is not None:
            return Report(node, f"the join command failed (tried again next pass): {failure}")
        self._join_commands_run.add(node)
        return None

    # -- the loop's one pass ----------------------------------------------------------------

    async def reconcile_once(self) -> ReconcileResult:
        """Observe, plan (per pool, with the pool's timeouts), act."""
        started = time.monotonic()
        records = self.store.nodes(live_only=True)
        seen = await self.observe(records)
        observed = time.monotonic() - started
        actions = self.plan(seen, records)
        reports = await self.act(actions)
        reports += await self._sync_links()
        reports += self._misplaced(seen)
        return ReconcileResult(tuple(actions), tuple(reports), time.monotonic() - started, observed)

    def _misplaced(self, seen: Observation) -> list[Report]:
        """Instances running where the data class of their burst may not be processed (a
        class narrowed in cluster.toml since, or launched by hand): reported every pass until
        someone ends them; nothing is terminated behind an operator's back."""
        reports = []
        for instance in seen.instances.values():
            data_class = instance.tags.get(DATA_CLASS_TAG)
            pool = self._pools.get(instance.tags.get(POOL_TAG, ""))
            if data_class is None or pool is None or instance.state in _ENDING:
                continue
            why = _misplaced_why(self._data_classes.get(data_class), data_class, pool.region)
            if why is not None:
                record = self.store.instance(instance.instance_id)
                node = record.node if record is not None and record.node else instance.instance_id
                reports.append(
                    Report(
                        node,
                        f"instance {instance.instance_id} runs in {pool.region}, but {why}: "
                        "drain and terminate it",
                    )
                )
        return reports

    async def _sync_links(self) -> list[Report]:
        """Link every cloud node whose instance runs; unlink the ones that ended."""
        if self._linker is None:
            return []
        reports: list[Report] = []
        should = {
            record.name: record
            for record in self.store.nodes(states=LINKED)
            if record.kind is NodeKind.CLOUD and record.instance_id
        }
        for name in self._linker.linked_names():
            if name not in should:  # ended (or failed): its SSH goes with it
                await self._linker.unlink(name)
                # A name launched again (a Slurm CLOUD node) is a new machine: join it anew.
                self._join_commands_run.discard(name)
                self._watchdogs.forget(name)
                self.link_refusals.pop(name, None)
        for name, record in should.items():
            if self._linker.linked(name):
                continue
            assert record.instance_id is not None
            refusal = await self._linker.link(name, record.pool or "", record.instance_id)
            if refusal is not None and self.link_refusals.get(name) != refusal:
                reports.append(Report(name, refusal))
            if refusal is not None:
                self.link_refusals[name] = refusal
        reports += await self._watchdogs.start((name, r.pool) for name, r in should.items())
        return reports

    def now(self) -> float:
        """The store's clock (wall-clock seconds; a test's own)."""
        return self._clock()

    def plan(self, seen: Observation, records: Sequence[NodeRecord] | None = None) -> list[Action]:
        """The planner's actions, pool by pool, so each pool's nodes get its timeouts.
        ``records``: the store's live nodes, when the caller has read them already."""
        if records is None:
            records = self.store.nodes(live_only=True)
        known = self.store.open_instance_ids()
        by_pool: dict[str | None, list[NodeRecord]] = {}
        for node in records:
            by_pool.setdefault(node.pool, []).append(node)
        tagged: dict[str | None, dict[str, Instance]] = {}
        for instance_id, instance in seen.instances.items():
            tagged.setdefault(instance.tags.get(POOL_TAG), {})[instance_id] = instance
        actions: list[Action] = []
        for pool in sorted(set(by_pool) | set(tagged), key=lambda p: p or ""):
            part = Observation(seen.at, tagged.get(pool, {}), seen.nodes)
            actions += reconcile.plan(
                by_pool.get(pool, []),
                # Every open record counts as known in every pool's plan: an instance recorded
                # under one pool must never be adopted a second time under another.
                known,
                part,
                pool_tag=POOL_TAG,
                timeouts=self._timeouts.get(pool or "", DEFAULT_TIMEOUTS),
            )
        # An instance whose burst is still committing it is not an orphan: its row is coming.
        launching = self._burster.in_flight
        return [
            a
            for a in actions
            if not (isinstance(a, Adopt) and a.instance.tags.get(INTENT_TAG) in launching)
        ]


def _with_health(view: NodeSeen, healthy: bool | None) -> NodeSeen:
    return NodeSeen(view.scheduled, view.drained, view.jobs, healthy)


def _misplaced_why(found: DataClass | None, name: str, region: str) -> str | None:
    """Why an instance carrying data class ``name`` must not run in ``region``, or None."""
    if found is None:
        return f"its data class {name} is no longer defined in cluster.toml"
    if found.allows(region):
        return None
    return f"data of class {name} may not be processed there ({', '.join(found.regions)} only)"


def _distinct(providers: Iterable[Provider]) -> list[Provider]:
    """Each provider once, though several pools may share it."""
    seen: dict[int, Provider] = {}
    for provider in providers:
        seen.setdefault(id(provider), provider)
    return list(seen.values())
