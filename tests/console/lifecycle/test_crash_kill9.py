"""The control plane is killed with SIGKILL at each step of a 16-node burst; restarted, ONE
reconcile pass must leave no instance untracked, none launched twice, and no node with a job
terminated.

Real processes throughout: the control plane (``crash_driver.py``) is a child process that
kills itself at a failpoint (``TIDECTL_FAILPOINT``), the cloud is the moto EC2 server behind
the fault proxy, the store is its SQLite file, and the scheduler is a JSON file that outlives
the kill, so a job placed on a node that had joined is still there for the restart to see.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import pytest

from tests.console.lifecycle.crash_driver import BURST_SIZE, CLUSTER, TOKEN
from tests.fakes.aws_env import DUMMY, REGION
from tests.fakes.ec2_faults import Ec2FaultProxy
from tests.fakes.file_scheduler import FileScheduler, place_job
from tidectl.console.lifecycle.failpoints import ENV
from tidectl.console.lifecycle.states import State
from tidectl.console.lifecycle.store import Store
from tidectl.console.providers.aws import AwsProvider
from tidectl.console.providers.base import CLUSTER_TAG, Instance, InstanceState

ROOT: Final = Path(__file__).resolve().parents[3]
DRIVER_TIMEOUT_S: Final = 60.0


@dataclass(frozen=True)
class Expect:
    """What the crash left at this point: how many instances, how many nodes had joined."""

    instances: int
    joined: int


POINTS: Final = {
    "burst.before-launch": Expect(instances=0, joined=0),
    "burst.after-launch": Expect(instances=BURST_SIZE, joined=0),
    "reconcile.bootstrapping": Expect(instances=BURST_SIZE, joined=0),
    "reconcile.joining": Expect(instances=BURST_SIZE, joined=1),
}


@dataclass(frozen=True)
class Run:
    returncode: int
    stdout: str
    stderr: str

    def summary(self) -> dict[str, Any]:
        assert self.returncode == 0, self.stderr
        parsed: dict[str, Any] = json.loads(self.stdout.strip().splitlines()[-1])
        return parsed


async def _drive(mode: str, tmp: Path, endpoint: str, failpoint: str | None = None) -> Run:
    env = {k: v for k, v in os.environ.items() if k != ENV}  # pinned to loopback (aws_env)
    if failpoint is not None:
        env[ENV] = failpoint
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.console.lifecycle.crash_driver",
        mode,
        "--store",
        str(tmp / "store.sqlite3"),
        "--scheduler",
        str(tmp / "scheduler.json"),
        "--endpoint",
        endpoint,
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(child.communicate(), DRIVER_TIMEOUT_S)
    except TimeoutError:
        child.kill()  # our own child, by its handle
        await child.wait()
        raise
    assert child.returncode is not None
    return Run(child.returncode, out.decode(), err.decode())


async def _instances(provider: AwsProvider) -> dict[str, Instance]:
    return {i.instance_id: i for i in await provider.describe({CLUSTER_TAG: CLUSTER})}


def _tracked(store_path: Path) -> tuple[set[str], list[str]]:
    """The instance ids the store knows (instance rows and nodes), and the nodes' ids as
    listed (one per live node that has one, so a duplicate shows twice)."""
    with Store.open(store_path) as store:
        rows = {record.instance_id for record in store.instances()}
        by_node = [
            node.instance_id
            for node in store.nodes()
            if node.instance_id and node.state is not State.TERMINATED
        ]
    return rows | set(by_node), by_node


def _states(store_path: Path) -> dict[str, tuple[State, str | None]]:
    with Store.open(store_path) as store:
        return {node.name: (node.state, node.instance_id) for node in store.nodes()}


@pytest.mark.slow
@pytest.mark.parametrize("point", list(POINTS))
async def test_one_reconcile_pass_after_a_kill_9_mid_burst_tracks_all_and_kills_no_job(
    point: str, ec2: Ec2FaultProxy, tmp_path: Path
) -> None:
    expect = POINTS[point]
    provider = AwsProvider(REGION, endpoint_url=ec2.url, credentials=DUMMY)
    scheduler = FileScheduler(tmp_path / "scheduler.json")

    crashed = await _drive("burst", tmp_path, ec2.url, failpoint=point)

    assert crashed.returncode == -signal.SIGKILL, crashed.stderr
    assert f"failpoint {point}: SIGKILL" in crashed.stderr  # killed there, not anywhere else
    launched = await _instances(provider)
    assert len(launched) == expect.instances
    joined = [node.name for node in await scheduler.nodes()]
    assert len(joined) == expect.joined
    # A job starts on every node that had joined, while the control plane is down.
    for number, name in enumerate(joined, start=1):
        place_job(scheduler.path, str(number), [name], gpus_per_node=8)

    restarted = (await _drive("reconcile", tmp_path, ec2.url)).summary()

    instances = await _instances(provider)
    tracked, by_node = _tracked(tmp_path / "store.sqlite3")
    running = {i for i, instance in instances.items() if instance.state is InstanceState.RUNNING}
    alive = {
        i for i, instance in instances.items() if instance.state is not InstanceState.TERMINATED
    }
    assert alive - tracked == set(), f"untracked after one pass: {restarted}"
    assert len(instances) <= BURST_SIZE
    assert len(ec2.requests("RunInstances")) == (1 if expect.instances else 0)
    assert [i for i, n in Counter(by_node).items() if n > 1] == []
    # Every instance is wanted (adopted, or its node carries on): the restart ended none.
    assert ec2.requests("TerminateInstances") == []
    assert running == set(launched)
    states = _states(tmp_path / "store.sqlite3")
    jobs = {job.nodes[0]: job.id for job in await scheduler.jobs()}
    assert len(jobs) == expect.joined
    for name in jobs:
        state, instance_id = states[name]
        # The pass saw the scheduler take the node: active, and its instance still runs.
        assert state is State.ACTIVE, restarted
        assert instance_id in running

    finished = (await _drive("burst", tmp_path, ec2.url)).summary()

    assert finished["replayed"], f"the token {TOKEN} launched again: {finished}"
    assert set(await _instances(provider)) == set(launched)
    assert len(ec2.requests("RunInstances")) == (1 if expect.instances else 0)
    assert ec2.requests("TerminateInstances") == []
    ended = {name: state for name, (state, _) in _states(tmp_path / "store.sqlite3").items()}
    # Settled: a node per instance active, every other (never launched) closed.
    assert set(ended.values()) <= {State.ACTIVE, State.TERMINATED}, ended
    assert list(ended.values()).count(State.ACTIVE) == expect.instances, ended
    assert {job.nodes[0]: job.id for job in await scheduler.jobs()} == jobs
