"""What the cost tests share: a real store's cloud nodes walked through their lifecycle at
chosen times (the ledger follows the moves, as in production), and a real Fleet that hears
GPU utilisations the test picks."""

from __future__ import annotations

from tidectl.console import schema
from tidectl.console.config.model import NodeSpec, PoolSpec
from tidectl.console.fleet import Fleet
from tidectl.console.lifecycle.records import IntentAction, IntentStatus
from tidectl.console.lifecycle.states import NodeKind, State
from tidectl.console.lifecycle.store import Store
from tidectl.console.model import LinkState

HOUR = 3600.0
POOL = PoolSpec(
    name="h100",
    provider="sim",
    region="sim-local",
    site="cloud",
    instance_types=("sim.gpu8",),
    zones=(),
    gpus_per_node=8,
    max_nodes=8,
    price_per_hour=24.0,
)
_UP = (State.PROVISIONING, State.BOOTSTRAPPING, State.JOINING, State.ACTIVE)


class Clock:
    """Wall-clock seconds that move only when the test says so."""

    def __init__(self, start: float) -> None:
        self.t = start

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


def burst(
    store: Store,
    pool: str,
    at: float,
    *,
    actor: str = "alice",
    token: str = "t1",
    done: bool = True,
) -> str:
    """A burst intent written at ``at`` (and ``done``: launched); returns its id."""
    intent = store.add_intent(
        token=token,
        action=IntentAction.BURST,
        pool=pool,
        actor=actor,
        frontend="cli",
        request_id=f"req-{token}",
        at=at,
        count=1,
    )
    if done:
        store.set_intent_status(intent.id, IntentStatus.DONE, at=at)
    return intent.id


def launch(
    store: Store, name: str, intent: str, price: float, at: float, *, pool: str = "h100"
) -> None:
    """``name`` requested by ``intent`` and brought to active at ``at`` (billing from then)."""
    who = {"actor": "alice", "request_id": "r"}
    store.add_node(
        name, NodeKind.CLOUD, pool, State.REQUESTED, at, reason="burst", intent_id=intent, **who
    )
    for state in _UP:
        price_here = price if state is State.PROVISIONING else None
        store.transition(name, state, reason="up", at=at, price_per_hour=price_here, **who)


def end(store: Store, name: str, at: float, *, reason: str, actor: str) -> None:
    """Drain ``name`` at ``at`` for ``reason`` (by ``actor``) and terminate it at once."""
    store.transition(name, State.DRAINING, reason=reason, actor=actor, request_id="r", at=at)
    for state in (State.DRAINED, State.TERMINATING, State.TERMINATED):
        store.transition(name, state, reason="ending", actor="reconcile", request_id="r", at=at)


def spec(name: str) -> NodeSpec:
    return NodeSpec(name=name, address="127.0.0.1", port=22, site="cloud", user="t")


def hear(fleet: Fleet, name: str, *utils: float | None, seq: int = 1) -> None:
    """``name``'s agent streams a sample whose GPUs are at ``utils`` percent."""
    if name not in fleet.nodes:
        fleet.add(spec(name))
    fleet.on_link(name, LinkState.STREAMING)
    gpus = [schema.Gpu(index=i, util_pct=u) for i, u in enumerate(utils)]
    sample = schema.Sample(
        schema="1.0", seq=seq, ts=0.0, probes=schema.Probes(gpu=schema.GpuSample(gpus=gpus))
    )
    fleet.on_sample(name, sample)
