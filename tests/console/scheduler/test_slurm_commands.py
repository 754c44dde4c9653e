"""The slurm scheduler when its commands misbehave: fake ``sinfo``/``squeue``/``scontrol`` scripts
first on PATH that fail, hang or print garbage. Each gives a typed error with a sentence, a hung
command is killed (its process gone), and the event loop keeps running meanwhile."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from tidectl.console.scheduler.base import SchedulerUnavailableError, automation_reason
from tidectl.console.scheduler.slurm import (
    SlurmCommandError,
    SlurmOutputError,
    SlurmScheduler,
    SlurmTimeoutError,
)

RECORDED = Path(__file__).parents[2] / "fakes" / "slurm_outputs"


def fake(bin_dir: Path, name: str, body: str) -> None:
    script = bin_dir / name
    script.write_text(f"#!/bin/sh\n{body}\n")
    script.chmod(0o755)


@pytest.fixture
def bin_dir(tmp_path: Path) -> Path:
    """A folder for fake Slurm tools; sinfo and squeue answer with recorded idle outputs."""
    folder = tmp_path / "bin"
    folder.mkdir()
    fake(folder, "sinfo", f"cat {RECORDED / 'sinfo_idle.json'}")
    fake(folder, "squeue", f"cat {RECORDED / 'squeue_done.json'}")
    return folder


def scheduler(bin_dir: Path, timeout_s: float = 5.0) -> SlurmScheduler:
    return SlurmScheduler(env={"PATH": f"{bin_dir}:/usr/bin:/bin"}, timeout_s=timeout_s)


async def test_the_fakes_answer_like_slurm(bin_dir: Path) -> None:
    nodes = await scheduler(bin_dir).nodes()  # the baseline the failures below depart from

    assert [n.name for n in nodes] == ["onprem1", "onprem2"]


async def test_a_hung_scontrol_is_killed_after_the_timeout_without_blocking_the_loop(
    bin_dir: Path, tmp_path: Path
) -> None:
    pid_file = tmp_path / "scontrol.pid"
    fake(bin_dir, "scontrol", f"echo $$ > {pid_file}; exec sleep 60")
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.01)

    ticker = asyncio.create_task(tick())
    started = time.monotonic()
    with pytest.raises(SlurmTimeoutError, match=r"scontrol update NodeName=onprem1 .*0\.5 s"):
        await scheduler(bin_dir, timeout_s=0.5).drain(["onprem1"], automation_reason("x"))
    ticker.cancel()

    assert time.monotonic() - started < 3
    assert ticks >= 20  # the loop ran all along
    pid = int(pid_file.read_text())
    assert not Path(f"/proc/{pid}").exists()  # killed and reaped, not left behind


async def test_a_command_that_fails_says_its_exit_status_and_message(bin_dir: Path) -> None:
    fake(bin_dir, "sinfo", "echo 'sinfo: error: Unable to contact slurm controller' >&2; exit 1")

    with pytest.raises(SlurmCommandError, match=r"exit status 1: .*Unable to contact") as caught:
        await scheduler(bin_dir).nodes()

    assert isinstance(caught.value, SchedulerUnavailableError)


async def test_scontrol_refusing_an_update_is_an_error(bin_dir: Path) -> None:
    fake(bin_dir, "scontrol", "echo 'slurm_update error: Invalid node state specified' >&2; exit 1")

    with pytest.raises(SlurmCommandError, match="Invalid node state"):
        await scheduler(bin_dir).drain(["onprem2"], automation_reason("x"))


async def test_truncated_output_is_an_output_error(bin_dir: Path) -> None:
    fake(bin_dir, "squeue", f"head -c 300 {RECORDED / 'squeue_running.json'}")

    with pytest.raises(SlurmOutputError, match="squeue --json printed something that is not JSON"):
        await scheduler(bin_dir).pending_demand()


async def test_a_missing_tool_says_to_install_slurm(tmp_path: Path) -> None:
    sched = SlurmScheduler(env={"PATH": str(tmp_path)})

    with pytest.raises(SlurmCommandError, match=r"could not run sinfo.*slurm-client"):
        await sched.nodes()


async def test_drain_runs_scontrol_with_argv_words_not_a_shell(
    bin_dir: Path, tmp_path: Path
) -> None:
    args_file = tmp_path / "args"
    fake(bin_dir, "scontrol", f'for a in "$@"; do printf "%s\\n" "$a"; done > {args_file}')
    touched = tmp_path / "touched"
    reason = automation_reason(f'quotes " and $(touch {touched}) stay text')

    await scheduler(bin_dir).drain(["onprem1", "onprem2"], reason)

    assert args_file.read_text().splitlines() == [
        "update",
        "NodeName=onprem1,onprem2",
        "State=DRAIN",
        f"Reason={reason}",
    ]
    assert not touched.exists()


async def test_a_persons_drain_already_there_is_not_rewritten(
    bin_dir: Path, tmp_path: Path
) -> None:
    called = tmp_path / "called"
    fake(bin_dir, "sinfo", f"cat {RECORDED / 'sinfo_drained.json'}")  # onprem2: a person's drain
    fake(bin_dir, "scontrol", f'echo "$@" >> {called}')

    await scheduler(bin_dir).drain(["onprem2"], automation_reason("idle"))
    assert not called.exists()  # its reason, user and time stay the person's

    await scheduler(bin_dir).drain(["onprem1", "onprem2"], "ops: new reason")
    assert (
        called.read_text() == "update NodeName=onprem1,onprem2 State=DRAIN Reason=ops: new reason\n"
    )
