"""Slurm's power saving bursting through tidectl, end to end, against a real Slurm.

slurmctld runs the repo's own wrapper (examples/slurm/tidectl-slurm, linked as tidectl-resume,
tidectl-suspend and tidectl-resume-fail) as its ResumeProgram, SuspendProgram and
ResumeFailProgram; the wrapper runs ``tidectl slurm ...`` as a real process, which hands the
work to a tidectl service listening in this test (a real Service over a real ControlPlane: a
store on disk, the sim cloud, the slurm scheduler).

* A job for a powered-down CLOUD node → Slurm calls ``tidectl slurm resume`` → the sim cloud
  launches → the node's slurmd registers → the job runs → after SuspendTime Slurm calls
  ``tidectl slurm suspend`` → the instance is terminated and the ledger closed.
* A node whose slurmd never registers → ResumeTimeout → ``tidectl slurm resume-fail`` → the
  node is failed with the reason and its instance terminated.
* An operator's burst powers the node up; a job runs on it; a drain lets the job finish while
  terminate is refused, then terminate powers it down — zero jobs killed — and Slurm's power
  saving later launches the name again.

The one piece of glue: a sim instance is not a machine. The pool's join command (which on a
real node would start its slurmd over SSH) runs on this machine instead (``RunsHere``), and a
terminated instance's slurmd is stopped with it (``EndsSlurmd``); when to run it — once
Slurm's power-up is under way — is the engine's own decision.
"""

from __future__ import annotations

import asyncio
import os
import shlex
import shutil
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import replace
from pathlib import Path

import pytest

from tests.console.lifecycle.world import CLUSTER, POOL
from tests.console.linkers import Bookkeeping
from tests.console.roles import TEST_ROLES
from tests.harness.slurm import PowerSaving, SlurmCluster, unavailable_reason
from tidectl.console.config.loader import load_config
from tidectl.console.control.caller import Caller, Frontend
from tidectl.console.control.errors import Refused
from tidectl.console.control.plane import ControlPlane
from tidectl.console.lifecycle.engine import Engine
from tidectl.console.lifecycle.states import State
from tidectl.console.lifecycle.store import Store
from tidectl.console.providers.sim import SimProvider
from tidectl.console.scheduler.slurm import SlurmScheduler
from tidectl.console.server.service import Service

REPO = Path(__file__).resolve().parents[3]
WRAPPER = REPO / "examples" / "slurm" / "tidectl-slurm"
FIRST_PORT = 17301  # clear of the other Slurm fixtures' blocks (17001, 17201)
POWER_NAMES = ("tidectl-resume", "tidectl-suspend", "tidectl-resume-fail")
S = State


def _install_wrapper(folder: Path, config: Path) -> dict[str, Path]:
    """The example wrapper, pointed at this checkout's tidectl and the test's config (Slurm
    passes no environment to set them by), linked under its three names."""
    tidectl = Path(sys.executable).parent / "tidectl"
    text = WRAPPER.read_text()
    text = text.replace("${TIDECTL:-/usr/local/bin/tidectl}", str(tidectl))
    text = text.replace("${TIDECTL_CONFIG:-/etc/tidectl/cluster.toml}", str(config))
    assert str(tidectl) in text and str(config) in text, "the wrapper's defaults moved"
    script = folder / "tidectl-slurm"
    script.write_text(text)
    script.chmod(0o755)
    for name in POWER_NAMES:
        (folder / name).symlink_to(script.name)
    return {name: folder / name for name in POWER_NAMES}


@pytest.fixture(scope="module")
def folder() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="tps-", dir="/tmp"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def slurm(folder: Path) -> Iterator[SlurmCluster]:
    reason = unavailable_reason()
    if reason:
        pytest.skip(reason)
    programs = _install_wrapper(folder, folder / "cluster.toml")
    power = PowerSaving(
        suspend_time_s=6,
        suspend_timeout_s=3,
        resume_timeout_s=12,
        resume_program=programs["tidectl-resume"],
        suspend_program=programs["tidectl-suspend"],
        resume_fail_program=programs["tidectl-resume-fail"],
    )
    with SlurmCluster(
        folder / "slurm", 2, cloud_nodes=2, power=power, first_port=FIRST_PORT
    ) as cluster:
        yield cluster


class RunsHere(Bookkeeping):
    """The engine's linker for instances that are not machines: a command "on the node" runs
    on this machine (where the sim instance's slurmd lives), with the cluster's environment.
    There is no agent to link: nodes are admitted by the test's health gate."""

    def __init__(self, env: dict[str, str]) -> None:
        super().__init__()
        self.env = {**os.environ, **env}

    async def run(self, node: str, command: str, timeout_s: float) -> str | None:
        process = await asyncio.create_subprocess_exec(
            *shlex.split(command),
            env=self.env,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        async with asyncio.timeout(timeout_s):
            _, err = await process.communicate()
        return None if process.returncode == 0 else f"exited {process.returncode}: {err!r}"


class EndsSlurmd(SimProvider):
    """A terminated instance takes its node's slurmd with it."""

    def __init__(self, folder: Path, cluster: SlurmCluster, store: Store) -> None:
        super().__init__(folder, boot_delay_s=0.0)
        self.cluster = cluster
        self.store = store

    async def terminate(self, instance_ids: Sequence[str]) -> None:
        for node in self.store.nodes():
            if node.instance_id in instance_ids and node.name in self.cluster.cloud_names:
                self.cluster.stop_cloud_node(node.name)
        await super().terminate(instance_ids)


@pytest.fixture
async def service(
    slurm: SlurmCluster, folder: Path, request: pytest.FixtureRequest
) -> AsyncIterator[Service]:
    slurm.reset()
    case = Path(tempfile.mkdtemp(prefix="c-", dir=folder))
    (case / "known_hosts").write_text("")
    socket = case / "s.sock"
    # What the wrapper's tidectl reads: where the service listens.
    (folder / "cluster.toml").write_text(
        '[cluster]\nname = "c1"\n[ssh]\nuser = "t"\n'
        f'known_hosts = "{case / "known_hosts"}"\n[[nodes]]\nnames = "onprem[1-2]"\n'
        f'[scheduler]\nkind = "slurm"\n[server]\nsocket = "{socket}"\n' + TEST_ROLES
    )
    # The pool's join command starts the node's slurmd (slurmd -b, signal mask cleared), as
    # a site's `sudo systemctl start slurmd` would; the engine runs it once Slurm's power-up
    # is under way.
    starts_slurmd = shlex.join(
        [
            sys.executable,
            str(REPO / "tests" / "harness" / "slurm_node.py"),
            "resume",
            str(slurm.conf_path),
            str(slurm.power_dir),
            str(slurm.log_dir),
        ]
    )
    bootstrap = replace(POOL.bootstrap, join_command=starts_slurmd + " {node}")
    pool = replace(
        POOL,
        slurm_nodes=slurm.cloud_names,
        max_nodes=len(slurm.cloud_names),
        bootstrap=bootstrap,
    )
    config = replace(load_config(folder / "cluster.toml"), pools=(pool,))
    for name in getattr(request, "param", ()):
        slurm.boot_fails(name)  # its join command starts no slurmd: it never registers
    with Store.open(case / "store.sqlite3") as store:
        async with EndsSlurmd(case / "cloud", slurm, store) as cloud:
            scheduler = SlurmScheduler(env=slurm.env)
            engine = Engine(
                store,
                {pool.name: cloud},
                scheduler,
                {pool.name: pool},
                CLUSTER,
                linker=RunsHere(slurm.env),
                health=lambda name: True,  # no agent here: the gate is tested elsewhere
                clock=time.time,
            )
            plane = ControlPlane(config, store, engine, scheduler=scheduler, interval_s=0.3)
            async with plane:
                running = Service(plane, socket)
                await running.start()
                try:
                    yield running
                finally:
                    await running.aclose()
                    for name in slurm.cloud_names:
                        slurm.stop_cloud_node(name)


async def until(check: Callable[[], bool], what: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, f"{what}: not within {timeout_s:.0f} s"
        await asyncio.sleep(0.2)


def states_of(service: Service, name: str) -> list[tuple[State | None, State, str]]:
    return [(t.before, t.after, t.reason) for t in service.plane.store.history(name)]


async def srun(slurm: SlurmCluster, node: str, *command: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        "srun",
        "-w",
        node,
        "-N1",
        *(command or ("hostname",)),
        env={**os.environ, **slurm.env},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def test_a_job_for_a_powered_down_node_bursts_and_the_idle_node_is_ended(
    slurm: SlurmCluster, service: Service
) -> None:
    store = service.plane.store
    job = await srun(slurm, "cloud1")
    async with asyncio.timeout(60):
        out, err = await job.communicate()
    assert job.returncode == 0, err.decode()
    assert out.decode().strip()  # the job ran, on the node tidectl launched
    (intent,) = store.intents()
    assert (intent.frontend, intent.actor, intent.detail["nodes"]) == ("slurm", "root", ["cloud1"])
    # The job can end before the next reconcile pass sees the node up: active just after.
    await until(
        lambda: (n := store.node("cloud1")) is not None and n.state is S.ACTIVE,
        "cloud1 active once Slurm showed it up",
        10,
    )
    # Idle for SuspendTime: Slurm powers it down through tidectl slurm suspend.
    await until(
        lambda: (n := store.node("cloud1")) is not None and n.state is S.TERMINATED,
        "cloud1 terminated after Slurm suspended it",
        60,
    )
    moves = [(before, after) for before, after, _ in states_of(service, "cloud1")]
    assert moves == [
        (None, S.REQUESTED),
        (S.REQUESTED, S.PROVISIONING),
        (S.PROVISIONING, S.BOOTSTRAPPING),
        (S.BOOTSTRAPPING, S.JOINING),
        (S.JOINING, S.ACTIVE),
        (S.ACTIVE, S.DRAINING),
        (S.DRAINING, S.DRAINED),
        (S.DRAINED, S.TERMINATING),
        (S.TERMINATING, S.TERMINATED),
    ]
    assert "Slurm powers it down idle" in states_of(service, "cloud1")[5][2]
    assert all(e.stopped_at is not None for e in store.ledger("cloud1"))
    assert slurm.cloud_slurmd("cloud1") is None
    assert store.open_instance_ids() == set()


@pytest.mark.parametrize("service", [("cloud2",)], indirect=True)
async def test_a_node_that_never_registers_ends_failed_with_the_reason(
    slurm: SlurmCluster, service: Service
) -> None:
    store = service.plane.store
    job = await srun(slurm, "cloud2")
    try:
        await until(
            lambda: (n := store.node("cloud2")) is not None and n.state is S.TERMINATED,
            "cloud2 terminated after Slurm gave up on it",
            60,
        )
    finally:
        if job.returncode is None:
            job.kill()  # our own child, by its PID
        await job.wait()
    failed = [reason for _, after, reason in states_of(service, "cloud2") if after is S.FAILED]
    assert len(failed) == 1 and "did not register within ResumeTimeout" in failed[0]
    assert all(e.stopped_at is not None for e in store.ledger("cloud2"))
    assert store.open_instance_ids() == set()


async def test_an_operator_burst_powers_the_node_up_and_terminate_powers_it_down(
    slurm: SlurmCluster, service: Service
) -> None:
    plane, store = service.plane, service.plane.store
    ana = Caller("ana", Frontend.CLI)
    result = await plane.burst(ana, "gpu", count=1)
    assert result.nodes == ("cloud1",)  # the pool's first free Slurm name
    await until(
        lambda: (n := store.node("cloud1")) is not None and n.state is S.ACTIVE,
        "cloud1 active",
        30,
    )
    # A job runs on it; the drain lets it finish, and terminate waits for that.
    job = await srun(slurm, "cloud1", "sleep", "4")
    await until(lambda: slurm.node_states()["cloud1"] in ("alloc", "mix"), "the job on it", 20)
    drained = await plane.drain(ana, "cloud1", reason="done with it")
    assert [o.after for o in drained.nodes] == [S.DRAINING]
    with pytest.raises(Refused, match="its drain is not finished"):
        await plane.terminate(ana, "cloud1", reason="done with it")
    async with asyncio.timeout(30):
        _, err = await job.communicate()
    assert job.returncode == 0, err.decode()  # it ran to completion: not killed
    await until(
        lambda: (n := store.node("cloud1")) is not None and n.state is S.DRAINED,
        "cloud1 drained once the job ended",
        20,
    )
    await plane.terminate(ana, "cloud1", reason="done with it")
    await until(
        lambda: (n := store.node("cloud1")) is not None and n.state is S.TERMINATED,
        "cloud1 terminated",
        30,
    )
    assert store.open_instance_ids() == set()
    # Slurm powers it down and lifts the drain with it (measured: the state is
    # IDLE+CLOUD+POWERED_DOWN, the old reason still shown): the name is free again...
    await until(lambda: slurm.node_states()["cloud1"].endswith("~"), "cloud1 powered down", 20)
    shown = slurm.run("scontrol", "show", "node", "cloud1", "-o").stdout
    assert "State=IDLE+CLOUD+POWERED_DOWN " in shown, shown
    assert slurm.cloud_slurmd("cloud1") is None
    # ...and Slurm's power saving bursts into it again: a new instance under the same name.
    first = [i for i in store.instances() if i.node == "cloud1"]
    job = await srun(slurm, "cloud1")
    async with asyncio.timeout(60):
        _, err = await job.communicate()
    assert job.returncode == 0, err.decode()
    again = [i for i in store.instances() if i.node == "cloud1"]
    assert len(first) == 1 and len(again) == 2
    moves = [(before, after) for before, after, _ in states_of(service, "cloud1")]
    assert (S.TERMINATED, S.REQUESTED) in moves
