"""Slurm CLOUD nodes and power saving, against a real Slurm 22.05 (fixture ``slurm_cloud``:
onprem1-2 and cloud1-2, SuspendTime 6 s, SuspendTimeout 3 s, ResumeTimeout 10 s, the harness's
test ResumeProgram / SuspendProgram / ResumeFailProgram, which log every call and start or stop
the named node's slurmd).

What is measured: Slurm itself powering a CLOUD node up for a job and down when idle; a boot
that never registers ending in ResumeFailProgram and a down node; ``add_node`` and
``remove_node`` asking the power changes (and refusing what would kill a job or be dropped);
and the power flags ``nodes()`` reports at each stage, also from recorded 22.05 output.

The long waits are Slurm's own timers (SuspendTime, SuspendTimeout, ResumeTimeout): about 45 s
for the file.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import pytest

from tests.harness.slurm import PowerCall, PowerSaving, SlurmCluster, unavailable_reason
from tidectl.console.scheduler.base import (
    InvalidRequestError,
    NodeBusyError,
    NodeFlag,
    SchedNode,
    SchedState,
    UnknownNodeError,
)
from tidectl.console.scheduler.slurm import (
    NotInSlurmConfError,
    PowerTransitionError,
    SlurmScheduler,
)
from tidectl.console.scheduler.slurm_parse import parse_sinfo_json, parse_squeue_json, with_jobs

S = SchedState
F = NodeFlag
T = TypeVar("T")
RECORDED = Path(__file__).parents[2] / "fakes" / "slurm_outputs"
WAIT_S = 15.0  # a boot or a job start takes 1-2 s here; Slurm's timers add their own
POWERED_DOWN = frozenset({F.CLOUD, F.POWERED_DOWN})
BOOTING = frozenset({F.CLOUD, F.NOT_RESPONDING, F.POWERING_UP})  # Resume called, no slurmd yet
UP = frozenset({F.CLOUD})


def scheduler(cluster: SlurmCluster) -> SlurmScheduler:
    return SlurmScheduler(env=cluster.env, timeout_s=10)


async def eventually(
    read: Callable[[], Awaitable[T]], ok: Callable[[T], bool], within_s: float = WAIT_S
) -> T:
    """Poll ``read()`` until ``ok`` (Slurm offers no event to await); fail after ``within_s``."""
    deadline = time.monotonic() + within_s
    while True:
        value = await read()
        if ok(value):
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"Slurm did not get there in {within_s} s; last read: {value!r}")
        await asyncio.sleep(0.1)


def node_of(sched: SlurmScheduler, name: str) -> Callable[[], Awaitable[SchedNode]]:
    async def read() -> SchedNode:
        return next(n for n in await sched.nodes() if n.name == name)

    return read


async def logged(
    cluster: SlurmCluster, since: float, count: int, program: str | None = None
) -> list[PowerCall]:
    """The test power programs' calls since ``since``, once there are ``count`` (Slurm changes
    a node's flags, then runs the program, which logs a moment later)."""
    return await eventually(
        lambda: asyncio.to_thread(cluster.power_calls, program, since), lambda c: len(c) >= count
    )


def blocked_signals(pid: int) -> int:
    """The signal mask of process ``pid`` (``SigBlk`` in /proc/PID/status)."""
    status = Path(f"/proc/{pid}/status").read_text()
    (mask,) = [line.split()[1] for line in status.splitlines() if line.startswith("SigBlk:")]
    return int(mask, 16)


# -- flags read from recorded Slurm 22.05 output ----------------------------------------------


@pytest.mark.parametrize(
    ("stage", "state", "flags"),
    [
        ("powered_down", S.IDLE, POWERED_DOWN),
        ("power_up_asked", S.IDLE, frozenset({F.CLOUD, F.POWERED_DOWN, F.POWERING_UP})),
        ("powering_up", S.IDLE, BOOTING),
        ("up", S.IDLE, UP),
        ("power_down_asked", S.IDLE, frozenset({F.CLOUD, F.POWER_DOWN_PENDING})),
        ("powering_down", S.IDLE, frozenset({F.CLOUD, F.POWERING_DOWN})),
        ("resume_failed", S.DOWN, frozenset({F.CLOUD, F.POWERED_DOWN, F.NOT_RESPONDING})),
    ],
)
def test_power_flags_of_each_stage_in_recorded_output(
    stage: str, state: SchedState, flags: frozenset[NodeFlag]
) -> None:
    output = (RECORDED / f"sinfo_cloud_{stage}.json").read_text()

    nodes = {n.name: n for n in parse_sinfo_json(output)}

    assert (nodes["cloud1"].state, nodes["cloud1"].flags) == (state, flags)
    assert (nodes["onprem1"].state, nodes["onprem1"].flags) == (S.IDLE, frozenset())
    expected_reason = "ResumeTimeout reached" if stage == "resume_failed" else None
    assert nodes["cloud1"].reason == expected_reason


def test_a_job_waiting_for_its_cloud_node_to_boot_is_on_that_node() -> None:
    nodes = parse_sinfo_json((RECORDED / "sinfo_cloud_booting_for_job.json").read_text())
    jobs = parse_squeue_json((RECORDED / "squeue_cloud_booting_for_job.json").read_text())

    cloud1 = next(n for n in with_jobs(nodes, jobs) if n.name == "cloud1")

    # Slurm says CONFIGURING: the node is the job's while it boots, so it is not empty.
    assert (cloud1.state, cloud1.flags, cloud1.jobs) == (S.MIXED, BOOTING, ("1",))


# -- what add_node and remove_node ask at each stage (recorded output, fake scontrol) ---------

ASKS_NOTHING = "nothing"


@pytest.mark.parametrize(
    ("stage", "on_add", "on_remove"),
    [
        ("powered_down", "State=POWER_UP", ASKS_NOTHING),
        ("power_up_asked", ASKS_NOTHING, PowerTransitionError),
        ("powering_up", ASKS_NOTHING, PowerTransitionError),
        ("up", ASKS_NOTHING, "State=POWER_DOWN"),
        ("power_down_asked", PowerTransitionError, ASKS_NOTHING),  # Slurm would drop a power-up
        ("powering_down", PowerTransitionError, ASKS_NOTHING),
        ("resume_failed", InvalidRequestError, ASKS_NOTHING),  # down: a person brings it back
        ("booting_for_job", ASKS_NOTHING, NodeBusyError),
    ],
)
async def test_what_add_and_remove_ask_of_slurm_at_each_stage(
    tmp_path: Path, stage: str, on_add: str | type[Exception], on_remove: str | type[Exception]
) -> None:
    bin_dir, asked = tmp_path / "bin", tmp_path / "scontrol.argv"
    bin_dir.mkdir()
    jobs = "squeue_cloud_booting_for_job" if stage == "booting_for_job" else "squeue_done"
    for tool, body in [
        ("sinfo", f"cat {RECORDED / f'sinfo_cloud_{stage}.json'}"),
        ("squeue", f"cat {RECORDED / f'{jobs}.json'}"),
        ("scontrol", f'echo "$*" >> {asked}'),
    ]:
        (bin_dir / tool).write_text(f"#!/bin/sh\n{body}\n")
        (bin_dir / tool).chmod(0o755)
    sched = SlurmScheduler(env={"PATH": f"{bin_dir}:/usr/bin:/bin"})

    async def add() -> None:
        await sched.add_node("cloud1", 0)

    async def remove() -> None:
        await sched.remove_node("cloud1")

    for act, expected in [(add, on_add), (remove, on_remove)]:
        asked.unlink(missing_ok=True)
        if isinstance(expected, str):
            await act()
            wanted = [] if expected == ASKS_NOTHING else [f"update NodeName=cloud1 {expected}"]
            assert (asked.read_text().splitlines() if asked.exists() else []) == wanted
        else:
            with pytest.raises(expected, match="cloud1"):
                await act()
            assert not asked.exists()


# -- Slurm's own power saving -----------------------------------------------------------------


@pytest.mark.slow
async def test_slurm_resumes_a_cloud_node_for_a_job_and_suspends_it_when_idle(
    slurm_cloud: SlurmCluster,
) -> None:
    sched = scheduler(slurm_cloud)
    since = time.time()

    # srun, not sbatch: a batch job for a powered-down node waits for slurmctld's 30 s timer.
    srun = await asyncio.create_subprocess_exec(
        "srun", "-w", "cloud1", "printenv", "SLURMD_NODENAME",
        env={**os.environ, **slurm_cloud.env},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    output, _ = await asyncio.wait_for(srun.communicate(), WAIT_S)
    job_ended = time.time()

    assert (srun.returncode, output.decode().split()) == (0, ["cloud1"])
    (resume,) = slurm_cloud.power_calls("resume", since)
    assert resume.nodes == ("cloud1",) and resume.argv[-1] == "cloud1"
    slurmd = slurm_cloud.cloud_slurmd("cloud1")
    assert slurmd is not None and slurmd in slurm_cloud.tagged_pids()  # cleanup will find it
    assert blocked_signals(slurmd) & (1 << (15 - 1)) == 0  # SIGTERM not blocked (gotcha 2)
    cloud1 = await node_of(sched, "cloud1")()
    assert (cloud1.state, cloud1.flags, cloud1.jobs) == (S.IDLE, UP, ())

    # Idle for SuspendTime: Slurm calls the SuspendProgram, waits SuspendTimeout, powered down.
    power = slurm_cloud.power
    within = power.suspend_time_s + WAIT_S
    down = await eventually(node_of(sched, "cloud1"), lambda n: F.POWERING_DOWN in n.flags, within)
    assert down.flags == frozenset({F.CLOUD, F.POWERING_DOWN})
    (suspend,) = await logged(slurm_cloud, since, 1, "suspend")
    assert suspend.nodes == ("cloud1",)
    assert suspend.at - job_ended >= power.suspend_time_s - 1  # not sooner than SuspendTime
    off = await eventually(node_of(sched, "cloud1"), lambda n: F.POWERING_DOWN not in n.flags)
    assert (off.state, off.flags) == (S.IDLE, POWERED_DOWN)
    assert slurm_cloud.cloud_slurmd("cloud1") is None
    assert [c.program for c in slurm_cloud.power_calls(since=since)] == ["resume", "suspend"]


@pytest.mark.slow
async def test_a_boot_that_never_registers_ends_down_after_resume_fail_program(
    slurm_cloud: SlurmCluster,
) -> None:
    sched = scheduler(slurm_cloud)
    slurm_cloud.boot_fails("cloud2")  # the ResumeProgram logs the call, starts no slurmd
    since = time.time()

    await sched.add_node("cloud2", 0)

    within = slurm_cloud.power.resume_timeout_s + WAIT_S
    failed = await eventually(node_of(sched, "cloud2"), lambda n: n.state is S.DOWN, within)
    assert failed.flags == frozenset({F.CLOUD, F.POWERED_DOWN, F.NOT_RESPONDING})
    assert failed.reason == "ResumeTimeout reached"
    resume, fail = await logged(slurm_cloud, since, 2)
    assert (resume.program, resume.nodes) == ("resume", ("cloud2",))
    assert (fail.program, fail.nodes, fail.argv[-1]) == ("resume-fail", ("cloud2",), "cloud2")
    assert fail.at - resume.at >= slurm_cloud.power.resume_timeout_s - 1
    # tidectl never brings a down node back, and a powered-down node needs no power-down.
    with pytest.raises(InvalidRequestError, match=r"cloud2 is down \(ResumeTimeout reached\)"):
        await sched.add_node("cloud2", 0)
    await sched.remove_node("cloud2")
    assert slurm_cloud.power_calls("suspend", since) == []


# -- add_node and remove_node -----------------------------------------------------------------


async def test_add_node_powers_up_a_cloud_node_and_remove_node_powers_it_down(
    slurm_cloud: SlurmCluster,
) -> None:
    sched = scheduler(slurm_cloud)
    cloud1 = node_of(sched, "cloud1")
    slurm_cloud.boot_fails("cloud1")  # the test boots it: each stage holds until it does
    since = time.time()
    assert (await cloud1()).flags == POWERED_DOWN

    await sched.add_node("cloud1", 0)

    asked = await cloud1()  # the power-save pass (every second) may have called Resume already
    assert asked.flags in (frozenset({F.CLOUD, F.POWERED_DOWN, F.POWERING_UP}), BOOTING)
    booting = await eventually(cloud1, lambda n: n.flags == BOOTING)
    await sched.add_node("cloud1", 0)  # on its way up: nothing asked again
    with pytest.raises(PowerTransitionError, match="cloud1 is powering up"):
        await sched.remove_node("cloud1")
    assert (booting.state, booting.jobs) == (S.IDLE, ())
    assert [c.nodes for c in await logged(slurm_cloud, since, 1, "resume")] == [("cloud1",)]

    slurm_cloud.start_cloud_node("cloud1")  # the instance boots

    up = await eventually(cloud1, lambda n: F.POWERING_UP not in n.flags)
    assert (up.state, up.flags) == (S.IDLE, UP)
    await sched.add_node("cloud1", 0)  # up: nothing asked
    assert (await cloud1()).flags == UP

    await sched.remove_node("cloud1")

    leaving = await cloud1()
    assert leaving.flags in (
        frozenset({F.CLOUD, F.POWER_DOWN_PENDING}),
        frozenset({F.CLOUD, F.POWERING_DOWN}),
    )
    off = await eventually(cloud1, lambda n: n.flags == POWERED_DOWN)
    assert off.state is S.IDLE and slurm_cloud.cloud_slurmd("cloud1") is None
    assert [c.program for c in slurm_cloud.power_calls(since=since)] == ["resume", "suspend"]
    await sched.remove_node("cloud1")  # powered down: nothing asked
    assert len(slurm_cloud.power_calls("suspend", since)) == 1


async def test_remove_node_refuses_a_cloud_node_with_a_job_and_the_job_runs_on(
    slurm_cloud: SlurmCluster,
) -> None:
    sched = scheduler(slurm_cloud)
    await sched.add_node("cloud2", 0)
    await eventually(node_of(sched, "cloud2"), lambda n: n.flags == UP)
    job_id = slurm_cloud.submit("sleep 60", "-w", "cloud2")
    await eventually(node_of(sched, "cloud2"), lambda n: n.jobs == (job_id,))
    since = time.time()

    with pytest.raises(NodeBusyError, match=rf"cloud2: 1 job is still on it \({job_id}\)"):
        await sched.remove_node("cloud2")

    assert slurm_cloud.job_fields(job_id)["JobState"] == "RUNNING"
    cloud2 = await node_of(sched, "cloud2")()
    assert (cloud2.state, cloud2.flags, cloud2.jobs) == (S.MIXED, UP, (job_id,))  # no power-down
    assert slurm_cloud.power_calls("suspend", since) == []


async def test_on_prem_and_unknown_nodes_are_refused_with_a_sentence(
    slurm_cloud: SlurmCluster,
) -> None:
    sched = scheduler(slurm_cloud)
    since = time.time()

    with pytest.raises(InvalidRequestError, match="onprem1: it is an on-prem Slurm node"):
        await sched.add_node("onprem1", 0)
    with pytest.raises(InvalidRequestError, match="onprem1: it is an on-prem Slurm node"):
        await sched.remove_node("onprem1")
    with pytest.raises(NotInSlurmConfError, match="define it there as a CLOUD node"):
        await sched.add_node("burst9", 8)
    with pytest.raises(UnknownNodeError, match="burst9"):
        await sched.remove_node("burst9")

    assert slurm_cloud.node_states()["onprem1"] == "idle"
    assert slurm_cloud.power_calls(since=since) == []


@pytest.mark.parametrize("name", ["cloud[1-2]", "cloud1,cloud2", "a b", ""])
async def test_bad_names_are_refused_before_any_command(name: str) -> None:
    sched = SlurmScheduler(env={"PATH": "/nonexistent"})  # any command run would fail otherwise

    with pytest.raises(InvalidRequestError, match="not a node name"):
        await sched.add_node(name, 1)
    with pytest.raises(InvalidRequestError, match="not a node name"):
        await sched.remove_node(name)


@pytest.mark.parametrize("gpus", [-1, True, 1.5, "8"])
async def test_a_bad_gpu_count_is_refused_before_any_command(gpus: object) -> None:
    sched = SlurmScheduler(env={"PATH": "/nonexistent"})

    with pytest.raises(InvalidRequestError, match="gpus must be a whole number"):
        await sched.add_node("cloud1", gpus)  # type: ignore[arg-type]


# -- the harness ------------------------------------------------------------------------------


def test_close_stops_a_cloud_slurmd_started_by_the_resume_program() -> None:
    reason = unavailable_reason()
    if reason:
        pytest.skip(reason)
    base_dir = Path(tempfile.mkdtemp(prefix="tidectl-slurm-"))  # short: munge's socket path
    try:
        cluster = SlurmCluster(
            base_dir, 1, cloud_nodes=1, first_port=17251, power=PowerSaving(suspend_time_s=60)
        )
        with cluster:
            cluster.run("scontrol", "update", "NodeName=cloud1", "State=POWER_UP")
            cluster.wait_until(lambda: cluster.node_states()["cloud1"] == "idle", "cloud1 up")
            slurmd = cluster.cloud_slurmd("cloud1")
            assert slurmd is not None and slurmd in cluster.tagged_pids()

        assert not _running(slurmd)
        assert cluster.tagged_pids() == set()
    finally:
        shutil.rmtree(base_dir, ignore_errors=True)


def _running(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] not in "ZX"
