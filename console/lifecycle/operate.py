"""What a person (or a policy) asks of nodes that exist: drain, resume, terminate, cancel.

Every action is all or nothing at the asking: each node is checked against the transition table
and the scheduler first, and one node that cannot take the action refuses the whole request
with a sentence naming it and saying what to do (nothing written, nothing called). Then, in
this order: the intent (idempotent on its token) is written, the outside world is asked (the
scheduler drains or resumes; the provider terminates), and the nodes move. A crash between
any two steps leaves a pending intent that :meth:`Operations.recover` carries out again —
every step is safe to repeat.

The rules that keep jobs alive are here and in the planner, both: a drain never kills a job
(the scheduler lets jobs finish; the node is only ``drained`` when the scheduler says so and
no job is left); terminate refuses any node the scheduler shows a job on, and asks the
scheduler to let go of the node first (which a busy node refuses again); automation never
resumes a drain a person set.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass

from tidectl.console.lifecycle.records import (
    IntentAction,
    IntentRecord,
    IntentStatus,
    NodeRecord,
)
from tidectl.console.lifecycle.states import ENTRY, NodeKind, State
from tidectl.console.lifecycle.store import Store
from tidectl.console.providers.base import Provider, ProviderError
from tidectl.console.scheduler.base import (
    InvalidReasonError,
    Job,
    JobState,
    SchedNode,
    SchedState,
    Scheduler,
    SchedulerError,
    UnknownNodeError,
    check_reason,
    is_drained_and_empty,
    is_powered_down_and_empty,
    resume_refusal,
)

__all__ = [
    "ActionFailed",
    "ActionRefused",
    "ActionResult",
    "EndWhy",
    "NodeOutcome",
    "Operations",
]

_log = logging.getLogger(__name__)

_DRAINABLE = frozenset({State.ACTIVE, State.JOINING})
_DRAINING = frozenset({State.DRAINING, State.DRAINED})
#: Cloud states a terminate may start from without a drain: no job can be on the node.
_NOT_JOINED = frozenset({State.REQUESTED, State.PROVISIONING, State.BOOTSTRAPPING})
_ON_NODE = frozenset({JobState.RUNNING, JobState.COMPLETING})
#: Cloud states a node is in once it was handed to the scheduler (until it is let go of).
_JOINED = frozenset({State.JOINING, State.ACTIVE, State.DRAINING, State.DRAINED})


class EndWhy(enum.StrEnum):
    """Who ends a node, which decides the way to terminating."""

    ASKED = "asked"  # a person or a policy: only drained, failed or not-joined nodes
    POWERED_DOWN = "powered-down"  # the scheduler's power saving (Slurm's SuspendProgram)
    NEVER_REGISTERED = "never-registered"  # the scheduler gave up (Slurm's ResumeFailProgram)

    def lets_go(self, state: State) -> bool:
        """Whether a node in ``state`` takes this reason's own way to terminating: a joined
        node Slurm powers down (drained on the way); any node Slurm gave up on, but one
        already ending (failed on the way, so the reason shows)."""
        if self is EndWhy.POWERED_DOWN:
            return state in _JOINED
        if self is EndWhy.NEVER_REGISTERED:
            return state not in (State.FAILED, State.TERMINATING, State.TERMINATED)
        return False

    def sentence(self, actor: str) -> str:
        if self is EndWhy.POWERED_DOWN:
            return f"Slurm powers it down idle (SuspendProgram, as {actor})"
        if self is EndWhy.NEVER_REGISTERED:
            return (
                f"Slurm gave up on it: its slurmd did not register within ResumeTimeout "
                f"(ResumeFailProgram, as {actor})"
            )
        return f"terminate asked by {actor}"


class ActionRefused(Exception):
    """The request cannot be carried out as asked; nothing was written or called.
    ``str()`` says which node, why, and what to do."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ActionFailed(Exception):
    """The outside world (scheduler, provider) failed the request after its intent was
    written; the intent is marked failed and no node was moved. ``str()`` says why."""

    def __init__(self, message: str, intent_id: str) -> None:
        super().__init__(message)
        self.message = message
        self.intent_id = intent_id


@dataclass(frozen=True, slots=True)
class NodeOutcome:
    node: str
    before: State | None  # None: the store did not know the node (an on-prem node's first)
    after: State
    note: str  # what happened to it, or why nothing needed to


@dataclass(frozen=True, slots=True)
class ActionResult:
    action: IntentAction
    intent_id: str
    nodes: tuple[NodeOutcome, ...]
    #: The intent existed already (same token): nothing was done again.
    replayed: bool = False
    sentence: str = ""


@dataclass(frozen=True, slots=True)
class _World:
    """The scheduler's nodes and the jobs on each, read once per request."""

    nodes: Mapping[str, SchedNode]
    jobs: Mapping[str, tuple[Job, ...]]

    def jobs_on(self, name: str) -> tuple[Job, ...]:
        return self.jobs.get(name, ())


class Operations:
    """Drain, resume, terminate and cancel over the engine's store, scheduler and providers.

    ``launching`` is the set of burst intents whose launch calls are still running (their
    ``requested`` nodes must not be touched meanwhile). ``onprem`` names the configured
    machines, which stand in for the scheduler's node list when there is no scheduler.
    """

    def __init__(
        self,
        store: Store,
        providers: Mapping[str, Provider],
        scheduler: Scheduler | None,
        *,
        clock: Callable[[], float],
        launching: set[str],
        onprem: Collection[str] = (),
    ) -> None:
        self._store = store
        self._onprem = tuple(onprem)
        self._providers = providers
        self._scheduler = scheduler
        self._clock = clock
        self._launching = launching

    # -- drain ------------------------------------------------------------------------------

    async def drain(
        self,
        names: Sequence[str],
        *,
        reason: str,
        actor: str,
        frontend: str,
        request_id: str,
        token: str | None = None,
    ) -> ActionResult:
        """Stop new jobs on ``names``; jobs there run to completion. The reconcile loop moves
        each node to ``drained`` once the scheduler says drained and no job is left."""
        try:
            reason = check_reason(reason)
        except InvalidReasonError as error:
            raise ActionRefused(str(error)) from None
        names = _unique(names)
        world = await self._world()
        records = self._records(names, world)
        for name in names:
            record = records[name]
            if record is not None and record.state not in _DRAINABLE | _DRAINING:
                raise ActionRefused(_cannot(name, record.state, "drain", _DRAIN_HINTS))
        intent, replayed = self._intent(
            IntentAction.DRAIN,
            token or f"drain:{request_id}",
            {"nodes": names, "reason": reason},
            actor=actor,
            frontend=frontend,
            request_id=request_id,
        )
        if replayed:
            return self._replay(intent, names)
        return await self._apply_drain(
            intent, names, reason, world, actor=actor, request_id=request_id
        )

    async def _apply_drain(
        self,
        intent: IntentRecord,
        names: list[str],
        reason: str,
        world: _World,
        *,
        actor: str,
        request_id: str,
    ) -> ActionResult:
        in_scheduler = [name for name in names if name in world.nodes]
        if self._scheduler is not None and in_scheduler:
            try:
                await self._scheduler.drain(in_scheduler, reason)
            except SchedulerError as error:
                raise self._failed(intent, f"the scheduler refused the drain: {error}") from None
        outcomes = []
        for name in names:
            record = self._known_or_added(name, world, actor, request_id)
            if record.state in _DRAINING:
                note = f"already {record.state}"
                outcomes.append(NodeOutcome(name, record.state, record.state, note))
                continue
            self._move(name, State.DRAINING, f"drain asked by {actor}: {reason}", actor, request_id)
            jobs = len(world.jobs_on(name))
            note = f"draining; {jobs} job(s) on it run to completion" if jobs else "draining"
            outcomes.append(NodeOutcome(name, record.state, State.DRAINING, note))
        return self._done(intent, outcomes, f"drain set on {len(names)} node(s): {reason}")

    # -- resume -----------------------------------------------------------------------------

    async def resume(
        self,
        names: Sequence[str],
        *,
        actor: str,
        frontend: str,
        request_id: str,
        token: str | None = None,
        automation: bool = False,
    ) -> ActionResult:
        """Let drained or draining nodes take jobs again. ``automation``: refuse any node a
        person drained (and any node down), as policies must."""
        names = _unique(names)
        world = await self._world()
        records = self._records(names, world)
        for name in names:
            record = records[name]
            if record is not None and record.state not in _DRAINING | {State.ACTIVE}:
                raise ActionRefused(_cannot(name, record.state, "resume", _RESUME_HINTS))
            node = world.nodes.get(name)
            if automation and node is not None:
                refusal = resume_refusal(node)
                if refusal is not None:
                    raise ActionRefused(refusal)
        intent, replayed = self._intent(
            IntentAction.RESUME,
            token or f"resume:{request_id}",
            {"nodes": names},
            actor=actor,
            frontend=frontend,
            request_id=request_id,
        )
        if replayed:
            return self._replay(intent, names)
        return await self._apply_resume(intent, names, world, actor, request_id)

    async def _apply_resume(
        self,
        intent: IntentRecord,
        names: list[str],
        world: _World,
        actor: str,
        request_id: str,
    ) -> ActionResult:
        in_scheduler = [name for name in names if name in world.nodes]
        if self._scheduler is not None and in_scheduler:
            try:
                await self._scheduler.resume(in_scheduler)
            except SchedulerError as error:
                raise self._failed(intent, f"the scheduler refused to resume: {error}") from None
        outcomes = []
        for name in names:
            record = self._known_or_added(name, world, actor, request_id)
            if record.state is State.ACTIVE:
                outcomes.append(NodeOutcome(name, State.ACTIVE, State.ACTIVE, "already active"))
                continue
            self._move(name, State.ACTIVE, f"resumed by {actor}", actor, request_id)
            outcomes.append(NodeOutcome(name, record.state, State.ACTIVE, "takes jobs again"))
        return self._done(intent, outcomes, f"resumed {len(names)} node(s)")

    # -- terminate --------------------------------------------------------------------------

    async def terminate(
        self,
        names: Sequence[str],
        *,
        actor: str,
        frontend: str,
        request_id: str,
        token: str | None = None,
        why: EndWhy = EndWhy.ASKED,
        reason: str | None = None,
    ) -> ActionResult:
        """End cloud nodes that run no job: drained (and the scheduler agrees, and shows no
        job), failed, or not yet joined. The provider is asked; the reconcile loop confirms
        with the provider and closes each node (and retries the call until it does).

        ``why`` says who ends them (``EndWhy``): a person (the default), the scheduler's
        power saving (nodes it is powering down, idle, are drained on the way), or the
        scheduler giving up on nodes that never registered (they fail on the way)."""
        names = _unique(names)
        world = await self._world()
        records = self._records(names, world)
        for name in names:
            self._check_terminable(name, records[name], world, why)
        intent, replayed = self._intent(
            IntentAction.TERMINATE,
            token or f"terminate:{request_id}",
            _terminate_detail(names, why, reason),
            actor=actor,
            frontend=frontend,
            request_id=request_id,
        )
        if replayed:
            return self._replay(intent, names)
        return await self._apply_terminate(
            intent, names, world, actor, request_id, why=why, reason=reason
        )

    def _check_terminable(
        self, name: str, record: NodeRecord | None, world: _World, why: EndWhy = EndWhy.ASKED
    ) -> None:
        if record is None or record.kind is NodeKind.ONPREM:
            raise ActionRefused(
                f"{name} is an on-prem node: tidectl never terminates a machine it did not "
                f"launch; drain it instead (tidectl drain {name})"
            )
        if record.state is State.REQUESTED and record.intent_id in self._launching:
            raise ActionRefused(
                f"{name}'s burst is still launching; terminate it once the launch calls "
                "have returned (seconds)"
            )
        if record.state is State.TERMINATED:
            return
        jobs = world.jobs_on(name)
        node = world.nodes.get(name)
        if why.lets_go(record.state):
            self._check_let_go(name, record.state, node, jobs, why)
            return
        if record.state not in _NOT_JOINED | {State.DRAINED, State.FAILED, State.TERMINATING}:
            raise ActionRefused(_cannot(name, record.state, "terminate", _TERMINATE_HINTS))
        if jobs or (
            record.state is State.DRAINED and node is not None and not is_drained_and_empty(node)
        ):
            listed = ", ".join(job.id for job in jobs) or "none listed"
            raise ActionRefused(
                f"{name} is not drained and empty in the scheduler (state "
                f"{node.state if node else 'unknown'}, jobs: {listed}): tidectl never terminates "
                "a node with a job on it; wait for the drain to finish"
            )

    @staticmethod
    def _check_let_go(
        name: str, state: State, node: SchedNode | None, jobs: Sequence[Job], why: EndWhy
    ) -> None:
        """A joined node the scheduler let go of: only with no job on it, and (power saving)
        only once the scheduler takes no more jobs there."""
        if jobs or (node is not None and node.jobs):
            listed = ", ".join(job.id for job in jobs) or ", ".join(node.jobs if node else ())
            raise ActionRefused(
                f"{name} still has jobs ({listed}): tidectl never terminates a node with a job "
                "on it, whoever asks"
            )
        if why is EndWhy.POWERED_DOWN and (node is None or not is_powered_down_and_empty(node)):
            shown = f"{node.state} {sorted(node.flags)}" if node else "not in the scheduler"
            raise ActionRefused(
                f"{name} is {state} and the scheduler is not powering it down ({shown}); "
                "drain it instead, or let Slurm's power saving suspend it"
            )

    async def _apply_terminate(
        self,
        intent: IntentRecord,
        names: list[str],
        world: _World,
        actor: str,
        request_id: str,
        *,
        why: EndWhy = EndWhy.ASKED,
        reason: str | None = None,
    ) -> ActionResult:
        outcomes: list[NodeOutcome] = []
        said = why.sentence(actor) + (f": {reason}" if reason else "")
        to_end: dict[str, list[str]] = {}
        for name in names:
            record = self._store.node(name)
            assert record is not None  # checked above, and nodes are never deleted
            if record.state is State.TERMINATED:
                outcomes.append(NodeOutcome(name, record.state, record.state, "already terminated"))
                continue
            if why.lets_go(record.state):
                self._let_go(name, record.state, why, actor, request_id)
            # A node the scheduler let go of itself needs no asking (its power saving has it).
            if self._scheduler is not None and name in world.nodes and why is EndWhy.ASKED:
                try:
                    # The scheduler refuses a node with any job on it: a second guard.
                    await self._scheduler.remove_node(name)
                except UnknownNodeError:
                    pass
                except SchedulerError as error:
                    raise self._failed(intent, f"{name}: {error}") from None
            if record.state is not State.TERMINATING:
                self._move(name, State.TERMINATING, said, actor, request_id)
            if record.instance_id:
                to_end.setdefault(record.pool or "", []).append(record.instance_id)
            outcomes.append(NodeOutcome(name, record.state, State.TERMINATING, "terminating"))
        problems = []
        for pool, instance_ids in to_end.items():
            provider = self._providers.get(pool)
            if provider is None:
                problems.append(f"pool {pool} has no provider: retried by the reconcile loop")
                continue
            try:
                await provider.terminate(instance_ids)
            except ProviderError as error:
                # The nodes stay terminating: the reconcile loop asks again until confirmed.
                problems.append(f"the provider failed ({error}); the reconcile loop retries")
        sentence = f"terminating {len(names)} node(s)"
        if problems:
            sentence += ": " + "; ".join(problems)
        return self._done(intent, outcomes, sentence)

    def _let_go(self, name: str, state: State, why: EndWhy, actor: str, request_id: str) -> None:
        """The moves on the way to terminating for a node the scheduler let go of: through
        draining and drained (power saving: it is idle and takes no job), or to failed (it
        never registered)."""
        reason = why.sentence(actor)
        if why is EndWhy.NEVER_REGISTERED:
            self._move(name, State.FAILED, reason, actor, request_id)
            return
        if state in (State.JOINING, State.ACTIVE):
            self._move(name, State.DRAINING, reason, actor, request_id)
        if state is not State.DRAINED:
            self._move(name, State.DRAINED, reason, actor, request_id)

    # -- cancel -----------------------------------------------------------------------------

    async def cancel(
        self,
        burst_intent: str,
        *,
        actor: str,
        frontend: str,
        request_id: str,
        token: str | None = None,
    ) -> ActionResult:
        """Take back a burst: its nodes that have not joined are terminated, a node joining
        is drained first (a job may already be placed), active nodes are left alone (drain
        them to remove them)."""
        burst = self._store.intent(burst_intent)
        if burst is None or burst.action is not IntentAction.BURST:
            raise ActionRefused(f"there is no burst with intent id {burst_intent!r}")
        if burst.id in self._launching:
            raise ActionRefused(
                f"burst {burst.id} is still launching; cancel it once its launch calls have "
                "returned (seconds)"
            )
        names = [n.name for n in self._store.nodes(pool=burst.pool) if n.intent_id == burst.id]
        intent, replayed = self._intent(
            IntentAction.CANCEL,
            token or f"cancel:{request_id}",
            {"intent": burst.id},
            actor=actor,
            frontend=frontend,
            request_id=request_id,
        )
        if replayed:
            return self._replay(intent, names)
        return await self._apply_cancel(intent, burst, actor, request_id)

    async def _apply_cancel(
        self, intent: IntentRecord, burst: IntentRecord, actor: str, request_id: str
    ) -> ActionResult:
        names = [n.name for n in self._store.nodes(pool=burst.pool) if n.intent_id == burst.id]
        world = await self._world()
        before = {name: self._state(name) for name in names}
        joining = [n for n in names if before[n] is State.JOINING]
        ending = [n for n in names if before[n] in _NOT_JOINED]
        if joining and self._scheduler is not None:
            in_scheduler = [n for n in joining if n in world.nodes]
            try:
                if in_scheduler:
                    reason = f"tidectl: burst {burst.id[:8]} cancelled by {actor}"
                    await self._scheduler.drain(in_scheduler, reason)
            except SchedulerError as error:
                raise self._failed(intent, f"the scheduler refused the drain: {error}") from None
        outcomes = []
        why = f"burst cancelled by {actor}"
        for name in joining:
            self._move(name, State.DRAINING, why, actor, request_id)
            outcomes.append(NodeOutcome(name, State.JOINING, State.DRAINING, "drained first"))
        for name in ending:
            self._move(name, State.TERMINATING, why, actor, request_id)
            outcomes.append(NodeOutcome(name, before[name], State.TERMINATING, why))
        instance_ids = [i for n in ending if (i := self._instance_of(n))]
        provider = self._providers.get(burst.pool or "")
        if instance_ids and provider is not None:
            try:
                await provider.terminate(instance_ids)
            except ProviderError as error:
                _log.warning("cancel %s: terminate failed (%s); reconcile retries", burst.id, error)
        for name in names:
            if name not in joining and name not in ending:
                state = before[name]
                outcomes.append(NodeOutcome(name, state, state, f"left {state}"))
        return self._done(
            intent,
            outcomes,
            f"cancelled burst {burst.id[:8]}: {len(ending)} node(s) terminating, "
            f"{len(joining)} draining first",
        )

    # -- after a restart --------------------------------------------------------------------

    async def recover(self) -> list[str]:
        """Finish what a stopped control plane left: pending drains and resumes are asked of
        the scheduler again, pending terminates of the provider; a burst that was launching
        ends its ``requested`` nodes (whatever it launched carries its tags and is adopted by
        the reconcile loop). Returns a sentence per intent finished."""
        done: list[str] = []
        for intent in self._store.intents(IntentStatus.PENDING):
            try:
                done.append(await self._recover_one(intent))
            except (ActionFailed, ActionRefused) as error:
                done.append(f"intent {intent.id} ({intent.action}) could not be finished: {error}")
        return done

    async def _recover_one(self, intent: IntentRecord) -> str:
        actor, request_id = intent.actor, intent.request_id
        names = [str(n) for n in intent.detail.get("nodes", [])]
        if intent.action is IntentAction.BURST:
            if intent.id in self._launching:
                return f"burst {intent.id} is still launching"
            return self._end_interrupted_burst(intent)
        world = await self._world()
        names = [n for n in names if self._store.node(n) is not None or n in world.nodes]
        if intent.action is IntentAction.DRAIN:
            reason = str(intent.detail.get("reason", "drain"))
            result = await self._apply_drain(
                intent, names, reason, world, actor=actor, request_id=request_id
            )
        elif intent.action is IntentAction.RESUME:
            result = await self._apply_resume(intent, names, world, actor, request_id)
        elif intent.action is IntentAction.TERMINATE:
            why = EndWhy(str(intent.detail.get("why", EndWhy.ASKED)))
            said = intent.detail.get("reason")
            result = await self._apply_terminate(
                intent,
                names,
                world,
                actor,
                request_id,
                why=why,
                reason=said if isinstance(said, str) else None,
            )
        else:  # a cancel: every action is one of the five
            burst = self._store.intent(str(intent.detail.get("intent", "")))
            if burst is None:
                self._store.set_intent_status(intent.id, IntentStatus.DONE, at=self._clock())
                return f"cancel {intent.id}: its burst is not in the store; nothing to do"
            result = await self._apply_cancel(intent, burst, actor, request_id)
        return f"{intent.action} {intent.id}: {result.sentence}"

    def _end_interrupted_burst(self, intent: IntentRecord) -> str:
        waiting = [
            n
            for n in self._store.nodes(pool=intent.pool, states=[State.REQUESTED])
            if n.intent_id == intent.id
        ]
        why = "the control plane stopped during this burst's launch; what it launched is adopted"
        for node in waiting:
            # The launch may have been sent: terminating, which the provider's word closes.
            self._move(node.name, State.TERMINATING, why, intent.actor, intent.request_id)
        self._store.set_intent_status(intent.id, IntentStatus.FAILED, at=self._clock(), error=why)
        return f"burst {intent.id}: {len(waiting)} unlaunched node(s) closed; {why}"

    # -- shared -----------------------------------------------------------------------------

    async def _world(self) -> _World:
        if self._scheduler is None:
            # Nothing places jobs: the configured machines are idle as far as anyone knows.
            return _World({n: SchedNode(n, SchedState.IDLE) for n in self._onprem}, {})
        try:
            nodes = {node.name: node for node in await self._scheduler.nodes()}
            jobs: dict[str, list[Job]] = {}
            for job in await self._scheduler.jobs():
                if job.state in _ON_NODE:
                    for name in job.nodes:
                        jobs.setdefault(name, []).append(job)
        except SchedulerError as error:
            raise ActionRefused(f"the scheduler cannot be asked now: {error}") from None
        return _World(nodes, {name: tuple(listed) for name, listed in jobs.items()})

    def _records(self, names: list[str], world: _World) -> dict[str, NodeRecord | None]:
        if not names:
            raise ActionRefused("no nodes were named; name at least one (a node set works)")
        records = {name: self._store.node(name) for name in names}
        unknown = [n for n, r in records.items() if r is None and n not in world.nodes]
        if unknown:
            raise ActionRefused(
                f"no node named {', '.join(unknown)} is known to tidectl or the scheduler; "
                "check the names (tidectl nodes lists them)"
            )
        return records

    def _known_or_added(self, name: str, world: _World, actor: str, request_id: str) -> NodeRecord:
        """The node's record, adding an on-prem node the store meets for the first time in
        the state the scheduler shows it in."""
        record = self._store.node(name)
        if record is not None:
            return record
        node = world.nodes[name]
        state = (
            State.DRAINED
            if node.state is SchedState.DRAINED
            else State.DRAINING
            if node.drain_set
            else State.ACTIVE
        )
        return self._store.add_node(
            name,
            NodeKind.ONPREM,
            None,
            state,
            self._clock(),
            reason=ENTRY[NodeKind.ONPREM][state],
            actor=actor,
            request_id=request_id,
        )

    def _intent(
        self,
        action: IntentAction,
        token: str,
        detail: dict[str, object],
        *,
        actor: str,
        frontend: str,
        request_id: str,
    ) -> tuple[IntentRecord, bool]:
        before = self._store.intent_by_token(token)
        intent = self._store.add_intent(
            token=token,
            action=action,
            pool=None,
            actor=actor,
            frontend=frontend,
            request_id=request_id,
            at=self._clock(),
            detail=detail,
        )
        return intent, before is not None

    def _replay(self, intent: IntentRecord, names: list[str]) -> ActionResult:
        outcomes = []
        for name in names:
            state = self._state(name)
            outcomes.append(NodeOutcome(name, state, state, "asked before; nothing done again"))
        return ActionResult(
            intent.action,
            intent.id,
            tuple(outcomes),
            replayed=True,
            sentence=f"this request was already made (intent {intent.id}, {intent.status})",
        )

    def _done(
        self, intent: IntentRecord, outcomes: list[NodeOutcome], sentence: str
    ) -> ActionResult:
        self._store.set_intent_status(intent.id, IntentStatus.DONE, at=self._clock())
        return ActionResult(intent.action, intent.id, tuple(outcomes), sentence=sentence)

    def _failed(self, intent: IntentRecord, sentence: str) -> ActionFailed:
        self._store.set_intent_status(
            intent.id, IntentStatus.FAILED, at=self._clock(), error=sentence
        )
        return ActionFailed(sentence, intent.id)

    def _move(self, name: str, after: State, reason: str, actor: str, request_id: str) -> None:
        self._store.transition(
            name, after, reason=reason, actor=actor, request_id=request_id, at=self._clock()
        )

    def _state(self, name: str) -> State:
        record = self._store.node(name)
        assert record is not None, name
        return record.state

    def _instance_of(self, name: str) -> str | None:
        record = self._store.node(name)
        return record.instance_id if record else None


_DRAIN_HINTS = {
    State.REQUESTED: "it is not in the scheduler yet and runs no job: cancel its burst instead",
    State.PROVISIONING: "it is not in the scheduler yet and runs no job: terminate it instead",
    State.BOOTSTRAPPING: "it is not in the scheduler yet and runs no job: terminate it instead",
}
_RESUME_HINTS = {
    State.JOINING: "it takes jobs as soon as the scheduler admits it",
}
_TERMINATE_HINTS = {
    State.ACTIVE: "drain it first (tidectl drain NODE) and terminate it once drained",
    State.DRAINING: "its drain is not finished; terminate it once it is drained",
    State.JOINING: "a job may already be placed on it: drain it first",
}


def _cannot(name: str, state: State, action: str, hints: Mapping[State, str]) -> str:
    hint = hints.get(state, "nothing can be done to it in that state")
    return f"cannot {action} {name}: it is {state}; {hint}"


def _terminate_detail(names: list[str], why: EndWhy, reason: str | None) -> dict[str, object]:
    detail: dict[str, object] = {"nodes": names, "why": str(why)}
    if reason:
        detail["reason"] = reason
    return detail


def _unique(names: Sequence[str]) -> list[str]:
    if isinstance(names, str):
        raise ActionRefused(f"node names must be a list, not the string {names!r}")
    return list(dict.fromkeys(names))
