"""The ControlPlane with ``[scheduler] kind = "slurm"`` against the real Slurm of the harness:
a drain asked through the plane lets the running job finish, the node is drained only after,
and resume brings it back — the lifecycle store and Slurm agreeing at each step."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from tests.console.roles import TEST_ROLES
from tests.harness.slurm import SlurmCluster
from tidectl.console.config.loader import parse_config
from tidectl.console.control.assemble import assemble
from tidectl.console.control.caller import Caller, Frontend
from tidectl.console.lifecycle.states import State

ANA = Caller("ana", Frontend.CLI)


async def test_a_drain_through_the_plane_waits_for_the_job_then_resume_undoes_it(
    slurm: SlurmCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in slurm.env.items():
        monkeypatch.setenv(name, value)  # Slurm's tools find the harness's cluster
    (tmp_path / "known_hosts").write_text("")
    text = (
        '[cluster]\nname = "lab"\n[ssh]\nuser = "t"\nknown_hosts = "known_hosts"\n'
        '[[nodes]]\nnames = "onprem[1-3]"\naddress = "127.0.0.1"\nport = 9\n'
        '[scheduler]\nkind = "slurm"\n' + TEST_ROLES
    )
    config = parse_config(text, tmp_path / "cluster.toml")
    plane = await assemble(config, store=tmp_path / "s.sqlite3", collect=False, interval_s=0.2)
    async with plane:
        job = slurm.submit("sleep 3", "-w", "onprem1")
        deadline = time.monotonic() + 15  # a job starts on slurmctld's next pass: 1-2 s here
        while slurm.job_fields(job)["JobState"] != "RUNNING":
            assert time.monotonic() < deadline, slurm.job_fields(job)
            await asyncio.sleep(0.1)
        result = await plane.drain(ANA, "onprem1", reason="firmware")
        assert [(o.before, o.after) for o in result.nodes] == [(State.ACTIVE, State.DRAINING)]
        assert slurm.job_fields(job)["JobState"] == "RUNNING"
        drained = await plane.wait(["onprem1"], {State.DRAINED}, timeout_s=30)
        assert drained.states == {"onprem1": State.DRAINED}
        fields = slurm.job_fields(job)
        assert (fields["JobState"], fields["ExitCode"]) == ("COMPLETED", "0:0")  # not killed
        await plane.resume(ANA, "onprem1")
        assert plane.nodes()[0].state is State.ACTIVE
