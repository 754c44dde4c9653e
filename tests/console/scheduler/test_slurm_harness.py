"""The Slurm harness stops everything it started: daemons, slurmstepd and the jobs' processes."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest

from tests.harness.slurm import SlurmCluster, unavailable_reason


def test_close_leaves_no_daemon_and_no_job_process() -> None:
    reason = unavailable_reason()
    if reason:
        pytest.skip(reason)
    base_dir = Path(tempfile.mkdtemp(prefix="tidectl-slurm-"))
    try:
        cluster = SlurmCluster(base_dir, 1, first_port=17101)
        with cluster:
            job_id = cluster.submit("sleep 60")
            cluster.wait_until(
                lambda: cluster.job_fields(job_id)["JobState"] == "RUNNING", "the job running"
            )
            # RUNNING is reported a moment before slurmstepd has started the job's sleep.
            cluster.wait_until(
                lambda: len(cluster.tagged_pids()) >= 5, "the job's processes started"
            )
            ours = cluster.tagged_pids()  # daemons, slurmstepd and the job's sleep
            assert len(ours) >= 5  # munged, slurmctld, slurmd, slurmstepd, sleep

        assert all(not Path(f"/proc/{pid}").exists() or _zombie(pid) for pid in ours)
        assert cluster.tagged_pids() == set()
    finally:
        shutil.rmtree(base_dir, ignore_errors=True)


def _zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat[stat.rindex(")") + 2] in "ZX"
