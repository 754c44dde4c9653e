"""The control plane as a real process for the kill -9 tests (``test_crash_kill9.py``).

Run from the repository root::

    python -m tests.console.lifecycle.crash_driver burst|reconcile \\
        --store PATH --scheduler PATH --endpoint URL

Everything it keeps survives the process: the store (SQLite), the scheduler (a JSON file,
``tests/fakes/file_scheduler.py``) and the cloud (the moto EC2 server at ``--endpoint``).

``burst``: recover, burst 16 nodes with a fixed request id and token, then reconcile until
every node has settled (or the deadline passes). Started with ``TIDECTL_FAILPOINT`` set, it
dies at that point (``console/lifecycle/failpoints.py``).
``reconcile``: recover, then exactly ONE reconcile pass, as a restarted control plane does.

Either prints one JSON line on stdout: what recovery said, the pass's actions and reports,
and every node's state and instance.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any, Final

from tests.fakes.aws_env import DUMMY, REGION
from tests.fakes.file_scheduler import FileScheduler
from tidectl.console.config.model import PoolSpec
from tidectl.console.lifecycle.engine import Engine, ReconcileResult
from tidectl.console.lifecycle.states import State
from tidectl.console.lifecycle.store import Store
from tidectl.console.providers.aws import AwsProvider

CLUSTER: Final = "crashlab"
BURST_SIZE: Final = 16
REQUEST_ID: Final = "crash-burst-1"
TOKEN: Final = "crash-burst-token-1"
POOL: Final = PoolSpec(
    name="h100",
    provider="aws",
    region=REGION,
    site="cloud",
    instance_types=("p5.48xlarge",),
    zones=(),
    gpus_per_node=8,
    max_nodes=BURST_SIZE,
    price_per_hour=98.32,
    image_id="ami-12c6146b",  # any id: moto accepts unknown AMIs
)
#: States a node passes through on its way in or out; a burst has settled when none is left.
UNSETTLED: Final = frozenset(
    {
        State.REQUESTED,
        State.PROVISIONING,
        State.BOOTSTRAPPING,
        State.JOINING,
        State.TERMINATING,
    }
)


def build(store: Store, scheduler_path: Path, endpoint: str) -> Engine:
    provider = AwsProvider(REGION, endpoint_url=endpoint, credentials=DUMMY)

    def healthy(name: str) -> bool:
        # moto's instances run no agent to ask, so this gate passes every node that has an
        # instance: a node only reaches bootstrapping (where the gate is asked) once the
        # provider says its instance runs. The SSH and agent path of the gate is tested
        # against the sim provider (test_bootstrap.py, the assemble tests).
        record = store.node(name)
        return record is not None and record.instance_id is not None

    return Engine(
        store,
        {POOL.name: provider},
        FileScheduler(scheduler_path),
        {POOL.name: POOL},
        CLUSTER,
        health=healthy,
    )


async def burst(engine: Engine, deadline_s: float) -> dict[str, Any]:
    recovered = await engine.recover()
    result = await engine.burst(
        POOL.name,
        count=BURST_SIZE,
        actor="crash-test",
        frontend="test",
        request_id=REQUEST_ID,
        token=TOKEN,
    )
    deadline = time.monotonic() + deadline_s
    passes: list[ReconcileResult] = []
    while time.monotonic() < deadline:
        passes.append(await engine.reconcile_once())
        if not any(node.state in UNSETTLED for node in engine.store.nodes()):
            break
    return {
        "recovered": recovered,
        "launched": result.launched,
        "replayed": result.replayed,
        "intent_id": result.intent_id,
        "passes": len(passes),
        "reports": [r.sentence for one in passes for r in one.reports],
    }


async def reconcile(engine: Engine) -> dict[str, Any]:
    recovered = await engine.recover()
    result = await engine.reconcile_once()
    return {
        "recovered": recovered,
        "actions": [type(a).__name__ for a in result.actions],
        "reports": [r.sentence for r in result.reports],
    }


def nodes_of(store: Store) -> dict[str, dict[str, str | None]]:
    return {
        node.name: {"state": str(node.state), "instance_id": node.instance_id}
        for node in store.nodes()
    }


async def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="crash_driver")
    parser.add_argument("mode", choices=["burst", "reconcile"])
    parser.add_argument("--store", type=Path, required=True)
    parser.add_argument("--scheduler", type=Path, required=True)
    parser.add_argument("--endpoint", required=True)
    parser.add_argument("--deadline-s", type=float, default=20.0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    with Store.open(args.store) as store:
        engine = build(store, args.scheduler, args.endpoint)
        if args.mode == "burst":
            summary = await burst(engine, args.deadline_s)
        else:
            summary = await reconcile(engine)
        summary |= {"mode": args.mode, "nodes": nodes_of(store)}
    print(json.dumps(summary), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1:])))
