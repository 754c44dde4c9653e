"""The ControlPlane: the one way anything acts on the cluster, and the one place that reads it.

Every front end — the CLI, the Textual console, the Jupyter panel, playbooks — calls this class
and nothing below it: none of them talks to a provider, a scheduler or SSH. Each action takes
the :class:`Caller` (who, through which front end) and a request id, and either returns a
typed result or raises a :class:`ControlError` whose ``str()`` is a sentence a person can act
on. Roles and the audit log ([security]) go in :meth:`ControlPlane._begin`, the one door.

It also runs the loops that keep the world and the store in agreement: the reconcile loop
(every ``interval_s``, and at once after an action) and, where configured, the collector
(agents over SSH) and the sim scheduler's clock. Actions and reconcile passes take turns (one
lock): the store has one writer, and a pass never plans on a world an action is half-way
through changing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import time
from collections.abc import Awaitable, Callable, Collection, Coroutine, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any, Self, TypeVar

from tidectl.console.audit import AuditLog, AuditPage, AuditQuery, AuditReader, AuditUnavailable
from tidectl.console.config.model import ClusterConfig, PoolSpec
from tidectl.console.control.caller import Caller, Frontend, new_request_id
from tidectl.console.control.errors import ControlError, Failed, Refused
from tidectl.console.control.host_keys import HostKeyRefused, HostKeyTrust, PresentedKey
from tidectl.console.control.pool_policy import PoolPolicyRefused, changed_pool, policy_words
from tidectl.console.control.roles import POLICY_ACTIONS, POLICY_ACTOR, Access, Roles
from tidectl.console.control.sovereignty import burst_class
from tidectl.console.cost.budgets import budget_refusal, budgets_for
from tidectl.console.cost.report import CostReport, cost_report
from tidectl.console.cost.usage import UsageMeter
from tidectl.console.fanout import run_outcome
from tidectl.console.fleet import Fleet
from tidectl.console.lifecycle.burst import BurstRefused, BurstResult
from tidectl.console.lifecycle.engine import Engine, ReconcileResult
from tidectl.console.lifecycle.errors import StoreError
from tidectl.console.lifecycle.lock import StoreLock
from tidectl.console.lifecycle.operate import ActionFailed, ActionRefused, ActionResult, EndWhy
from tidectl.console.lifecycle.records import IntentAction, NodeRecord
from tidectl.console.lifecycle.states import IllegalTransition, NodeKind, State, Transition
from tidectl.console.lifecycle.store import Store
from tidectl.console.nodesets import expand
from tidectl.console.providers.base import ProviderError
from tidectl.console.scheduler.base import Job, Scheduler, SchedulerError, SchedulerSnapshot

if TYPE_CHECKING:
    from tidectl.console.collectors import Watcher
    from tidectl.console.policy.loop import PolicyLoop
    from tidectl.console.transport.link import CommandResult

__all__ = ["AUDIT_LIMIT", "RECONCILE_INTERVAL_S", "ControlPlane", "Progress", "refusal"]

_log = logging.getLogger(__name__)

#: How often the reconcile loop runs when nothing asks for a pass sooner.
RECONCILE_INTERVAL_S = 5.0
#: Reports the control plane keeps for front ends (the newest).
_REPORTS_KEPT = 200
#: Requests whose caller and action are remembered for their outcome records.
_ASKED_KEPT = 1000
#: Audit records a front end reads at most in one call (the newest).
AUDIT_LIMIT = 500
_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class Progress:
    """Where a wait stands: each node's state now, and how many reached what was waited for."""

    states: dict[str, State]
    done: int
    total: int
    elapsed_s: float


class ControlPlane:
    """The facade over one cluster's engine, store, fleet and scheduler.

    Build it with :func:`~tidectl.console.control.assemble.assemble` from a config, or
    directly (tests). ``async with`` (or :meth:`start` / :meth:`aclose`) runs its loops;
    the actions also work without them (a CLI call that does not wait).
    """

    def __init__(
        self,
        config: ClusterConfig,
        store: Store,
        engine: Engine,
        *,
        fleet: Fleet | None = None,
        scheduler: Scheduler | None = None,
        background: Sequence[Callable[[], Coroutine[Any, Any, None]]] = (),
        closers: Sequence[Callable[[], Awaitable[None]]] = (),
        lock: StoreLock | None = None,
        interval_s: float = RECONCILE_INTERVAL_S,
        audit: AuditLog | None = None,
        host_keys: HostKeyTrust | None = None,
        policies: bool = False,
        policy_dry_run: bool = False,
        collector: Watcher | None = None,
    ) -> None:
        self.config = config
        #: The pools as cluster.toml has them: ``set_pool_policy`` changes ``config``'s, and
        #: checks against these (a pool's max_nodes never goes above the file's).
        self._configured_pools = {pool.name: pool for pool in config.pools}
        #: The agents' SSH connections (``assemble`` passes the one it runs): what
        #: :meth:`run_command` runs commands over. None: this plane reaches no node itself.
        self._collector = collector
        #: Who may do what (``[roles]``); checked for every action in ``_begin``.
        self.roles = Roles(config.roles, config.path)
        #: Where every decision and outcome is recorded (None: not audited, as in tests that
        #: build a plane by hand; ``assemble`` always opens one).
        self.audit = audit
        self._audit_reader: AuditReader | None = None  # made at the first read of the log
        self._asked: dict[str, tuple[Caller, str, tuple[str, ...]]] = {}
        self.store = store
        self.engine = engine
        self.fleet = fleet
        #: What each billing cloud node does with its hours (``cost.usage``): metered after
        #: the reconcile passes, at most every 15 s.
        self.meter = UsageMeter(store, config.pools, fleet, clock=engine.now)
        #: On-prem host keys a person accepts in the console (``control.host_keys``).
        self._host_keys = host_keys or HostKeyTrust(config)
        self._scheduler = scheduler
        self._background = list(background)
        self._closers = list(closers)
        self._lock_file = lock
        self._interval_s = interval_s
        #: Run the policy loop (``console/policy``) with the other loops, when cluster.toml's
        #: ``[policies]`` has it enabled: the long-running planes (serve, console, demo).
        self._policies = policies
        self._policy_dry_run = policy_dry_run
        self.policy: PolicyLoop | None = None
        self._lock = asyncio.Lock()
        self._poke = asyncio.Event()
        self._changed = asyncio.Condition()
        self._tasks: list[asyncio.Task[None]] = []
        self.last_pass: ReconcileResult | None = None
        #: Sentences the last pass (and recovery) could not act on: for the events view.
        self.reports: list[str] = []
        #: Every report ever added (``reports`` keeps the last 200): a front end that saw
        #: ``n`` of them reads the newest ``reported - n``.
        self.reported = 0

    # -- running ----------------------------------------------------------------------------

    async def start(self) -> None:
        """Finish what a stopped control plane left pending, then run the loops."""
        async with self._lock:
            self._report(await self.engine.recover())
        loop = asyncio.get_running_loop()
        for job in self._background:
            self._tasks.append(loop.create_task(job()))
        if self._policies and self.config.policies.enabled:
            from tidectl.console.policy.loop import PolicyLoop  # it drives this class

            self.policy = PolicyLoop(self, dry_run=self._policy_dry_run)
            self._tasks.append(loop.create_task(self.policy.run(), name="policy"))
        self._tasks.append(loop.create_task(self._reconcile_loop(), name="reconcile"))

    async def aclose(self) -> None:
        """Stop the loops (a pass under way finishes its store writes first), then close."""
        async with self._lock:
            for task in self._tasks:
                task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks = []
        for close in reversed(self._closers):
            try:
                await close()
            except Exception:  # closing must go on: the store is closed last
                _log.exception("closing the control plane")
        self.store.close()
        if self._lock_file is not None:
            self._lock_file.release()  # last: the store is closed, another may take it

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def _reconcile_loop(self) -> None:
        while True:
            try:
                await self.reconcile_now()
            except (StoreError, ProviderError, SchedulerError) as error:
                # The world moved or did not answer: say so, and try again next pass.
                _log.warning("reconcile pass failed: %s", error)
                self._report([f"reconcile pass failed: {error}"])
            except Exception as error:
                # A bug, not the world: the loop is what ends billing instances, so it must
                # outlive one bad pass. Logged with its traceback, reported, tried again.
                _log.exception("reconcile pass crashed")
                self._report([f"reconcile pass crashed ({type(error).__name__}: {error})"])
            # asyncio.timeout, not wait_for: Python 3.11's wait_for swallows a cancel that
            # meets an event already set (an action's poke), and aclose then waited forever.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._interval_s):
                    await self._poke.wait()
            self._poke.clear()

    async def reconcile_now(self) -> ReconcileResult:
        """One reconcile pass now (observe, plan, act)."""
        async with self._lock:
            result = await self.engine.reconcile_once()
            self._meter()
        self.last_pass = result
        self._report([f"{r.node}: {r.sentence}" for r in result.reports])
        async with self._changed:
            self._changed.notify_all()
        return result

    def _meter(self) -> None:
        """Meter usage after a pass, under the pass's lock (the store has one writer). A
        meter that cannot write is reported; the pass stands."""
        try:
            self.meter.record(self.engine.scheduler_seen)
        except (StoreError, sqlite3.Error) as error:
            _log.warning("usage metering failed: %s", error)
            self._report([f"usage metering failed: {error}"])

    def report(self, sentences: Sequence[str]) -> None:
        """Add sentences for the events view (the policy loop's decisions)."""
        self._report(sentences)

    def _report(self, sentences: Sequence[str]) -> None:
        self.reports.extend(sentences)
        self.reported += len(sentences)
        del self.reports[:-_REPORTS_KEPT]

    # -- actions ----------------------------------------------------------------------------

    async def burst(
        self,
        caller: Caller,
        pool: str,
        *,
        count: int | None = None,
        ensure: int | None = None,
        request_id: str | None = None,
        token: str | None = None,
        data_class: str | None = None,
        why: str | None = None,
    ) -> BurstResult:
        """Add ``count`` nodes to ``pool`` (a delta), or bring it to ``ensure`` live nodes (a
        target: asking twice adds nothing the second time). The burst carries ``data_class``
        (else the pool's); a region the class may not be processed in is refused before
        anything is written or asked of a cloud (``control.sovereignty``), and so is a burst
        that would pass a budget within its first hour (``cost.budgets``). ``why``: the
        reason kept with it (the policy's rule)."""
        asked = {"count": count, "ensure": ensure, "data_class": data_class, "token": token}
        if why is not None:
            asked["why"] = why
        rid = await self._begin(caller, "burst", request_id, [pool], asked)
        spec = self.pool(pool)
        carried = None
        if spec is not None:
            carried, refusal = burst_class(self.config, spec, data_class)
            if refusal is not None:
                raise await self._refuse(rid, refusal)
            refusal = await self._over_budget(spec, count, ensure)
            if refusal is not None:
                raise await self._refuse(rid, refusal)
            refusal = self._over_lowered_max(spec, count, ensure)
            if refusal is not None:
                raise await self._refuse(rid, refusal)
        return await self._act(
            rid,
            self.engine.burst(
                pool,
                count=count,
                ensure=ensure,
                actor=caller.user,
                frontend=caller.frontend,
                request_id=rid,
                token=token,
                data_class=carried,
                why=why,
            ),
        )

    def _over_lowered_max(
        self, pool: PoolSpec, count: int | None, ensure: int | None
    ) -> str | None:
        """Why a burst would pass a max_nodes lowered at run time (``set_pool_policy``), or
        None; the file's max_nodes is the engine's to check, as ever."""
        configured = self._configured_pools.get(pool.name)
        if configured is None or pool.max_nodes >= configured.max_nodes:
            return None
        ended = (State.TERMINATED, State.FAILED)  # as the engine counts a pool's nodes
        live = sum(1 for node in self.store.nodes(pool.name) if node.state not in ended)
        wanted = count if count is not None else (ensure or 0) - live
        if wanted <= 0 or live + wanted <= pool.max_nodes:
            return None
        return (
            f"pool {pool.name} allows at most {pool.max_nodes} node(s) for now (its max_nodes "
            f"was lowered from cluster.toml's {configured.max_nodes} while this control plane "
            f"runs) and has {live}: ask for at most {max(0, pool.max_nodes - live)}, or have an "
            "admin raise it (the notebook's Adaptive max, or set_pool_policy)"
        )

    async def _over_budget(
        self, pool: PoolSpec, count: int | None, ensure: int | None
    ) -> str | None:
        """Why a burst would pass a budget, or None (no budget covers the pool, or it fits)."""
        if not budgets_for(self.config.budgets, pool.name):
            return None
        adding = count
        if adding is None:
            live = self.store.nodes(pool.name, live_only=True)
            adding = max(0, (ensure or 0) - len(live))
        if adding <= 0:
            return None
        price = await self.engine.price_of(pool.name)
        if price is None:
            return (
                f"pool {pool.name} has budgets but no known price, so a burst cannot be "
                "checked against them; set price_per_hour in its [[pools]] table"
            )
        return budget_refusal(
            self.config.budgets,
            self.store,
            pool.name,
            count=adding,
            price_per_hour=price,
            now=self.engine.now(),
        )

    async def drain(
        self,
        caller: Caller,
        nodes: str | Sequence[str],
        *,
        reason: str,
        request_id: str | None = None,
    ) -> ActionResult:
        """Stop new jobs on ``nodes`` (a node set like ``gpu[01-04]`` or a list); the jobs
        there run to completion. Nodes become ``drained`` when the scheduler says so."""
        rid = await self._begin(caller, "drain", request_id, _listed(nodes), {"reason": reason})
        names = await self._names(nodes, rid)
        return await self._act(
            rid,
            self.engine.drain(
                names, reason=reason, actor=caller.user, frontend=caller.frontend, request_id=rid
            ),
        )

    async def resume(
        self, caller: Caller, nodes: str | Sequence[str], *, request_id: str | None = None
    ) -> ActionResult:
        """Let drained or draining ``nodes`` take jobs again."""
        rid = await self._begin(caller, "resume", request_id, _listed(nodes))
        names = await self._names(nodes, rid)
        return await self._act(
            rid,
            self.engine.resume(names, actor=caller.user, frontend=caller.frontend, request_id=rid),
        )

    async def terminate(
        self,
        caller: Caller,
        nodes: str | Sequence[str],
        *,
        reason: str,
        request_id: str | None = None,
    ) -> ActionResult:
        """End cloud nodes that run no job (drained, failed, or not yet joined). Destructive:
        it needs a ``reason``, which the audit log and each node's history keep."""
        rid = await self._begin(caller, "terminate", request_id, _listed(nodes), {"reason": reason})
        if not reason.strip():
            raise await self._refuse(
                rid,
                "terminate needs a reason: say why these instances end (it is kept in the "
                "audit log and in each node's history)",
            )
        names = await self._names(nodes, rid)
        return await self._act(
            rid,
            self.engine.terminate(
                names, actor=caller.user, frontend=caller.frontend, request_id=rid, reason=reason
            ),
        )

    async def cancel(
        self, caller: Caller, burst_intent: str, *, request_id: str | None = None
    ) -> ActionResult:
        """Take back a burst's nodes that have not joined yet."""
        rid = await self._begin(caller, "cancel", request_id, [burst_intent])
        return await self._act(
            rid,
            self.engine.cancel(
                burst_intent, actor=caller.user, frontend=caller.frontend, request_id=rid
            ),
        )

    async def set_pool_policy(
        self,
        caller: Caller,
        pool: str,
        *,
        min_nodes: int | None = None,
        max_nodes: int | None = None,
        burst_on_pressure: bool | None = None,
        request_id: str | None = None,
    ) -> PoolSpec:
        """Change ``pool``'s ``min_nodes``, ``max_nodes`` and ``burst_on_pressure`` (None:
        keep) while this control plane runs: the policy loop's next pass, every burst and
        ``pools()`` see it. Kept in memory for the plane's life, never written to cluster.toml
        (``control.pool_policy``); ``max_nodes`` never above the file's. An admin's action,
        audited like the others. Returns the pool as it now is."""
        params = {
            "min_nodes": min_nodes,
            "max_nodes": max_nodes,
            "burst_on_pressure": burst_on_pressure,
        }
        rid = await self._begin(caller, "set-pool-policy", request_id, [pool], params)
        current, configured = self.pool(pool), self._configured_pools.get(pool)
        if current is None or configured is None:
            known = ", ".join(p.name for p in self.config.pools) or "none are configured"
            raise await self._refuse(rid, f"there is no pool named {pool!r} (pools: {known})")
        try:
            changed = changed_pool(
                current,
                configured,
                min_nodes=min_nodes,
                max_nodes=max_nodes,
                burst_on_pressure=burst_on_pressure,
            )
        except PoolPolicyRefused as error:
            raise await self._refuse(rid, str(error)) from None
        pools = tuple(changed if p.name == pool else p for p in self.config.pools)
        self.config = replace(self.config, pools=pools)
        words = f"pool {pool}'s policy set by {caller.user}: {policy_words(changed)}"
        self._report([f"{words} (until this control plane stops)"])
        await self._outcome(rid, f"done: {policy_words(changed)}")
        return changed

    async def run_command(
        self,
        caller: Caller,
        nodes: str | Sequence[str],
        command: str,
        *,
        timeout_s: float = 30.0,
        request_id: str | None = None,
    ) -> list[CommandResult]:
        """Run ``command`` on every one of ``nodes`` at once, over the connections the
        collector keeps to their agents (no new SSH session is opened), each bounded by
        ``timeout_s``. An action like the others: the operator role, the decision in the audit
        log before any node is reached, and the outcome after. Returns one result per node,
        in the order named (a node that could not run it has ``exit_status`` None and the
        error). Refused when this plane watches no agents, or for a node it does not watch."""
        params = {"command": command, "timeout_s": timeout_s}
        rid = await self._begin(caller, "run", request_id, _listed(nodes), params)
        names = await self._names(nodes, rid)
        if self._collector is None:
            raise await self._refuse(
                rid,
                "this control plane watches no agents, so it has no connections to run a "
                "command over; run it where the collector runs (tidectl serve, the console) or "
                "use tidectl run",
            )
        unwatched = [name for name in names if name not in self._collector.links]
        if unwatched:
            raise await self._refuse(
                rid,
                f"not watched by this control plane: {', '.join(unwatched[:5])}; a command runs "
                "only on configured nodes and on cloud nodes that have joined",
            )
        results = list(
            await asyncio.gather(
                *(self._collector.run_on(name, command, timeout_s) for name in names)
            )
        )
        await self._outcome(rid, run_outcome(results))
        return results

    # -- host identity ----------------------------------------------------------------------

    async def presented_host_key(self, caller: Caller, node: str) -> PresentedKey:
        """The host key on-prem ``node`` presents now, by key exchange alone, and whether
        known_hosts lists one for it: what the console shows before a key is accepted."""
        access = self.roles.check(caller.user, "read")
        if not access.allowed:
            raise Refused(access.sentence, request_id="")
        try:
            return await self._host_keys.presented(node)
        except HostKeyRefused as error:
            raise Refused(str(error), request_id="") from None

    async def accept_host_key(
        self,
        caller: Caller,
        node: str,
        *,
        fingerprint: str,
        request_id: str | None = None,
    ) -> str:
        """Add the key on-prem ``node`` presents to known_hosts — in the console only (a
        person saw ``fingerprint`` first; scripts never trust on first use), for a node
        known_hosts lists nothing for, and only while it still presents that fingerprint.
        Returns the line written; the node's link picks it up at its next try."""
        rid = await self._begin(
            caller, "accept-host-key", request_id, [node], {"fingerprint": fingerprint}
        )
        if caller.frontend is not Frontend.CONSOLE:
            raise await self._refuse(
                rid,
                f"a host key is accepted only in the console, after a person saw its "
                f"fingerprint (not from the {caller.frontend}); add the node's key to "
                f"{self.config.ssh.known_hosts} after checking it out of band",
            )
        try:
            line = await self._host_keys.accept(
                node, fingerprint, actor=caller.user, request_id=rid
            )
        except HostKeyRefused as error:
            raise await self._refuse(rid, str(error)) from None
        await self._outcome(rid, f"done: {node}'s key {fingerprint} added to known_hosts")
        return line

    # -- Slurm's power saving ---------------------------------------------------------------

    async def slurm_resume(
        self, caller: Caller, nodes: str | Sequence[str], *, request_id: str | None = None
    ) -> list[BurstResult]:
        """Slurm's ResumeProgram: launch the CLOUD nodes named (a burst per pool whose
        ``slurm_nodes`` holds them); nodes live already are left as they are, so Slurm may
        ask again. A name no pool holds refuses the whole call (a config mismatch)."""
        rid = await self._begin(caller, "slurm-resume", request_id, _listed(nodes))
        by_pool = await self._slurm_pools(await self._names(nodes, rid), rid)
        classes = {pool: await self._slurm_class(pool, rid) for pool in by_pool}
        return [
            await self._act(
                rid,
                self.engine.burst(
                    pool,
                    names=names,
                    actor=caller.user,
                    frontend=caller.frontend,
                    request_id=rid,
                    token=f"burst:{rid}:{pool}",
                    data_class=classes[pool],
                ),
            )
            for pool, names in by_pool.items()
        ]

    async def _slurm_class(self, pool: str, rid: str) -> str | None:
        """Slurm names no data class: the pool's, under the same rule as any burst."""
        spec = self.pool(pool)
        assert spec is not None  # _slurm_pools found it
        carried, refusal = burst_class(self.config, spec, None)
        if refusal is not None:
            raise await self._refuse(rid, refusal)
        return carried

    async def slurm_suspend(
        self, caller: Caller, nodes: str | Sequence[str], *, request_id: str | None = None
    ) -> ActionResult:
        """Slurm's SuspendProgram: end the CLOUD nodes its power saving is taking down (idle:
        they are drained on the way, and refused if a job is on one)."""
        return await self._slurm_end(caller, nodes, EndWhy.POWERED_DOWN, request_id)

    async def slurm_resume_failed(
        self, caller: Caller, nodes: str | Sequence[str], *, request_id: str | None = None
    ) -> ActionResult:
        """Slurm's ResumeFailProgram: the nodes' slurmd never registered within ResumeTimeout;
        they become failed (with that reason) and their instances are terminated."""
        return await self._slurm_end(caller, nodes, EndWhy.NEVER_REGISTERED, request_id)

    async def _slurm_end(
        self, caller: Caller, nodes: str | Sequence[str], why: EndWhy, request_id: str | None
    ) -> ActionResult:
        rid = await self._begin(caller, f"slurm-{why}", request_id, _listed(nodes))
        names = await self._names(nodes, rid)
        # Only what tidectl launched and has not ended: Slurm may name nodes twice, or nodes
        # it never resumed through tidectl (asking again must do nothing).
        live = [
            name
            for name in names
            if (record := self.store.node(name)) is not None
            and record.kind is NodeKind.CLOUD
            and record.state is not State.TERMINATED
        ]
        if not live:
            sentence = f"none of {len(names)} node(s) is a live cloud node: nothing to end"
            await self._outcome(rid, f"done: {sentence}")
            return ActionResult(IntentAction.TERMINATE, "", (), sentence=sentence)
        return await self._act(
            rid,
            self.engine.terminate(
                live, actor=caller.user, frontend=caller.frontend, request_id=rid, why=why
            ),
        )

    async def _slurm_pools(self, names: Sequence[str], rid: str) -> dict[str, list[str]]:
        """The names by the pool whose ``slurm_nodes`` holds them, in the order given."""
        owner = {name: pool.name for pool in self.config.pools for name in pool.slurm_nodes}
        foreign = [name for name in names if name not in owner]
        if foreign:
            raise await self._refuse(
                rid,
                f"no pool has {', '.join(foreign[:5])} in its slurm_nodes; add them to a pool's "
                "slurm_nodes in cluster.toml (they must match CLOUD NodeNames in slurm.conf)",
            )
        by_pool: dict[str, list[str]] = {}
        for name in dict.fromkeys(names):
            by_pool.setdefault(owner[name], []).append(name)
        return by_pool

    async def _begin(
        self,
        caller: Caller,
        action: str,
        request_id: str | None,
        targets: Sequence[str],
        params: Mapping[str, Any] | None = None,
    ) -> str:
        """The one door every action passes: the request id, the role check (deny by default:
        ``control.roles``) and the audit record of the decision, written (fsynced) before
        anything happens. Fails closed: a log that cannot be written refuses the action.
        Raises ``Refused`` with the sentence when denied."""
        rid = request_id or new_request_id()
        access = self._access(caller, action)
        self._asked[rid] = (caller, action, tuple(targets))
        while len(self._asked) > _ASKED_KEPT:
            self._asked.pop(next(iter(self._asked)))
        decision = "allowed" if access.allowed else "denied"
        outcome = "started" if access.allowed else f"denied: {access.sentence}"
        try:
            await self._audit(rid, decision, access.rule, outcome, params or {})
        except AuditUnavailable as error:
            _log.error("%s: %s refused, the audit log cannot be written: %s", caller, action, error)
            raise Refused(
                f"nothing was done: the audit log cannot be written ({error}); actions that "
                "change the cluster wait until it can (reads still work)",
                request_id=rid,
            ) from None
        if not access.allowed:
            _log.warning("%s denied %s (request %s): %s", caller, action, rid, access.rule)
            raise Refused(access.sentence, request_id=rid)
        _log.info("%s asks %s (request %s; %s)", caller, action, rid, access.rule)
        return rid

    def _access(self, caller: Caller, action: str) -> Access:
        """People by ``[roles]``; the control plane's own automation by what cluster.toml
        lets it do. Only this process makes ``service`` callers: the service refuses a client
        that claims to be one."""
        if caller.frontend is not Frontend.SERVICE:
            return self.roles.check(caller.user, action)
        if caller.user == POLICY_ACTOR and action in POLICY_ACTIONS:
            if self.config.policies.enabled:
                return Access(True, "[policies] enabled: the policy loop acts for the cluster")
            return Access(False, "[policies] enabled = false", "the policy loop is turned off")
        return Access(
            False,
            "automation",
            f"{caller.user} ({caller.frontend}) may not {action}: the control plane's own "
            "automation acts only as the policy loop",
        )

    async def _audit(
        self, rid: str, decision: str, rule: str, outcome: str, params: Mapping[str, Any]
    ) -> None:
        if self.audit is None:
            return
        caller, action, targets = self._asked[rid]
        if caller.origin is not None:  # what within the front end asked: a playbook's file
            params = {**params, "origin": caller.origin}
        # The fsync is the point and takes milliseconds: off the event loop.
        await asyncio.to_thread(
            self.audit.append,
            actor=caller.user,
            frontend=str(caller.frontend),
            action=action,
            targets=targets,
            params=params,
            decision=decision,
            rule=rule,
            outcome=outcome,
            request_id=rid,
        )

    async def _outcome(self, rid: str, outcome: str) -> None:
        """The audit record of how an allowed action ended. It happened already: a log that
        cannot take it now is reported, not raised."""
        try:
            await self._audit(rid, "allowed", "outcome", outcome, {})
        except AuditUnavailable as error:
            _log.error("the outcome of request %s is not in the audit log: %s", rid, error)
            self._report([f"audit log: the outcome of request {rid} could not be written: {error}"])

    async def _refuse(self, rid: str, sentence: str) -> Refused:
        """A refusal after the decision (a bad node set, a data class): recorded, returned to
        raise."""
        await self._outcome(rid, f"refused: {sentence}")
        return Refused(sentence, request_id=rid)

    async def _names(self, nodes: str | Sequence[str], rid: str) -> list[str]:
        if isinstance(nodes, str):
            try:
                return expand(nodes)
            except ValueError as error:
                raise await self._refuse(rid, f"{nodes!r} is not a node set: {error}") from None
        return list(nodes)

    async def _act(self, rid: str, action: Awaitable[_T]) -> _T:
        try:
            async with self._lock:
                result = await action
        except (BurstRefused, ActionRefused, IllegalTransition, StoreError) as error:
            # StoreError: a reused token, an unreadable store.
            raise await self._refuse(rid, str(error)) from None
        except (ActionFailed, ProviderError, SchedulerError) as error:
            await self._outcome(rid, f"failed: {error}")
            raise Failed(str(error), request_id=rid) from None
        sentence = getattr(result, "sentence", "") or type(result).__name__
        await self._outcome(rid, f"done: {sentence}")
        self._poke.set()  # the reconcile loop takes it from here, now
        return result

    # -- waiting ----------------------------------------------------------------------------

    async def wait(
        self,
        nodes: Collection[str],
        until: Collection[State],
        *,
        timeout_s: float,
        on_progress: Callable[[Progress], None] | None = None,
        ended: Collection[State] = (State.FAILED, State.TERMINATED),
    ) -> Progress:
        """Until every node is in one of ``until`` (or has ``ended``, which stops waiting for
        it), or ``timeout_s`` passes. Runs reconcile passes itself when the loop is not
        running. ``on_progress`` hears every change."""
        started = time.monotonic()
        last: dict[str, State] | None = None
        while True:
            states = {n: r.state for n in nodes if (r := self.store.node(n)) is not None}
            done = sum(1 for s in states.values() if s in until or s in ended)
            progress = Progress(states, done, len(nodes), time.monotonic() - started)
            if on_progress is not None and states != last:
                on_progress(progress)
            last = states
            if done == len(nodes) or progress.elapsed_s >= timeout_s:
                return progress
            if not self._tasks:
                await self.reconcile_now()
                await asyncio.sleep(min(0.2, timeout_s))
                continue
            async with self._changed:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(1.0):
                        await self._changed.wait()

    # -- reading ----------------------------------------------------------------------------

    def nodes(self, pool: str | None = None, *, live_only: bool = False) -> list[NodeRecord]:
        """The nodes the lifecycle store knows (cloud nodes, and on-prem nodes it drained);
        ``live_only``: not those terminated (a console's once-a-second read)."""
        return self.store.nodes(pool=pool, live_only=live_only)

    def pools(self) -> tuple[PoolSpec, ...]:
        return self.config.pools

    def pool(self, name: str) -> PoolSpec | None:
        return next((p for p in self.config.pools if p.name == name), None)

    def _repr_html_(self) -> str:
        """What a notebook shows of this plane: a static summary (``view.html``); the live
        panel is ``tidectl.widgets.ClusterPanel``."""
        from tidectl.console.view.html import plane_summary_html  # Rich: for notebooks only

        return plane_summary_html(self)

    def record_notice(
        self, kind: str, sentence: str, *, pool: str | None = None, key: str | None = None
    ) -> bool:
        """Record what the automation saw and said without moving a node (a budget past its
        warning line), as the policy loop; ``tidectl events`` lists it. With ``key``, only
        the first of that key is kept: False when one was recorded before."""
        return self.store.add_notice(kind, sentence, actor=POLICY_ACTOR, pool=pool, key=key)

    def transitions(self, after_id: int = 0, limit: int = 500) -> list[tuple[int, Transition]]:
        """Lifecycle moves since row ``after_id`` (for an events view)."""
        return self.store.transitions_since(after_id, limit)

    @property
    def has_scheduler(self) -> bool:
        return self._scheduler is not None

    def scheduler_snapshot(self) -> SchedulerSnapshot | None:
        """The scheduler's nodes and jobs as the last reconcile pass read them (None without a
        scheduler, or before a pass): Slurm's state and jobs for a view, and pending demand."""
        return self.engine.scheduler_seen

    async def scheduler_now(self) -> SchedulerSnapshot | None:
        """The scheduler's nodes and jobs, asked now rather than as the last pass read them:
        for a front end that reads without running the loop (a playbook's ``--check``). None
        without a scheduler. Raises ``Failed`` when the scheduler cannot be asked."""
        if self._scheduler is None:
            return None
        try:
            nodes = await self._scheduler.nodes()
            jobs = await self._scheduler.jobs()
        except SchedulerError as error:
            raise Failed(f"the scheduler cannot be asked: {error}", request_id="") from None
        return SchedulerSnapshot(tuple(nodes), tuple(jobs))

    def last_transition_id(self) -> int:
        return self.store.last_transition_id()

    def burn_rate(self, pool: str | None = None) -> float:
        """Dollars an hour the cloud nodes cost now."""
        return self.store.burn_rate(pool)

    def spend(self, *, pool: str | None = None, intent_id: str | None = None) -> float:
        """Dollars spent so far, by pool or by burst (intent)."""
        return self.store.spend(pool, intent_id=intent_id)

    async def price_per_hour(self, pool: str) -> float | None:
        """What one more node of ``pool`` would cost an hour (its first instance type)."""
        return await self.engine.price_of(pool)

    async def jobs_on(self, nodes: Sequence[str]) -> list[Job]:
        """The jobs running on ``nodes`` now (what a drain lets finish)."""
        if self._scheduler is None:
            return []
        wanted = set(nodes)
        try:
            jobs = await self._scheduler.jobs()
        except SchedulerError as error:
            raise Failed(f"the scheduler cannot be asked: {error}", request_id="") from None
        return [job for job in jobs if wanted.intersection(job.nodes)]

    async def audit_records(
        self,
        caller: Caller,
        *,
        since: datetime | None = None,
        actor: str | None = None,
        action: str | None = None,
        limit: int = AUDIT_LIMIT,
    ) -> AuditPage:
        """The newest ``limit`` audit records written since ``since`` (a naive time is UTC),
        by ``actor``, of ``action`` — oldest first — and how far the log's hash chain
        verifies (``audit.reader``: both kept until the file changes). A read: the caller
        needs a viewer's role, and the check is not itself recorded. Raises ``Refused`` for a
        caller without one, ``Failed`` when the log cannot be read."""
        access = self.roles.check(caller.user, "read")
        if not access.allowed:
            raise Refused(access.sentence, request_id="")
        if self.audit is None:
            return AuditPage(None)
        if self._audit_reader is None or self._audit_reader.path != self.audit.path:
            self._audit_reader = AuditReader(self.audit.path)
        query = AuditQuery(since=since, actor=actor, action=action)
        try:
            # The whole file is read (and, once per change, hashed): off the event loop.
            return await asyncio.to_thread(self._audit_reader.page, query, max(0, limit))
        except AuditUnavailable as error:
            raise Failed(f"the audit log cannot be read: {error}", request_id="") from None

    async def cost_report(self, caller: Caller, *, since: float | None = None) -> CostReport:
        """What the cluster burns now and spent since ``since`` (epoch seconds; default the
        UTC day), per pool, burst and node, each burst's P&L and the budgets
        (``cost.report``). A read: the caller needs a viewer's role. Raises ``Refused`` for a
        caller without one, ``Failed`` when the store cannot be read."""
        access = self.roles.check(caller.user, "read")
        if not access.allowed:
            raise Refused(access.sentence, request_id="")
        try:
            return cost_report(self.store, self.config, self.engine.now(), since)
        except (StoreError, sqlite3.Error) as error:
            raise Failed(f"the cost ledger cannot be read: {error}", request_id="") from None


def refusal(error: ControlError) -> str:
    """A one-line message for a front end: the sentence and the request id."""
    return f"{error} (request {error.request_id})" if error.request_id else str(error)


def _listed(nodes: str | Sequence[str]) -> list[str]:
    """Targets as the audit records them: a node set as written, or the names."""
    return [nodes] if isinstance(nodes, str) else list(nodes)
