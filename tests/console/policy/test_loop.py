"""The policy loop end to end in the sim, on a skipped clock: a real store, the sim cloud's
instances, the sim scheduler and a fleet fed the agents' real wire records — GPUs busy while
the job runs on a node, idle after. A training job arrives and waits; the loop bursts 4 nodes
through the ControlPlane; the job runs and finishes; the nodes idle, are drained, then
terminated; the burst's ledger adds up (node-hours x price == spend). Every step is the
actor ``policy``, audited, with the rule's reason in each node's history."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.console.lifecycle.world import POOL, World
from tests.console.test_health import FakeClock, SimFeed
from tidectl.console.audit import AuditLog
from tidectl.console.audit.verify import read
from tidectl.console.config.loader import parse_config
from tidectl.console.config.model import Budget, NodeSpec, PolicySettings, PoolPolicy
from tidectl.console.control.caller import Caller, Frontend
from tidectl.console.control.errors import Refused
from tidectl.console.control.plane import ControlPlane
from tidectl.console.fleet import Fleet
from tidectl.console.lifecycle.states import State
from tidectl.console.policy.loop import POLICY, PolicyLoop
from tidectl.console.policy.rules import Burst, Drain, Terminate
from tidectl.console.scheduler.workload import JobSpec
from tidectl.console.thresholds import HealthThresholds

PRICE = 24.0
TRAINING = replace(
    POOL,
    price_per_hour=PRICE,
    policy=PoolPolicy(
        burst_on_pressure=True,
        pending_for_s=60.0,
        cooldown_s=600.0,
        idle_drain_after_s=900.0,
        idle_terminate_after_s=300.0,
    ),
)


class Site:
    """The plane, its policy loop, and the clocks a test moves together."""

    def __init__(self, world: World, folder: Path, budgets: tuple[Budget, ...] = ()) -> None:
        (folder / "known_hosts").write_text("")
        text = '[cluster]\nname = "c1"\n[ssh]\nuser = "t"\nknown_hosts = "known_hosts"\n'
        text += '[[nodes]]\nnames = "gpu[1-2]"\n'
        config = parse_config(text, folder / "cluster.toml")
        config = replace(
            config, pools=(TRAINING,), budgets=budgets, policies=PolicySettings(True, 30.0)
        )
        self.world = world
        self.fleet_clock = FakeClock()
        self.fleet = Fleet((), HealthThresholds(), clock=self.fleet_clock)
        self.feeds: dict[str, SimFeed] = {}
        self.audit = AuditLog(folder / "audit.jsonl")
        self.plane = ControlPlane(
            config,
            world.store,
            world.engine(TRAINING),
            fleet=self.fleet,
            scheduler=world.scheduler,
            audit=self.audit,
        )
        self.loop = PolicyLoop(self.plane)

    def skip(self, seconds: float) -> None:
        self.world.clock.skipped += seconds
        self.world.scheduler.advance(seconds)
        self.fleet_clock.advance(seconds)

    def feed(self, busy: set[str]) -> None:
        """A fresh sample from every live cloud node: its GPUs at 90 % if busy, else 0 %."""
        for record in self.plane.nodes(live_only=True):
            if record.name not in self.feeds:
                self.fleet.add(NodeSpec(record.name, "127.0.0.1", 22, "cloud", "t"))
                self.feeds[record.name] = SimFeed(self.fleet, record.name, self.fleet_clock)
                self.feeds[record.name].start()
            util = 90 if record.name in busy else 0

            def set_util(sample: dict[str, Any], util: int = util) -> None:
                for gpu in sample["probes"]["gpu"]["gpus"]:
                    gpu["util_pct"] = util

            self.feeds[record.name].send(set_util)

    async def step(self, seconds: float, busy: set[str] = frozenset()) -> list[object]:
        """Time passes; the world is read; the loop passes once."""
        self.skip(seconds)
        await self.plane.reconcile_now()
        self.feed(set(busy))
        return [done.decision for done in await self.loop.pass_once()]

    def states(self) -> dict[str, State]:
        return {r.name: r.state for r in self.plane.nodes(TRAINING.name)}


@pytest.fixture
def site(world: World, tmp_path: Path) -> Iterator[Site]:
    made = Site(world, tmp_path)
    yield made
    made.audit.close()


async def test_a_job_bursts_runs_finishes_and_its_capacity_drains_and_ends(site: Site) -> None:
    world = site.world
    world.scheduler.submit(JobSpec("llama-ft", "ana", 4, 8, duration_s=1800.0))
    assert await site.step(1) == []  # seen waiting, not for long enough
    [burst] = await site.step(60)
    assert isinstance(burst, Burst) and burst.count == 4
    names = sorted(site.states())
    assert len(names) == 4

    for _ in range(300):  # boot (the sim's servers start for real), admit, join
        await site.step(1)
        if set(site.states().values()) == {State.ACTIVE}:
            break
        await asyncio.sleep(0.02)
    assert set(site.states().values()) == {State.ACTIVE}, site.states()
    await site.step(1)
    snapshot = site.plane.scheduler_snapshot()
    assert snapshot is not None
    assert sorted(n for j in snapshot.jobs for n in j.nodes) == names  # the job runs there

    # While it runs, busy GPUs: nothing is drained, however long.
    for _ in range(6):
        assert await site.step(300, busy=set(names)) == []
    # It ends (1800 s); the GPUs go quiet. 15 min idle later, each node is drained...
    await site.step(60)
    snapshot = site.plane.scheduler_snapshot()
    assert snapshot is not None and snapshot.jobs == ()
    drains: list[object] = []
    for _ in range(31):
        drains += await site.step(30)
    assert sorted(d.node for d in drains if isinstance(d, Drain)) == names  # type: ignore[union-attr]
    await site.step(1)
    assert set(site.states().values()) == {State.DRAINED}
    # ...and terminated once it stayed empty for the grace.
    ends: list[object] = []
    for _ in range(11):
        ends += await site.step(30)
    assert sorted(e.node for e in ends if isinstance(e, Terminate)) == names  # type: ignore[union-attr]
    for _ in range(300):
        await site.step(1)
        if set(site.states().values()) == {State.TERMINATED}:
            break
        await asyncio.sleep(0.02)
    assert set(site.states().values()) == {State.TERMINATED}
    assert [i for i in await world.instances() if i.state != "terminated"] == []

    # The burst's ledger adds up: node-hours x price is what it spent.
    entries = [e for e in world.store.ledger() if e.node in names]
    assert len(entries) == 4 and all(e.stopped_at is not None for e in entries)
    node_hours = sum((e.stopped_at or 0) - e.started_at for e in entries) / 3600
    intent = entries[0].intent_id
    spent = world.store.spend(intent_id=intent, until=world.clock())
    assert spent == pytest.approx(node_hours * PRICE)
    assert 4 * (1800 + 900) / 3600 < node_hours < 4 * (1800 + 900 + 300 + 600) / 3600

    # Every step was the policy's, audited, with its rule in the nodes' history.
    done = [r for r in read(site.audit.path) if r.actor == "policy"]
    assert {(r.action, r.frontend) for r in done} == {
        ("burst", "service"),
        ("drain", "service"),
        ("terminate", "service"),
    }
    reasons = [m.reason for m in world.store.history(names[0])]
    assert any("policy: pressure: 32 GPU(s) in 1 job(s) waiting" in r for r in reasons)
    drained = "drain asked by policy: policy: idle: no jobs and every GPU below 5% for 15 min"
    assert drained in reasons
    ended = [r for r in reasons if r.startswith("terminate asked by policy")]
    assert ended == [
        "terminate asked by policy: policy: drained by the policy and empty for 5 min "
        "(policy: idle: no jobs and every GPU below 5% for 15 min)"
    ]


async def test_a_dry_run_decides_and_does_nothing(site: Site) -> None:
    site.loop.dry_run = True
    site.world.scheduler.submit(JobSpec("llama-ft", "ana", 2, 8, duration_s=600.0))
    await site.step(1)
    [burst] = await site.step(60)
    assert isinstance(burst, Burst) and burst.count == 2
    assert site.states() == {}
    assert site.plane.reports[-1].startswith("policy pressure (dry run) would burst 2 into gpu")


async def test_only_the_policy_acts_as_automation_and_only_when_enabled(
    site: Site, world: World
) -> None:
    impostor = Caller("root", Frontend.SERVICE)
    with pytest.raises(Refused, match="automation acts only as the policy loop"):
        await site.plane.burst(impostor, "gpu", count=1)
    site.plane.config = replace(site.plane.config, policies=PolicySettings(enabled=False))
    with pytest.raises(Refused, match="the policy loop is turned off"):
        await site.plane.burst(POLICY, "gpu", count=1)
    assert world.store.nodes() == []


async def test_a_budget_refuses_what_would_pass_it_and_when_reached_drains_the_pool(
    world: World, tmp_path: Path
) -> None:
    # Noon UTC, whatever time the suite runs: the day's budget must not roll over mid-test.
    world.clock.skipped = _next_noon() - time.time()
    site = Site(world, tmp_path, budgets=(Budget(30.0, pool="gpu"),))
    ana = Caller("root", Frontend.CLI)  # no [roles]: root is an admin
    with pytest.raises(Refused) as refused:
        await site.plane.burst(ana, "gpu", count=2)
    assert str(refused.value).startswith(
        "a burst of 2 node(s) at $24.00/h into gpu would pass pool gpu's daily budget of "
        "$30.00 by $18.00 within its first hour"
    )
    assert "at most 1 node(s) fit" in str(refused.value)
    assert world.store.nodes() == [] and await world.instances() == []  # no provider call
    await site.plane.burst(ana, "gpu", count=1)
    for _ in range(300):
        await site.step(1)
        if set(site.states().values()) == {State.ACTIVE}:
            break
        await asyncio.sleep(0.02)
    (name,) = site.states()
    # Busy all along; after an hour and a quarter at $24/h, $30 is spent: the pool drains.
    decided: list[object] = []
    while not decided:
        decided += await site.step(480, busy={name})
    assert [(type(d).__name__, d.rule) for d in decided] == [("Warn", "budget")]
    [notice] = world.store.notices(0)  # `tidectl events` lists it
    assert (notice.kind, notice.pool, notice.actor) == ("budget-warning", "gpu", "policy")
    assert notice.sentence.startswith("budget warning: pool gpu's daily budget of $30.00: $")
    # A restarted service (the loop's memory gone) does not warn again in the same period.
    site.loop = PolicyLoop(site.plane)
    assert await site.step(1, busy={name}) == []
    assert len(world.store.notices(0)) == 1
    for _ in range(10):
        decided += await site.step(480, busy={name})
        if len(decided) > 1:
            break
    assert [(type(d).__name__, d.rule) for d in decided] == [
        ("Warn", "budget"),
        ("Drain", "budget"),
    ]
    assert site.plane.reports[-1].startswith(
        f"policy budget: drain {name} (policy: budget: pool gpu's daily budget of $30.00 reached)"
    )


def _next_noon() -> float:
    today = datetime.now(UTC).replace(hour=12, minute=0, second=0, microsecond=0)
    return (today + timedelta(days=1)).timestamp()
