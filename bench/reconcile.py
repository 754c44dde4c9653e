"""One reconcile pass of the lifecycle engine over N cloud nodes: observe, plan, act.

A real store (SQLite in WAL mode, in a temporary folder) is seeded through its own API with N
cloud nodes spread over the lifecycle states as a busy cluster has them (most active, some
provisioning, bootstrapping, joining, draining, drained, terminating and failed), plus the
history of nodes already terminated: every transition, instance row, burst intent and
ledger stretch. The cloud and the scheduler are fakes held in memory (``reconcile_world.py``),
on purpose: this measures the control plane's own overhead (the store, the planner, the
engine's bookkeeping), not a cloud's API latency nor Slurm's. The fakes return prepared
objects, so parsing a cloud's or a scheduler's answer is not counted either.

Measured on ``time.perf_counter``, each over ``--passes`` passes after one warm-up pass:

* **steady**: the world already agrees with the store, so a pass finds nothing to move. What
  is left to act on is what a busy cluster always has: terminations the cloud has not
  confirmed yet (retried every pass) and failed nodes with a job still on them (reported).
  Shown whole (``Engine.reconcile_once``) and in parts: ``observe``, ``plan`` (store reads
  and the planner), the two store reads alone (``nodes(live_only=True)``, ``open_instance_ids()``)
  and the pure planner (``reconcile.plan``, records already read).
* **churn**: before each of ``--churn-passes`` passes, ``--churn`` of the nodes (5 %) change
  in the world: instances that booted, nodes that passed the admission gate, the scheduler
  taking or draining nodes, instances lost or reclaimed, and orphan instances to adopt. The
  pass is timed; unmeasured passes then let the cluster settle before the next round.

    python bench/reconcile.py --nodes 1000 --passes 50 [--json] [--profile]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import inspect
import json
import math
import os
import platform
import pstats
import random
import sqlite3
import statistics
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from reconcile_world import POOLS, FakeCloud, FakeScheduler, World, churn, seed  # bench/

from tidectl.console.lifecycle import reconcile
from tidectl.console.lifecycle.engine import Engine, pool_timeouts
from tidectl.console.lifecycle.reconcile import (
    Action,
    Adopt,
    ConfirmTerminated,
    Join,
    Move,
    Observation,
    Report,
    Terminate,
)
from tidectl.console.lifecycle.store import Store
from tidectl.console.providers.base import POOL_TAG

GOAL_MS = 100.0


# -- measuring -------------------------------------------------------------------------------

# Join is asked again every pass until the scheduler takes the node (the engine skips a
# node the scheduler lists already): a retry, like a terminate the cloud has not confirmed.
_CHANGING = (Move, Adopt, ConfirmTerminated)


def changes(actions: Sequence[Action]) -> int:
    """The actions that change the store or the scheduler (not retries, not reports)."""
    return sum(isinstance(action, _CHANGING) for action in actions)


def summary(seconds: Sequence[float]) -> dict[str, float]:
    ordered = sorted(seconds)
    p95 = ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]
    return {
        "median": round(1000 * statistics.median(ordered), 3),
        "p95": round(1000 * p95, 3),
        "max": round(1000 * ordered[-1], 3),
    }


async def timed(passes: int, step: Callable[[], object]) -> list[float]:
    """Seconds per call of ``step`` (awaited when it returns an awaitable)."""
    samples = []
    for _ in range(passes):
        start = time.perf_counter()
        done = step()
        if inspect.isawaitable(done):
            await done
        samples.append(time.perf_counter() - start)
    return samples


async def settle(engine: Engine, passes: int = 10) -> int:
    """Reconcile until a pass changes nothing; returns how many passes that took."""
    for done in range(1, passes + 1):
        if not changes((await engine.reconcile_once()).actions):
            return done
    raise RuntimeError(f"the benchmark's cluster did not settle in {passes} passes")


def pure_planner(engine: Engine, seen: Observation) -> Callable[[], None]:
    """``reconcile.plan`` per pool as ``Engine.plan`` calls it, with the records read once."""
    records = engine.store.open_instance_ids()
    nodes = engine.store.nodes(live_only=True)
    parts = [
        (
            [node for node in nodes if node.pool == pool.name],
            Observation(
                seen.at,
                {k: i for k, i in seen.instances.items() if i.tags.get(POOL_TAG) == pool.name},
                seen.nodes,
            ),
            pool_timeouts(pool),
        )
        for pool in POOLS
    ]

    def step() -> None:
        for pool_nodes, part, pool_timeouts_ in parts:
            reconcile.plan(pool_nodes, records, part, pool_tag=POOL_TAG, timeouts=pool_timeouts_)

    return step


async def measure(
    folder: Path,
    *,
    nodes: int,
    history: int,
    passes: int,
    churn_share: float,
    churn_passes: int,
    seed_value: int = 1,
    profile: cProfile.Profile | None = None,
) -> dict[str, Any]:
    """Seed a cluster in ``folder`` and time its reconcile passes; the numbers in ms."""
    with Store.open(folder / "store.sqlite3") as store:
        world = World(store, FakeCloud(), FakeScheduler(), time.time(), random.Random(seed_value))
        started = time.perf_counter()
        seed(world, nodes, history)
        seed_s = time.perf_counter() - started
        engine = world.engine()
        warmup = await engine.reconcile_once()
        if changes(warmup.actions):
            raise RuntimeError(f"the seeded world does not agree with the store: {warmup}")
        seen = await engine.observe()
        steady = await engine.reconcile_once()
        observe = await timed(passes, engine.observe)
        plan = await timed(passes, lambda: engine.plan(seen))
        read_nodes = await timed(passes, lambda: store.nodes(live_only=True))
        read_instances = await timed(passes, store.open_instance_ids)
        planner = await timed(passes, pure_planner(engine, seen))
        if profile is not None:
            profile.enable()
        cpu_started = time.process_time()
        whole = await timed(passes, engine.reconcile_once)
        cpu_ms = 1000 * (time.process_time() - cpu_started) / passes
        if profile is not None:
            profile.disable()
        churned: list[float] = []
        churn_actions: list[int] = []
        what: Counter[str] = Counter()
        for _ in range(churn_passes):
            what += churn(world, max(1, round(churn_share * nodes)))
            if profile is not None:
                profile.enable()
            start = time.perf_counter()
            result = await engine.reconcile_once()
            churned.append(time.perf_counter() - start)
            if profile is not None:
                profile.disable()
            churn_actions.append(changes(result.actions))
            await settle(engine)
        states = Counter(str(node.state) for node in store.nodes())
        size = sum(path.stat().st_size for path in folder.glob("store.sqlite3*"))
    steady_ms = summary(whole)
    churn_ms = summary(churned) if churned else None
    return {
        "nodes": nodes,
        "terminated_history": history,
        "pools": len(POOLS),
        "passes": passes,
        "seed_s": round(seed_s, 2),
        "store_bytes": size,
        "states_at_end": dict(sorted(states.items())),
        "steady_reconcile_once_ms": steady_ms,
        # CPU time is what the pass costs; on a shared machine the wall clock adds the wait.
        "steady_reconcile_once_cpu_ms_mean": round(cpu_ms, 3),
        "steady_observe_ms": summary(observe),
        "steady_plan_ms": summary(plan),
        "steady_store_nodes_ms": summary(read_nodes),
        "steady_store_open_instances_ms": summary(read_instances),
        "steady_pure_planner_ms": summary(planner),
        "steady_actions_per_pass": {
            "terminate_retries": sum(isinstance(a, Terminate) for a in steady.actions),
            "join_retries": sum(isinstance(a, Join) for a in steady.actions),
            "reports": sum(isinstance(a, Report) for a in steady.actions),
            "changes": changes(steady.actions),
        },
        "churn_passes": churn_passes,
        "churn_nodes_per_pass": max(1, round(churn_share * nodes)) if churn_passes else 0,
        "churn_reconcile_once_ms": churn_ms,
        "churn_changes_per_pass": churn_actions,
        "churn_kinds": dict(sorted(what.items())),
        "goal": f"reconcile_once <= {GOAL_MS:.0f} ms (steady p95 and every churn pass)",
        "met": steady_ms["p95"] <= GOAL_MS and (churn_ms is None or churn_ms["max"] <= GOAL_MS),
    }


def machine() -> dict[str, str]:
    model = platform.processor() or "unknown"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "machine": f"{platform.node()} {platform.machine()}, {os.cpu_count()} CPUs ({model})",
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "sqlite": sqlite3.sqlite_version,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=1000, help="live cloud nodes")
    parser.add_argument(
        "--history", type=int, default=None, help="terminated nodes (default: nodes / 5)"
    )
    parser.add_argument("--passes", type=int, default=50, help="steady passes timed")
    parser.add_argument("--churn", type=float, default=0.05, help="share of nodes per churn")
    parser.add_argument("--churn-passes", type=int, default=5)
    parser.add_argument("--seed", type=int, default=1, help="for the random spread")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--profile", action="store_true", help="print a cProfile of the passes")
    args = parser.parse_args()
    if args.nodes < 1 or args.passes < 1:
        parser.error("--nodes and --passes must be at least 1")
    profile = cProfile.Profile() if args.profile else None
    with tempfile.TemporaryDirectory(prefix="tidectl-bench-") as tmp:
        result = asyncio.run(
            measure(
                Path(tmp),
                nodes=args.nodes,
                history=args.nodes // 5 if args.history is None else args.history,
                passes=args.passes,
                churn_share=args.churn,
                churn_passes=args.churn_passes,
                seed_value=args.seed,
                profile=profile,
            )
        )
    result.update(machine())
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        for key, value in result.items():
            print(f"{key:>34}: {value}")
    if profile is not None:
        pstats.Stats(profile).sort_stats("tottime").print_stats(25)


if __name__ == "__main__":
    main()
