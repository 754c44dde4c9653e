"""The lifecycle tests' world: a store on disk, the sim cloud (instances boot into real sim
nodes on 127.0.0.1), the sim scheduler, and an admission gate the test controls."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

from tidectl.console.config.model import PoolSpec
from tidectl.console.lifecycle.engine import Engine
from tidectl.console.lifecycle.states import State
from tidectl.console.lifecycle.store import Store
from tidectl.console.providers.base import CLUSTER_TAG, Instance, Provider
from tidectl.console.providers.sim import SimProvider
from tidectl.console.scheduler.sim import SimScheduler

CLUSTER = "c1"
POOL = PoolSpec(
    name="gpu",
    provider="sim",
    region="sim-local",
    site="cloud",
    instance_types=("sim.gpu8", "sim.gpu8b"),
    zones=(),
    gpus_per_node=8,
    max_nodes=8,
    price_per_hour=None,
    boot_delay_s=0.0,
)
S = State


class Clock:
    """The store's clock: the wall clock, plus whatever a test skips ahead."""

    def __init__(self) -> None:
        self.skipped = 0.0

    def __call__(self) -> float:
        return time.time() + self.skipped


@dataclass
class World:
    store: Store
    cloud: SimProvider
    scheduler: SimScheduler
    clock: Clock
    healthy: dict[str, bool | None] = field(default_factory=dict)
    default_health: bool | None = True

    def engine(self, pool: PoolSpec = POOL, provider: Provider | None = None) -> Engine:
        return Engine(
            self.store,
            {pool.name: provider or self.cloud},
            self.scheduler,
            {pool.name: pool},
            CLUSTER,
            health=lambda name: self.healthy.get(name, self.default_health),
            clock=self.clock,
        )

    async def instances(self) -> list[Instance]:
        return await self.cloud.describe({CLUSTER_TAG: CLUSTER})

    def states(self) -> dict[str, State]:
        return {node.name: node.state for node in self.store.nodes()}


async def settle(
    engine: Engine, world: World, want: Mapping[str, State], passes: int = 200
) -> None:
    """Reconcile until the named nodes are in the wanted states (boots take a moment)."""
    for _ in range(passes):
        await engine.reconcile_once()
        if all(world.states().get(name) == state for name, state in want.items()):
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"nodes did not settle: {world.states()} (wanted {dict(want)})")
