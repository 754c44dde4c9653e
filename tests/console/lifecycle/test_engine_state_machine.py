"""The lifecycle engine as a Hypothesis state machine: bursts (delta and ensure, fresh and
replayed), drains, resumes, terminates, cancels, jobs, both clocks, cloud faults and crashes in
random order, with the engine's promises checked after every step.

Real pieces where speed allows: the SQLite store on disk (a crash closes it, reopens the file and
builds a new Engine, which recovers), and the sim scheduler. The cloud is the in-memory one
(``tests/fakes/memory_cloud.py``), which keeps the provider contract: the sim cloud boots an
SSH server per instance, far too slow for hundreds of runs.

Crashes come three ways: between steps; inside a burst, after the cloud started instances and
before the launch answered; and just before or just after any store write (a kill -9 lands
between two transactions, never inside one). A slow launch answer lets a reconcile pass, a
cancel or a terminate run while a burst is still launching.

When an instance stops running, its node's hardware is gone: the test tells the scheduler
(``node_lost``), which fails the jobs on it. So a terminate that reached a busy node shows up as
a killed job.

After every step:

* every instance carries the ownership tags, and the burst intent they name is in the store;
* no intent has more instances than it asked for nodes (a token never launches twice);
* no job ended early except on a node whose instance the test itself took away;
* the engine never ends an instance whose node the scheduler still lists;
* every node's history is a path of the transition table, ending in its state;
* a cloud node in a billing state has one open ledger stretch; any other node none;
* a terminated node's instance is ending or gone.

After a crash and recovery no intent is left pending, and each one recovery closed did what it
says. After settling (a restart, recovery and a few reconcile passes; at the end of every run
too), every instance still running is known to the store and belongs to a live node.

What the machine found is kept below as one deterministic test each (four bugs, all fixed: an
instance and its node written in two transactions, twice; a cancel cut short by a crash; a
node left joining by a crash never asked to join again).
"""

from __future__ import annotations

import asyncio
import random
import shutil
import sys
import tempfile
import uuid
from collections import Counter
from collections.abc import Callable, Coroutine, Iterable
from itertools import pairwise
from os import PathLike
from pathlib import Path
from typing import Any, Final, TypeVar
from unittest import mock

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from tests.fakes.memory_cloud import MemoryCloud, StopCause
from tidectl.console.config.model import BootstrapSettings, PoolSpec
from tidectl.console.lifecycle import store as store_module
from tidectl.console.lifecycle.burst import BurstRefused
from tidectl.console.lifecycle.engine import Engine
from tidectl.console.lifecycle.operate import ActionFailed, ActionRefused, ActionResult
from tidectl.console.lifecycle.reconcile import Adopt
from tidectl.console.lifecycle.records import (
    InstanceRecord,
    IntentAction,
    IntentRecord,
    IntentStatus,
    NodeRecord,
)
from tidectl.console.lifecycle.states import (
    ENTRY,
    TRANSITIONS,
    NodeKind,
    State,
    Transition,
    bills,
)
from tidectl.console.lifecycle.store import Store
from tidectl.console.providers.base import (
    CLUSTER_TAG,
    INTENT_TAG,
    POOL_TAG,
    InstanceState,
    LaunchRequest,
    QuotaError,
)
from tidectl.console.scheduler.base import SchedState, UnknownNodeError, automation_reason
from tidectl.console.scheduler.sim import Outcome, SimScheduler
from tidectl.console.scheduler.workload import JobSpec

T = TypeVar("T")
S = State

CLUSTER: Final = "c1"
ONPREM: Final = "onprem-1"  # a machine of the site: in the scheduler, never launched
T0: Final = 1_700_000_000.0
GPU = PoolSpec(
    name="gpu",
    provider="memory",
    region="mem-1",
    site="cloud",
    instance_types=("m.gpu8", "m.gpu8b"),
    zones=("mem-1a", "mem-1b"),
    gpus_per_node=8,
    max_nodes=4,
    price_per_hour=None,  # the provider's price
)
SPOT = PoolSpec(
    name="spot",
    provider="memory",
    region="mem-1",
    site="cloud",
    instance_types=("m.gpu8",),
    zones=(),
    gpus_per_node=8,
    max_nodes=3,
    price_per_hour=9.5,
    spot=True,
    all_or_nothing=True,
    bootstrap=BootstrapSettings(boot_timeout_s=300.0, join_timeout_s=120.0),
)
POOLS: Final = {pool.name: pool for pool in (GPU, SPOT)}
TYPES: Final = ("m.gpu8", "m.gpu8b")
WHO: Final = {"actor": "ana", "frontend": "test"}
PERSON: Final = "maintenance: swap a fan"
AUTOMATION: Final = automation_reason("scale in")
#: Reconcile passes that settle the world after a restart: adoption takes one, a termination
#: three (ask, the cloud shows shutting-down, then terminated), a failure then its cleanup.
SETTLE_PASSES: Final = 8
NOT_JOINED: Final = frozenset({S.REQUESTED, S.PROVISIONING, S.BOOTSTRAPPING})
ENDING: Final = frozenset({InstanceState.SHUTTING_DOWN, InstanceState.TERMINATED})
PICKS = st.lists(st.integers(0, 63), min_size=1, max_size=2)
#: Reconcile passes after a request: the loop runs on while people ask for things.
THEN = st.integers(0, 3)


class Crash(BaseException):
    """The control plane dies (kill -9): no handler sees it, nothing after it runs."""


class CrashingStore(Store):
    """The real store, told to die just before (or just after) its n-th write from now: a
    kill lands between two transactions, never inside one."""

    crash_in: int | None = None
    crash_after_write: bool = False

    @classmethod
    def open(cls, path: str | PathLike[str]) -> CrashingStore:
        store = super().open(path)
        assert isinstance(store, CrashingStore)
        return store

    def _write(self, write: Callable[[], T]) -> T:
        if self.crash_in is None:
            return write()
        self.crash_in -= 1
        if self.crash_in > 0:
            return write()
        self.crash_in = None
        if self.crash_after_write:
            write()
        raise Crash

    def add_node(self, *args: Any, **kwargs: Any) -> NodeRecord:
        return self._write(lambda: super(CrashingStore, self).add_node(*args, **kwargs))

    def transition(self, *args: Any, **kwargs: Any) -> Transition:
        return self._write(lambda: super(CrashingStore, self).transition(*args, **kwargs))

    def add_intent(self, *args: Any, **kwargs: Any) -> IntentRecord:
        return self._write(lambda: super(CrashingStore, self).add_intent(*args, **kwargs))

    def set_intent_status(self, *args: Any, **kwargs: Any) -> IntentRecord:
        return self._write(lambda: super(CrashingStore, self).set_intent_status(*args, **kwargs))

    def record_instance(self, *args: Any, **kwargs: Any) -> InstanceRecord:
        return self._write(lambda: super(CrashingStore, self).record_instance(*args, **kwargs))

    def confirm_terminated(self, *args: Any, **kwargs: Any) -> InstanceRecord:
        return self._write(lambda: super(CrashingStore, self).confirm_terminated(*args, **kwargs))


class SeededUuids:
    """``uuid4`` from a seeded generator, for the store's intent ids: node names carry them and
    order things (the store lists nodes by name), so a run must get the same ids on every
    replay for Hypothesis to shrink it."""

    def __init__(self) -> None:
        self._random = random.Random(0)

    def uuid4(self) -> uuid.UUID:
        return uuid.UUID(int=self._random.getrandbits(128), version=4)


class Clock:
    """The engine's wall clock: still, until a step skips it ahead."""

    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


class EngineMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self._uuids = mock.patch.object(store_module, "uuid", SeededUuids())
        self._uuids.start()
        self.folder = Path(tempfile.mkdtemp(prefix="tidectl-engine-sm-", dir=_fast_dir()))
        self.path = self.folder / "store.sqlite3"
        self.loop = asyncio.new_event_loop()
        self.clock = Clock()
        self.health: dict[str, bool | None] = {}
        self.scheduler = SimScheduler({ONPREM: 8}, start=0.0)
        self.cloud = MemoryCloud(clock=self.clock, on_stop=self._instance_stopped)
        self.store = CrashingStore.open(self.path)
        self.engine = self._engine()
        self.requests = 0
        #: (node, scheduler time) of every node whose instance the test took away.
        self.taken: set[tuple[str, float]] = set()
        #: Instances the engine ended while the scheduler still listed their node.
        self.ended_in_scheduler: list[str] = []
        self.last_burst: tuple[str, bool, int, str | None, str] | None = None

    def teardown(self) -> None:
        try:
            # Every run ends settled and checked, unless a step already failed it.
            if sys.exc_info()[0] is None:
                self._settle()
        finally:
            self.store.close()
            self.loop.close()
            self._uuids.stop()
            shutil.rmtree(self.folder, ignore_errors=True)

    # -- the world ----------------------------------------------------------------------------

    def _engine(self) -> Engine:
        return Engine(
            self.store,
            dict.fromkeys(POOLS, self.cloud),
            self.scheduler,
            POOLS,
            CLUSTER,
            health=lambda name: self.health.get(name, True),
            clock=self.clock,
        )

    def _instance_stopped(self, instance_id: str, cause: StopCause) -> None:
        """The instance's hardware is gone: the scheduler loses the node (its jobs fail)."""
        name = self._node_of(instance_id)
        if name is None:
            return
        try:
            self.scheduler.node_lost(name, f"instance {instance_id} stopped ({cause})")
        except UnknownNodeError:
            return  # not (or no longer) in the scheduler
        if cause == "terminate":
            self.ended_in_scheduler.append(name)
        else:
            self.taken.add((name, self.scheduler.now))

    def _node_of(self, instance_id: str) -> str | None:
        for node in self.store.nodes():
            if node.instance_id == instance_id:
                return node.name
        record = self.store.instance(instance_id)
        return None if record is None else record.node

    def _run(self, work: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(work)

    def _call(self, work: Callable[[Engine], Coroutine[Any, Any, T]]) -> T | None:
        """The engine does ``work``; None when the control plane died doing it (and has been
        restarted since)."""
        try:
            return self._run(work(self.engine))
        except Crash:
            self._restart()
            return None

    def _restart(
        self, while_down: Callable[[], None] | None = None, crash_in: int | None = None
    ) -> None:
        """A new control plane on the same store file: in-memory state is lost (bursts in
        flight, capacity backoff); recovery finishes what the store says was pending."""
        self.store.close()
        if while_down is not None:
            while_down()
        self.store = CrashingStore.open(self.path)
        self.store.crash_in = crash_in
        self.engine = self._engine()
        pending = self.store.intents(IntentStatus.PENDING)
        try:
            self._run(self.engine.recover())
        except Crash:
            self._restart()  # died again while recovering: the next start recovers it all
            return
        self.store.crash_in = None
        left = self.store.intents(IntentStatus.PENDING)
        assert left == [], f"recovery left intents pending: {left}"
        for intent in pending:
            self._check_carried_out(intent)

    def _check_carried_out(self, before: IntentRecord) -> None:
        """An intent recovery closed as done did what it asked."""
        intent = self.store.intent(before.id)
        assert intent is not None
        states = {node.name: node.state for node in self.store.nodes()}
        if intent.action is IntentAction.BURST:
            assert intent.status is IntentStatus.FAILED, intent
            requested = [
                n.name for n in self.store.nodes(states=[S.REQUESTED]) if n.intent_id == intent.id
            ]
            assert requested == [], f"recovered burst {intent.id} left {requested} requested"
            return
        if intent.status is not IntentStatus.DONE:
            return
        names = [str(n) for n in intent.detail.get("nodes", [])]
        if intent.action is IntentAction.CANCEL:
            burst = str(intent.detail["intent"])
            names = [n.name for n in self.store.nodes() if n.intent_id == burst]
        wanted = {
            IntentAction.DRAIN: {S.DRAINING, S.DRAINED},
            IntentAction.RESUME: {S.ACTIVE},
            IntentAction.TERMINATE: {S.TERMINATING, S.TERMINATED},
            IntentAction.CANCEL: set(S) - NOT_JOINED - {S.JOINING},
        }[intent.action]
        for name in names:
            if name in states:
                assert states[name] in wanted, (
                    f"recovery closed {intent.action} {intent.id} as done, but {name} is "
                    f"{states[name]}"
                )

    def _settle(self) -> None:
        """Restart, recover and reconcile a few passes; then every instance that runs must be
        known to the store and belong to a node that will end it."""
        self._restart()
        for _ in range(SETTLE_PASSES):
            self._run(self.engine.reconcile_once())
        nodes = self.store.nodes()
        requested = [n.name for n in nodes if n.state is S.REQUESTED]
        assert requested == [], f"nodes still requested after recovery: {requested}"
        owners = {n.instance_id: n for n in nodes if n.instance_id}
        known = set(owners) | {r.instance_id for r in self.store.instances()}
        for instance in self.cloud.instances():
            if instance.state in ENDING:
                continue
            iid = instance.instance_id
            assert iid in known, f"{iid} ({instance.state}) runs and the store does not know it"
            owner = owners.get(iid)
            assert owner is not None and owner.state is not S.TERMINATED, (
                f"{iid} ({instance.state}) runs with no live node to end it "
                f"(recorded as {self.store.instance(iid)}; node {owner})"
            )

    # -- helpers ------------------------------------------------------------------------------

    def _request_id(self) -> str:
        self.requests += 1
        return f"r{self.requests}"

    def _nodes(self) -> list[NodeRecord]:
        """The store's nodes in the order they entered it (names carry random ids)."""
        order: dict[str, int] = {}
        for row, move in self.store.transitions_since(0, limit=1_000_000):
            order.setdefault(move.node, row)
        return sorted(self.store.nodes(), key=lambda n: order.get(n.name, 0))

    def _candidates(self, anyone: bool, states: Iterable[State]) -> list[str]:
        wanted = set(states)
        names = [n.name for n in self._nodes() if anyone or n.state in wanted]
        return [*names, ONPREM]

    @staticmethod
    def _pick(names: list[str], picks: list[int]) -> list[str]:
        return list(dict.fromkeys(names[i % len(names)] for i in picks))

    def _states(self) -> dict[str, State]:
        return {node.name: node.state for node in self.store.nodes()}

    def _written(self) -> tuple[object, ...]:
        """Everything a refused request must leave as it was."""
        return self._run(self._written_now())

    async def _written_now(self) -> tuple[object, ...]:
        return (
            len(self.store.transitions_since(0, limit=1_000_000)),
            [(i.id, i.status) for i in self.store.intents()],
            [(r.instance_id, r.node, r.confirmed_terminated) for r in self.store.instances()],
            len(self.store.ledger()),
            len(self.cloud.launch_calls),
            len(self.cloud.terminate_calls),
            [(n.name, n.state, n.reason) for n in await self.scheduler.nodes()],
        )

    def _live(self, spot_only: bool = False) -> list[str]:
        return [
            i.instance_id
            for i in self.cloud.instances()
            if i.state not in ENDING and (i.spot or not spot_only)
        ]

    # -- bursts -------------------------------------------------------------------------------

    @rule(
        pool=st.sampled_from(sorted(POOLS)),
        ensure=st.booleans(),
        n=st.integers(0, 5),
        token=st.sampled_from([None, "a", "b"]),
        then=st.integers(0, 5),
    )
    def burst(self, pool: str, ensure: bool, n: int, token: str | None, then: int) -> None:
        """A burst, and ``then`` passes of the reconcile loop (which bring its nodes up)."""
        # A token names one request: the same token always comes with the same parameters.
        self._burst(pool, ensure, n, f"{token}-{pool}-{ensure}-{n}" if token else None)
        self.reconcile(then)

    @precondition(lambda self: self.last_burst is not None)
    @rule()
    def retry_the_last_burst(self) -> None:
        """The same request again (a client that did not hear the answer)."""
        assert self.last_burst is not None
        self._burst(*self.last_burst)

    @rule(pool=st.sampled_from(sorted(POOLS)), n=st.integers(1, 3), nth=st.integers(1, 2))
    def burst_dies_after_a_launch(self, pool: str, n: int, nth: int) -> None:
        """The control plane dies after the cloud started instances, before it heard so."""
        self.cloud.crash_on_launch(Crash(), nth)
        try:
            self._burst(pool, False, n, None)
        finally:
            self.cloud.disarm_crash()

    @rule(
        pool=st.sampled_from(sorted(POOLS)),
        n=st.integers(1, 3),
        meanwhile=st.sampled_from(["reconcile", "cancel", "terminate"]),
    )
    def something_runs_while_a_burst_launches(self, pool: str, n: int, meanwhile: str) -> None:
        """A slow launch answer: a reconcile pass, a cancel of the burst, or a terminate of
        its nodes runs while the cloud has started the instances and the burst has not heard."""

        async def during(request: LaunchRequest) -> None:
            burst = request.tags[INTENT_TAG]
            if meanwhile == "reconcile":
                seen = await self.engine.reconcile_once()
                adopted = [
                    a
                    for a in seen.actions
                    if isinstance(a, Adopt) and a.instance.tags[INTENT_TAG] == burst
                ]
                assert adopted == [], f"a pass adopted a launching burst's instances: {adopted}"
                return
            names = [n.name for n in self.store.nodes() if n.intent_id == burst]
            before = await self._written_now()
            with pytest.raises(ActionRefused, match="still launching"):
                if meanwhile == "cancel":
                    await self.engine.cancel(burst, request_id=self._request_id(), **WHO)
                else:
                    waiting = [n for n in names if self._states()[n] is S.REQUESTED]
                    await self.engine.terminate(waiting, request_id=self._request_id(), **WHO)
            assert await self._written_now() == before, f"a refused {meanwhile} wrote something"

        self.cloud.while_launching(during)
        try:
            self._burst(pool, False, n, None)
        finally:
            self.cloud.while_launching(None)

    def _burst(
        self, pool: str, ensure: bool, n: int, token: str | None, request_id: str | None = None
    ) -> None:
        request_id = request_id or self._request_id()
        self.last_burst = (pool, ensure, n, token, request_id)
        asked_before = self.store.intent_by_token(token or f"burst:{request_id}") is not None
        before = self._written()
        names_before = set(self._states())
        try:
            result = self._call(
                lambda engine: engine.burst(
                    pool,
                    count=None if ensure else n,
                    ensure=n if ensure else None,
                    request_id=request_id,
                    token=token,
                    **WHO,
                )
            )
        except BurstRefused:
            assert self._written() == before, "a refused burst wrote or launched something"
            return
        if result is None:
            return
        # Its own new nodes: a pass run during its launch may adopt other bursts' orphans.
        new = [
            node.name
            for node in self.store.nodes()
            if node.name not in names_before and node.intent_id == result.intent_id
        ]
        assert result.replayed == asked_before, result
        if result.replayed:
            assert new == [], f"a replayed burst added nodes: {new}"
            assert len(self.cloud.launch_calls) == before[4], "a replayed burst launched"
            return
        assert len(new) == result.wanted and result.launched <= result.wanted, result
        assert set(result.nodes) <= set(new), result

    # -- operations ---------------------------------------------------------------------------

    @rule(
        picks=PICKS,
        anyone=st.booleans(),
        reason=st.sampled_from([PERSON, AUTOMATION]),
        then=THEN,
    )
    def drain(self, picks: list[int], anyone: bool, reason: str, then: int) -> None:
        names = self._pick(self._candidates(anyone, [S.ACTIVE, S.JOINING]), picks)
        rid = self._request_id()
        self._operate(
            lambda e: e.drain(names, reason=reason, request_id=rid, **WHO),
            names,
            {S.DRAINING, S.DRAINED},
        )
        self.reconcile(then)

    @rule(picks=PICKS, anyone=st.booleans(), automation=st.booleans(), then=THEN)
    def resume(self, picks: list[int], anyone: bool, automation: bool, then: int) -> None:
        names = self._pick(self._candidates(anyone, [S.DRAINING, S.DRAINED]), picks)
        rid = self._request_id()
        self._operate(
            lambda e: e.resume(names, request_id=rid, automation=automation, **WHO),
            names,
            {S.ACTIVE},
        )
        self.reconcile(then)

    @rule(picks=PICKS, then=THEN)
    def terminate(self, picks: list[int], then: int) -> None:
        names = self._pick(self._candidates(True, ()), picks)
        rid = self._request_id()
        self._operate(
            lambda e: e.terminate(names, request_id=rid, **WHO),
            names,
            {S.TERMINATING, S.TERMINATED},
        )
        self.reconcile(then)

    @rule(pick=st.integers(0, 63), bogus=st.booleans(), then=THEN)
    def cancel(self, pick: int, bogus: bool, then: int) -> None:
        bursts = [i.id for i in self.store.intents() if i.action is IntentAction.BURST]
        burst = "no-such-burst" if bogus or not bursts else bursts[pick % len(bursts)]
        rid = self._request_id()
        result = self._operate(lambda e: e.cancel(burst, request_id=rid, **WHO), [], set(S))
        if result is not None:
            left = {
                n.name: n.state
                for n in self.store.nodes()
                if n.intent_id == burst and (n.state in NOT_JOINED or n.state is S.JOINING)
            }
            assert left == {}, f"cancelled burst {burst} still has nodes coming up: {left}"
        self.reconcile(then)

    def _operate(
        self,
        work: Callable[[Engine], Coroutine[Any, Any, ActionResult]],
        names: list[str],
        settled: set[State],
    ) -> ActionResult | None:
        before, states = self._written(), self._states()
        try:
            result = self._call(work)
        except ActionRefused:
            assert self._written() == before, "a refused request wrote or called something"
            return None
        except ActionFailed as failed:
            intent = self.store.intent(failed.intent_id)
            assert intent is not None and intent.status is IntentStatus.FAILED, intent
            assert self._states() == states, "a failed request moved nodes"
            return None
        if result is None:
            return None
        for name in names:
            record = self.store.node(name)
            assert record is not None and record.state in settled, (name, record, result)
        return result

    # -- the scheduler ------------------------------------------------------------------------

    @rule(
        nodes=st.integers(1, 2),
        gpus=st.sampled_from([1, 4, 8]),
        duration=st.floats(60.0, 7200.0),
    )
    def submit_a_job(self, nodes: int, gpus: int, duration: float) -> None:
        self.scheduler.submit(JobSpec("train", "bo", nodes, gpus, duration))

    @rule(seconds=st.sampled_from([1.0, 30.0, 600.0, 3600.0, 8000.0]))
    def advance_the_scheduler(self, seconds: float) -> None:
        """Jobs run on (and end); the loop runs once."""
        self.scheduler.advance(seconds)
        self.reconcile(1)

    @rule(pick=st.integers(0, 63))
    def someone_resumes_a_drain_outside_tidectl(self, pick: int) -> None:
        drained = [n.name for n in self._run(self.scheduler.nodes()) if n.drain_set]
        if drained:
            self._run(self.scheduler.resume([drained[pick % len(drained)]]))

    # -- the engine's clock and loop ----------------------------------------------------------

    @rule(passes=st.integers(1, 6))
    def reconcile(self, passes: int) -> None:
        for _ in range(passes):
            if self._call(lambda e: e.reconcile_once()) is None:
                return

    @rule(seconds=st.sampled_from([30.0, 61.0, 130.0, 301.0, 601.0, 901.0, 3601.0, 14401.0]))
    def skip_the_clock(self, seconds: float) -> None:
        """Time passes for the engine (timeouts expire), and the loop runs once."""
        self.clock.now += seconds
        self.reconcile(1)

    @rule(pick=st.integers(0, 63), verdict=st.sampled_from([True, False, None]))
    def admission_gate_says(self, pick: int, verdict: bool | None) -> None:
        names = [n.name for n in self._nodes()]
        if names:
            self.health[names[pick % len(names)]] = verdict

    # -- the cloud ----------------------------------------------------------------------------

    @rule(
        fault=st.sampled_from(["no capacity", "capacity back", "room", "lost answer", "quota"]),
        kind=st.sampled_from(TYPES),
        zone=st.sampled_from([None, "mem-1a", "mem-1b"]),
        room=st.one_of(st.none(), st.integers(0, 3)),
    )
    def plan_a_launch_fault(
        self, fault: str, kind: str, zone: str | None, room: int | None
    ) -> None:
        if fault == "no capacity":
            self.cloud.no_capacity(kind, zone)
        elif fault == "capacity back":
            self.cloud.restore_capacity(kind, zone)
        elif fault == "room":
            self.cloud.room_for(kind, room)
        elif fault == "lost answer":
            self.cloud.lose_launch_answers()
        else:
            self.cloud.fail_launches(QuotaError("the account's vCPU quota is reached"))

    @rule(count=st.integers(1, 2))
    def boots_never_complete(self, count: int) -> None:
        self.cloud.stall_boots(count)

    @precondition(lambda self: self._live())
    @rule(pick=st.integers(0, 63), forget=st.booleans())
    def an_instance_vanishes(self, pick: int, forget: bool) -> None:
        live = self._live()
        self.cloud.vanish(live[pick % len(live)], forget=forget)

    @precondition(lambda self: self._live(spot_only=True))
    @rule(pick=st.integers(0, 63), notice=st.booleans())
    def a_spot_instance_is_reclaimed(self, pick: int, notice: bool) -> None:
        live = self._live(spot_only=True)
        self.cloud.interrupt(live[pick % len(live)], notice=notice)

    # -- crashes ------------------------------------------------------------------------------

    @rule(
        while_down=st.sampled_from(["nothing", "a job", "a resume"]),
        again=st.one_of(st.none(), st.integers(1, 3)),
    )
    def crash(self, while_down: str, again: int | None) -> None:
        """The control plane dies between steps; the world may move before it is back, and
        it may die again while recovering."""

        def meanwhile() -> None:
            if while_down == "a job":
                self.scheduler.submit(JobSpec("eval", "chen", 1, 8, 900.0))
            elif while_down == "a resume":
                drained = [n.name for n in self._run(self.scheduler.nodes()) if n.drain_set]
                if drained:
                    self._run(self.scheduler.resume(drained[:1]))

        self._restart(meanwhile, crash_in=again)

    @rule(writes=st.integers(1, 8), after=st.booleans())
    def die_at_a_store_write(self, writes: int, after: bool) -> None:
        """The control plane will die just before (or just after) its n-th write from now,
        whatever it is doing then."""
        self.store.crash_in = writes
        self.store.crash_after_write = after

    @rule()
    def settle(self) -> None:
        self._settle()

    # -- what must always hold ----------------------------------------------------------------

    @invariant()
    def every_instance_is_tagged_and_its_intent_written(self) -> None:
        for instance in self.cloud.instances():
            tags = instance.tags
            assert tags.get(CLUSTER_TAG) == CLUSTER and tags.get(POOL_TAG) in POOLS, instance
            intent = self.store.intent(tags.get(INTENT_TAG, ""))
            assert intent is not None, f"{instance.instance_id}: no intent {tags}"
            assert intent.action is IntentAction.BURST and intent.pool == tags[POOL_TAG]

    @invariant()
    def no_intent_launches_more_than_it_asked(self) -> None:
        # A burst's own nodes enter as requested; adopted ones (provisioning) are not asks.
        asked: Counter[str | None] = Counter()
        entered: set[str] = set()
        records = {n.name: n for n in self.store.nodes()}
        for _, move in self.store.transitions_since(0, limit=1_000_000):
            if move.before is None and move.node not in entered:
                entered.add(move.node)
                if move.after is S.REQUESTED:
                    asked[records[move.node].intent_id] += 1
        launched = Counter(i.tags[INTENT_TAG] for i in self.cloud.instances())
        for intent, count in launched.items():
            assert count <= asked[intent], f"intent {intent}: {count} instances, {asked[intent]}"

    @invariant()
    def no_two_nodes_share_an_instance(self) -> None:
        owners = Counter(n.instance_id for n in self.store.nodes() if n.instance_id)
        shared = [i for i, count in owners.items() if count > 1]
        assert shared == [], f"instances with more than one node: {shared}"

    @invariant()
    def no_job_ended_early_unless_the_test_took_its_node(self) -> None:
        for job in self.scheduler.finished:
            if job.outcome is not Outcome.COMPLETED:
                assert any((n, job.ended_at) in self.taken for n in job.nodes), job

    @invariant()
    def the_engine_never_ends_an_instance_the_scheduler_lists(self) -> None:
        assert self.ended_in_scheduler == []

    @invariant()
    def every_history_is_a_path_of_the_table(self) -> None:
        for node in self.store.nodes():
            moves = self.store.history(node.name)
            assert moves[0].before is None and moves[0].after in ENTRY[node.kind], moves[0]
            for earlier, move in pairwise(moves):
                assert move.before is earlier.after, (earlier, move)
                assert move.after in TRANSITIONS[node.kind][earlier.after], move
            assert moves[-1].after is node.state, node

    @invariant()
    def billing_nodes_have_one_open_stretch(self) -> None:
        open_stretches = Counter(e.node for e in self.store.ledger() if e.stopped_at is None)
        for node in self.store.nodes():
            billing = node.kind is NodeKind.CLOUD and bills(node.state)
            assert open_stretches[node.name] == int(billing), (node, open_stretches[node.name])

    @invariant()
    def terminated_nodes_instances_are_ending(self) -> None:
        for node in self.store.nodes(states=[S.TERMINATED]):
            if node.instance_id:
                instance = self.cloud.instance(node.instance_id)
                assert instance is None or instance.state in ENDING, (node, instance)

    @invariant()
    def the_scheduler_knows_no_node_before_it_joined(self) -> None:
        states = self._states()
        for sched in self._run(self.scheduler.nodes()):
            if sched.name != ONPREM and sched.state is not SchedState.DOWN:
                assert states.get(sched.name) not in NOT_JOINED, (sched, states.get(sched.name))


def _fast_dir() -> str | None:
    """A RAM-backed folder when there is one: the store fsyncs every intent, and hundreds of
    runs on a loaded disk would spend most of their time there."""
    shm = Path("/dev/shm")
    return str(shm) if shm.is_dir() else None


EngineMachine.TestCase.settings = settings(max_examples=100, stateful_step_count=30)
TestEngineStateMachine = EngineMachine.TestCase


# -- what the machine found, one deterministic repro each ------------------------------------


class Plane:
    """One control plane at a time over a store file, the memory cloud and a sim scheduler."""

    def __init__(self, folder: Path) -> None:
        self.path = folder / "store.sqlite3"
        self.clock = Clock()
        self.cloud = MemoryCloud(clock=self.clock)
        self.scheduler = SimScheduler()
        self.store = CrashingStore.open(self.path)
        self.engine = self._engine()

    def _engine(self) -> Engine:
        return Engine(
            self.store,
            {GPU.name: self.cloud},
            self.scheduler,
            {GPU.name: GPU},
            CLUSTER,
            health=lambda name: True,
            clock=self.clock,
        )

    async def restart(self) -> None:
        """Close the store (the process died), reopen it and recover, as a start does."""
        self.store.close()
        self.store = CrashingStore.open(self.path)
        self.engine = self._engine()
        await self.engine.recover()

    async def reconcile(self, passes: int = SETTLE_PASSES) -> None:
        for _ in range(passes):
            await self.engine.reconcile_once()

    def running_without_a_live_node(self) -> list[str]:
        live = {n.instance_id for n in self.store.nodes() if n.state is not S.TERMINATED}
        return [
            i.instance_id
            for i in self.cloud.instances()
            if i.state not in ENDING and i.instance_id not in live
        ]


async def test_a_crash_between_recording_a_launch_and_binding_it_leaks_no_instance(
    tmp_path: Path,
) -> None:
    plane = Plane(tmp_path)
    # Writes: the intent, the node (requested), the instance; the crash follows the third.
    plane.store.crash_in, plane.store.crash_after_write = 3, True
    with pytest.raises(Crash):
        await plane.engine.burst("gpu", count=1, request_id="r1", actor="ana", frontend="t")
    await plane.restart()
    await plane.reconcile()
    assert plane.running_without_a_live_node() == []


async def test_a_crash_while_adopting_an_orphan_leaks_no_instance(tmp_path: Path) -> None:
    plane = Plane(tmp_path)
    plane.cloud.crash_on_launch(Crash())
    with pytest.raises(Crash):
        await plane.engine.burst("gpu", count=1, request_id="r1", actor="ana", frontend="t")
    await plane.restart()
    # The pass's writes: the burst's unlaunched node closes, then the orphan's instance and
    # node; the crash comes as the second write is made.
    plane.store.crash_in, plane.store.crash_after_write = 2, True
    with pytest.raises(Crash):
        await plane.engine.reconcile_once()
    # The instance and its node are one transaction: the crash left both or neither.
    recorded = {r.instance_id for r in plane.store.instances()}
    assert recorded == {n.instance_id for n in plane.store.nodes() if n.instance_id}
    await plane.restart()
    await plane.reconcile()
    assert plane.running_without_a_live_node() == []


async def test_recovery_carries_out_a_cancel_the_control_plane_stopped_in(
    tmp_path: Path,
) -> None:
    plane = Plane(tmp_path)
    burst = await plane.engine.burst("gpu", count=2, request_id="r1", actor="ana", frontend="t")
    assert burst.intent_id is not None and burst.launched == 2
    plane.store.crash_in = 2  # the cancel's intent is written; it dies before moving a node
    with pytest.raises(Crash):
        await plane.engine.cancel(burst.intent_id, request_id="c1", **WHO)
    await plane.restart()
    states = {n.name: n.state for n in plane.store.nodes()}
    assert set(states.values()) == {S.TERMINATING}, states


async def test_a_node_left_joining_by_a_crash_is_joined_after_the_restart(
    tmp_path: Path,
) -> None:
    plane = Plane(tmp_path)
    burst = await plane.engine.burst("gpu", count=1, request_id="r1", actor="ana", frontend="t")
    (name,) = burst.nodes
    await plane.reconcile(2)  # the cloud shows it pending, then running: bootstrapping
    assert plane.store.node(name).state is S.BOOTSTRAPPING  # type: ignore[union-attr]
    plane.store.crash_in, plane.store.crash_after_write = 1, True  # after the move to joining
    with pytest.raises(Crash):
        await plane.engine.reconcile_once()
    await plane.restart()
    await plane.reconcile(3)
    assert plane.store.node(name).state is S.ACTIVE  # type: ignore[union-attr]
    assert [n.name for n in await plane.scheduler.nodes()] == [name]
