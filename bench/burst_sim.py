"""A 64-node burst in the sim cloud, zero boot delay, to every node ``active``.

Two runs, each against a real store (SQLite, WAL) and the real sim cloud (each instance an SSH
server with its own host key on 127.0.0.1) and sim scheduler:

* **control plane**: the engine alone. The admission gate is taken as passed the moment a
  node is bootstrapping (nothing connects over SSH), so the wall time from the burst call to
  64 ``active`` is the control plane's own overhead: writing the intent and 64 rows, the
  launch call, recording 64 instances, and the reconcile passes (observe, plan, act: 3 moves
  and a scheduler join per node). Goal: **≤ 1 s**.
* **end to end**: the whole ControlPlane as ``tidectl demo`` assembles it — the collector
  connects to each new node over SSH, verifies the host key the sim cloud handed over, deploys
  and starts the agent, and the admission gate waits for its first sample. This adds SSH and
  the agents' start-up, which are not the control plane's; it is shown for scale.

    python bench/burst_sim.py [--nodes 64] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from tidectl.console.config.loader import parse_config
from tidectl.console.config.model import PoolSpec
from tidectl.console.control.assemble import assemble
from tidectl.console.control.caller import Caller, Frontend
from tidectl.console.lifecycle.engine import Engine
from tidectl.console.lifecycle.states import State
from tidectl.console.lifecycle.store import Store
from tidectl.console.providers.sim import SimProvider
from tidectl.console.scheduler.sim import SimScheduler

GOAL_S = 1.0
CLUSTER = "bench"


def pool(nodes: int) -> PoolSpec:
    return PoolSpec(
        name="burst",
        provider="sim",
        region="sim-local",
        site="cloud",
        instance_types=("sim.gpu8",),
        zones=(),
        gpus_per_node=8,
        max_nodes=nodes,
        price_per_hour=None,
        boot_delay_s=0.0,
    )


async def control_plane(folder: Path, nodes: int) -> dict[str, Any]:
    """The engine alone, passes back to back, the admission gate passed at once."""
    spec = pool(nodes)
    with Store.open(folder / "engine.sqlite3") as store:
        async with SimProvider(folder / "cloud", boot_delay_s=0) as cloud:
            engine = Engine(
                store,
                {spec.name: cloud},
                SimScheduler(),
                {spec.name: spec},
                CLUSTER,
                health=lambda name: True,
            )
            started = time.perf_counter()
            result = await engine.burst(
                spec.name, count=nodes, actor="bench", frontend="cli", request_id="b"
            )
            burst_s = time.perf_counter() - started
            passes: list[float] = []
            while True:
                outcome = await engine.reconcile_once()
                passes.append(outcome.took_s)
                states = {n.state for n in store.nodes(pool=spec.name)}
                if states == {State.ACTIVE}:
                    break
                if time.perf_counter() - started > 60:
                    raise RuntimeError(f"not all active after 60 s: {states}")
                # The sim's boot tasks run on this loop: give them their turn.
                await asyncio.sleep(0)
            wall_s = time.perf_counter() - started
    return {
        "launched": result.launched,
        "burst_call_s": round(burst_s, 3),
        "reconcile_passes": len(passes),
        "reconcile_total_s": round(sum(passes), 3),
        "reconcile_max_pass_s": round(max(passes), 3),
        "to_all_active_s": round(wall_s, 3),
        "goal_s": GOAL_S,
        "met": wall_s <= GOAL_S,
    }


async def end_to_end(folder: Path, nodes: int) -> dict[str, Any]:
    """The ControlPlane as the demo runs it: SSH, host keys, agents, the admission gate."""
    (folder / "known_hosts").write_text("")
    text = (
        f'[cluster]\nname = "{CLUSTER}"\n[ssh]\nuser = "t"\nknown_hosts = "known_hosts"\n'
        '[[nodes]]\nnames = "onprem1"\n[scheduler]\nkind = "sim"\n'
    )
    config = replace(parse_config(text, folder / "cluster.toml"), nodes=(), pools=(pool(nodes),))
    plane = await assemble(
        config, store=folder / "plane.sqlite3", in_process_sim=True, interval_s=0.2
    )
    async with plane:
        started = time.perf_counter()
        # As whoever runs the benchmark: the owner of the (role-less) config it wrote.
        result = await plane.burst(Caller.local(Frontend.CLI), "burst", count=nodes)
        progress = await plane.wait(result.nodes, {State.ACTIVE}, timeout_s=300)
        wall_s = time.perf_counter() - started
    reached = sum(1 for s in progress.states.values() if s is State.ACTIVE)
    return {"launched": result.launched, "active": reached, "to_all_active_s": round(wall_s, 2)}


def machine() -> str:
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{platform.machine()}, {os.cpu_count()} CPUs ({model}), {platform.python_version()}"


async def main_async(nodes: int, skip_end_to_end: bool) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="tidectl-bench-burst-") as root:
        folder = Path(root)
        figures: dict[str, Any] = {"nodes": nodes, "machine": machine()}
        figures["control_plane"] = await control_plane(folder, nodes)
        if not skip_end_to_end:
            figures["end_to_end"] = await end_to_end(folder, nodes)
        return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=64)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--skip-end-to-end", action="store_true")
    args = parser.parse_args()
    figures = asyncio.run(main_async(args.nodes, args.skip_end_to_end))
    if args.json:
        json.dump(figures, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        for key, value in figures.items():
            print(f"{key:>16}: {value}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
