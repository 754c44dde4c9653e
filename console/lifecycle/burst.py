"""Bursting a cloud pool: the intent first, then the node rows, then the launch calls.

The order is the safety of the whole thing. The intent (with its idempotency token) is on
disk before any provider call, and every launch carries the ownership tags, so whatever a
crash interrupts, the reconcile loop finds the instances by their tags and adopts them; a
retried request with the same token finds the intent already written and launches nothing.

Each launch call is all or none (the provider's contract), so "launch what you can" is done
across calls: a capacity error halves the request on the same instance type and zone (the
cloud may have room for fewer), and once even one instance is refused there, that (type,
zone) is backed off for the pool's ``capacity_backoff_s`` and the next one in the pool's
preference order is tried.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from tidectl.console.config.model import PoolSpec
from tidectl.console.lifecycle import failpoints
from tidectl.console.lifecycle.records import IntentAction, IntentRecord, IntentStatus
from tidectl.console.lifecycle.states import NodeKind, State
from tidectl.console.lifecycle.store import Store
from tidectl.console.providers.base import (
    DATA_CLASS_TAG,
    CapacityError,
    Instance,
    LaunchRequest,
    Provider,
    ProviderError,
    UnavailableError,
    ownership_tags,
)

__all__ = [
    "BurstRefused",
    "BurstResult",
    "Burster",
    "LaunchAttempt",
    "default_token",
    "price_of",
]

_log = logging.getLogger(__name__)

#: The image a sim pool's launch request names: the sim cloud boots any image the same way.
SIM_IMAGE = "sim-default"
#: Ends of a node's live life: a node in these no longer counts toward a pool's size.
_ENDED = (State.TERMINATED, State.FAILED)


class BurstRefused(Exception):
    """A burst that cannot be carried out as asked. ``str()`` says why and what to do.
    Nothing was written and nothing launched."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True, slots=True)
class LaunchAttempt:
    """One launch call: what it asked for and how it ended (``error`` None: it launched)."""

    instance_type: str
    zone: str | None
    count: int
    launched: int
    error: str | None = None


@dataclass(frozen=True, slots=True)
class BurstResult:
    pool: str
    intent_id: str | None  # None: nothing to do, so nothing was written
    wanted: int
    launched: int
    nodes: tuple[str, ...]  # the nodes now provisioning (or terminating after a rollback)
    attempts: tuple[LaunchAttempt, ...] = ()
    #: The intent existed already (same token): its outcome is reported, nothing launched.
    replayed: bool = False
    rolled_back: bool = False
    sentence: str = ""


async def price_of(pool: PoolSpec, provider: Provider, instance_type: str) -> float | None:
    """What an hour of one of the pool's instances of ``instance_type`` costs: the pool's
    configured price, else the provider's estimate; None when neither knows (the ledger then
    records the stretch at 0 and the estimate gap is the operator's to fill in config)."""
    if pool.price_per_hour is not None:
        return pool.price_per_hour
    try:
        return await provider.price_per_hour(instance_type, spot=pool.spot)
    except ProviderError as error:
        _log.warning("no price for %s in pool %s: %s", instance_type, pool.name, error)
        return None


def default_token(request_id: str) -> str:
    """The idempotency token of a request that brings none: a retried request (same request
    id) finds the intent it wrote and never launches twice."""
    return f"burst:{request_id}"


@dataclass
class _Launching:
    """The state of one burst as it runs."""

    intent: IntentRecord
    pool: PoolSpec
    provider: Provider
    waiting: list[str]  # node names still in requested, in order
    launched: list[str] = field(default_factory=list)
    instances: list[str] = field(default_factory=list)
    attempts: list[LaunchAttempt] = field(default_factory=list)
    calls: int = 0

    def next_token(self) -> str:
        # Deterministic per intent and call: at most 32 + 1 + a few characters (limit 64).
        self.calls += 1
        return f"{self.intent.id}-{self.calls}"


class Burster:
    """Carries out bursts for the engine. ``backoff`` remembers (pool, type, zone) capacity
    refusals until a clock time (in memory: a restart tries them again, which costs one call)."""

    def __init__(
        self,
        store: Store,
        providers: Mapping[str, Provider],
        pools: Mapping[str, PoolSpec],
        cluster: str,
        clock: Callable[[], float],
    ) -> None:
        self._store = store
        self._providers = providers
        self._pools = pools
        self._cluster = cluster
        self._clock = clock
        self.backoff: dict[tuple[str, str, str | None], float] = {}
        #: Intents launching now: their instances may be listed before their rows are
        #: committed, and must not be adopted as orphans meanwhile.
        self.in_flight: set[str] = set()

    async def burst(
        self,
        pool_name: str,
        *,
        count: int | None,
        ensure: int | None,
        actor: str,
        frontend: str,
        request_id: str,
        token: str | None,
        names: Sequence[str] | None = None,
        data_class: str | None = None,
        why: str | None = None,
    ) -> BurstResult:
        """Add ``count`` nodes, bring the pool to ``ensure`` live nodes, or launch the Slurm
        CLOUD nodes ``names`` (those of the pool's ``slurm_nodes`` not live already: asking
        again launches nothing twice). ``why``: the reason the nodes' history keeps (a
        policy's rule)."""
        pool, provider = self._check(pool_name, count, ensure, names)
        token = token or default_token(request_id)
        store, now = self._store, self._clock()
        existing = store.intent_by_token(token)
        live = len([n for n in store.nodes(pool=pool.name) if n.state not in _ENDED])
        free = self._free_of(pool, names) if names is not None else None
        if free is not None:
            wanted = len(free)
        else:
            wanted = count if count is not None else max(0, (ensure or 0) - live)
        adds = count is not None or names is not None  # (ensure never passes max_nodes)
        if existing is None and adds and live + wanted > pool.max_nodes:
            raise BurstRefused(
                f"pool {pool.name} has {live} node(s) and allows at most {pool.max_nodes}: "
                f"adding {wanted} would make {live + wanted}; ask for at most "
                f"{max(0, pool.max_nodes - live)} or raise max_nodes in cluster.toml"
            )
        intent = store.add_intent(
            token=token,
            action=IntentAction.BURST,
            pool=pool.name,
            actor=actor,
            frontend=frontend,
            request_id=request_id,
            at=now,
            count=count,
            target=ensure,
            detail=_detail(names, data_class),
        )
        if existing is not None:
            return self._replay(intent, pool)
        if wanted <= 0:
            store.set_intent_status(intent.id, IntentStatus.DONE, at=self._clock())
            return BurstResult(
                pool.name, intent.id, 0, 0, (), sentence=self._nothing_to_do(pool, live, ensure)
            )
        chosen = free if free is not None else self._new_names(pool, intent.id, wanted)
        reason = f"burst of {wanted} asked by {actor} ({frontend})" + (f": {why}" if why else "")
        for name in chosen:
            if store.node(name) is None:
                store.add_node(
                    name,
                    NodeKind.CLOUD,
                    pool.name,
                    State.REQUESTED,
                    now,
                    reason=reason,
                    actor=actor,
                    request_id=request_id,
                    intent_id=intent.id,
                )
            else:
                store.relaunch(
                    name,
                    pool.name,
                    intent.id,
                    now,
                    reason=reason,
                    actor=actor,
                    request_id=request_id,
                )
        failpoints.reach("burst.before-launch")
        job = _Launching(intent, pool, provider, list(chosen))
        self.in_flight.add(intent.id)
        try:
            await self._launch_all(job, actor, request_id)
            return await self._finish(job, wanted, actor, request_id)
        finally:
            self.in_flight.discard(intent.id)

    # -- checks -----------------------------------------------------------------------------

    def _free_of(self, pool: PoolSpec, names: Sequence[str]) -> list[str]:
        """Of the Slurm CLOUD nodes ``names``, those to launch: neither live nor failed (a
        failed one is still being cleaned up; Slurm asks again after its ResumeTimeout)."""
        free = []
        for name in dict.fromkeys(names):
            record = self._store.node(name)
            if record is None or record.state is State.TERMINATED:
                free.append(name)
        return free

    def _new_names(self, pool: PoolSpec, intent_id: str, wanted: int) -> list[str]:
        """Names for ``wanted`` new nodes: the first free ones of the pool's Slurm CLOUD
        nodes, or ``POOL-INTENT-N`` for a pool without them."""
        if not pool.slurm_nodes:
            return [f"{pool.name}-{intent_id[:8]}-{n}" for n in range(1, wanted + 1)]
        free = self._free_of(pool, pool.slurm_nodes)
        if len(free) < wanted:
            raise BurstRefused(
                f"pool {pool.name} has {len(free)} of its {len(pool.slurm_nodes)} Slurm node "
                f"names free (slurm_nodes), not {wanted}; ask for fewer, or add names to "
                "slurm_nodes and slurm.conf"
            )
        return free[:wanted]

    @staticmethod
    def _nothing_to_do(pool: PoolSpec, live: int, ensure: int | None) -> str:
        if ensure is None:
            return f"every node named is live in pool {pool.name} already: nothing to do"
        return f"pool {pool.name} already has {live} node(s) of {ensure}: nothing to do"

    def _check(
        self,
        pool_name: str,
        count: int | None,
        ensure: int | None,
        names: Sequence[str] | None = None,
    ) -> tuple[PoolSpec, Provider]:
        pool = self._pools.get(pool_name)
        if pool is None:
            known = ", ".join(sorted(self._pools)) or "none are configured"
            raise BurstRefused(f"there is no pool named {pool_name!r} (pools: {known})")
        provider = self._providers.get(pool_name)
        if provider is None:
            raise BurstRefused(f"pool {pool_name} has no provider set up; check its config")
        if names is not None:
            if count is not None or ensure is not None:
                raise BurstRefused("a burst of named nodes takes no count and no ensure")
            if not names:
                raise BurstRefused("a burst of named nodes needs at least one name")
            foreign = [n for n in names if n not in pool.slurm_nodes]
            if foreign:
                raise BurstRefused(
                    f"{', '.join(foreign[:5])} {'is' if len(foreign) == 1 else 'are'} not among "
                    f"pool {pool_name}'s slurm_nodes; check slurm_nodes in cluster.toml against "
                    "the CLOUD NodeNames in slurm.conf"
                )
            return pool, provider
        if (count is None) == (ensure is None):
            raise BurstRefused("a burst takes either a count (add N) or ensure (have N), not both")
        if count is not None and (isinstance(count, bool) or count < 1):
            raise BurstRefused(f"a burst adds at least 1 node, not {count}")
        if ensure is not None and (isinstance(ensure, bool) or ensure < 0):
            raise BurstRefused(f"ensure takes a node count of 0 or more, not {ensure}")
        if ensure is not None and ensure > pool.max_nodes:
            raise BurstRefused(
                f"pool {pool_name} allows at most {pool.max_nodes} nodes, not {ensure}; "
                "ask for fewer or raise max_nodes in cluster.toml"
            )
        return pool, provider

    # -- launching --------------------------------------------------------------------------

    def _candidates(self, pool: PoolSpec) -> list[tuple[str, str | None]]:
        now = self._clock()
        zones: tuple[str | None, ...] = pool.zones or (None,)
        return [
            (kind, zone)
            for kind in pool.instance_types
            for zone in zones
            if self.backoff.get((pool.name, kind, zone), 0.0) <= now
        ]

    async def _launch_all(self, job: _Launching, actor: str, request_id: str) -> None:
        for kind, zone in self._candidates(job.pool):
            size = len(job.waiting)
            while job.waiting and size >= 1:
                size = min(size, len(job.waiting))
                outcome = await self._launch(job, kind, zone, size)
                if isinstance(outcome, CapacityError):
                    if size == 1:
                        until = self._clock() + job.pool.capacity_backoff_s
                        self.backoff[(job.pool.name, kind, zone)] = until
                    size //= 2
                    continue
                if isinstance(outcome, ProviderError):
                    return  # quota, auth, a bad request, no answer: another zone will not help
                failpoints.reach("burst.after-launch")
                price = await price_of(job.pool, job.provider, kind)
                self._commit(
                    job,
                    outcome,
                    kind=kind,
                    zone=zone,
                    price=price,
                    actor=actor,
                    request_id=request_id,
                )
            if not job.waiting:
                return

    async def _launch(
        self, job: _Launching, kind: str, zone: str | None, size: int
    ) -> list[Instance] | ProviderError:
        pool = job.pool
        request = LaunchRequest(
            pool=pool.name,
            count=size,
            instance_type=kind,
            region=pool.region,
            image_id=pool.image_id or SIM_IMAGE,
            token=job.next_token(),
            tags=_tags(ownership_tags(self._cluster, pool.name, job.intent.id), job.intent),
            zone=zone,
            subnet_id=pool.subnet_id,
            security_group_ids=pool.security_group_ids,
            spot=pool.spot,
        )
        try:
            try:
                instances = await job.provider.launch(request)
            except UnavailableError:
                # Outcome unknown: the same request with the same token is safe to repeat.
                instances = await job.provider.launch(request)
        except ProviderError as error:
            _log.info("burst %s: launch of %d %s failed: %s", job.intent.id, size, kind, error)
            job.attempts.append(LaunchAttempt(kind, zone, size, 0, str(error)))
            return error
        job.attempts.append(LaunchAttempt(kind, zone, size, len(instances)))
        return instances

    def _commit(
        self,
        job: _Launching,
        instances: list[Instance],
        *,
        kind: str,
        zone: str | None,
        price: float | None,
        actor: str,
        request_id: str,
    ) -> None:
        store = self._store
        for instance in instances:
            if not job.waiting:  # more than asked: reconcile adopts the extra by its tags
                break
            name = job.waiting.pop(0)
            at = self._clock()
            with store.atomic():  # the instance and its node: never one without the other
                store.record_instance(
                    instance.instance_id,
                    provider=job.pool.provider,
                    pool=job.pool.name,
                    region=job.pool.region,
                    zone=instance.zone or zone,
                    instance_type=instance.instance_type or kind,
                    intent_id=job.intent.id,
                    node=name,
                    launched_at=instance.launched_at.timestamp(),
                    tags=instance.tags,
                    state=str(instance.state),
                    seen_at=at,
                )
                store.transition(
                    name,
                    State.PROVISIONING,
                    reason=f"launched as {instance.instance_id} ({kind})",
                    actor=actor,
                    request_id=request_id,
                    at=at,
                    instance_id=instance.instance_id,
                    price_per_hour=price,
                )
            job.launched.append(name)
            job.instances.append(instance.instance_id)

    # -- the end ----------------------------------------------------------------------------

    async def _finish(
        self, job: _Launching, wanted: int, actor: str, request_id: str
    ) -> BurstResult:
        store, pool = self._store, job.pool
        errors = "; ".join(dict.fromkeys(a.error for a in job.attempts if a.error))
        why = errors or "every instance type and zone of the pool is backed off after no capacity"
        # No launch call at all: no instance can exist for the nodes, so they end here.
        unsent = State.TERMINATED if not job.attempts else State.FAILED
        for name in job.waiting:
            store.transition(
                name,
                unsent,
                reason=f"not launched: {why}",
                actor=actor,
                request_id=request_id,
                at=self._clock(),
            )
        launched = len(job.launched)
        rolled_back = False
        if launched < wanted and pool.all_or_nothing and launched:
            await self._roll_back(job, actor, request_id)
            rolled_back = True
        if launched == wanted:
            sentence = f"launched {launched} of {wanted} node(s) in pool {pool.name}"
        elif rolled_back:
            sentence = (
                f"got {launched} of {wanted} node(s) in pool {pool.name}, which is all or "
                f"nothing: terminating the {launched} launched ({why})"
            )
        else:
            sentence = f"launched {launched} of {wanted} node(s) in pool {pool.name} ({why})"
        ok = launched > 0 and not rolled_back
        store.set_intent_status(
            job.intent.id,
            IntentStatus.DONE if ok else IntentStatus.FAILED,
            at=self._clock(),
            error=None if launched == wanted else sentence,
        )
        return BurstResult(
            pool.name,
            job.intent.id,
            wanted,
            0 if rolled_back else launched,
            tuple(job.launched),
            tuple(job.attempts),
            rolled_back=rolled_back,
            sentence=sentence,
        )

    async def _roll_back(self, job: _Launching, actor: str, request_id: str) -> None:
        for name in job.launched:
            self._store.transition(
                name,
                State.TERMINATING,
                reason="all-or-nothing pool: the burst could not get every node",
                actor=actor,
                request_id=request_id,
                at=self._clock(),
            )
        try:
            await job.provider.terminate(job.instances)
        except ProviderError as error:
            # The nodes stay terminating: the reconcile loop asks again until it is confirmed.
            _log.warning("burst %s: rollback terminate failed: %s", job.intent.id, error)

    def _replay(self, intent: IntentRecord, pool: PoolSpec) -> BurstResult:
        nodes = [n for n in self._store.nodes(pool=pool.name) if n.intent_id == intent.id]
        launched = tuple(n.name for n in nodes if n.instance_id)
        wanted = intent.count if intent.count is not None else len(nodes)
        return BurstResult(
            pool.name,
            intent.id,
            wanted,
            len(launched),
            launched,
            replayed=True,
            sentence=(
                f"this request was already made (intent {intent.id}, {intent.status}): "
                f"{len(launched)} node(s) were launched for it; nothing new was launched"
            ),
        )


def _detail(names: Sequence[str] | None, data_class: str | None) -> dict[str, object] | None:
    """What a burst intent records beside its count: the nodes named, the data class."""
    detail: dict[str, object] = {}
    if names is not None:
        detail["nodes"] = list(names)
    if data_class is not None:
        detail["data_class"] = data_class
    return detail or None


def _tags(owned: dict[str, str], intent: IntentRecord) -> dict[str, str]:
    """The ownership tags, and the data class the burst carries (reconcile checks where an
    instance runs against it)."""
    data_class = intent.detail.get("data_class")
    if isinstance(data_class, str):
        owned[DATA_CLASS_TAG] = data_class
    return owned
