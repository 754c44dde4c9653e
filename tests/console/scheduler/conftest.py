"""A real Slurm for the slurm scheduler's tests (tests/harness/slurm.py): one cluster of three
on-prem nodes for the whole session, started only when a test asks for it, and put back to
quiet (no job, every node resumed and idle) before each test that uses it; and, apart (its own
folder and ports), one with two on-prem and two CLOUD nodes under power saving, started only
when a test asks for it, put back before each test to every CLOUD node powered down.

It needs root and slurm-wlm + munge; elsewhere the tests that use it are skipped with the
reason.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness.slurm import PowerSaving, SlurmCluster, unavailable_reason

SLURM_NODES = 3
CLOUD_ONPREM_NODES = 2
CLOUD_NODES = 2
CLOUD_FIRST_PORT = 17201  # clear of slurm_cluster's block, which starts at 17001
# Short, for quick tests: SuspendTime leaves a few seconds to start a job on a node just up;
# ResumeTimeout a margin over a boot (about 1 s here) on a loaded 2-core machine.
CLOUD_POWER = PowerSaving(suspend_time_s=6, suspend_timeout_s=3, resume_timeout_s=10)


@pytest.fixture(scope="session")
def slurm_cluster() -> Iterator[SlurmCluster]:
    """A started Slurm (onprem1-onprem3, partition gpu) shared by the session."""
    reason = unavailable_reason()
    if reason:
        pytest.skip(reason)
    base_dir = Path(tempfile.mkdtemp(prefix="tidectl-slurm-"))
    try:
        with SlurmCluster(base_dir, SLURM_NODES) as cluster:
            yield cluster
    finally:
        shutil.rmtree(base_dir, ignore_errors=True)


@pytest.fixture
def slurm(slurm_cluster: SlurmCluster) -> SlurmCluster:
    """The session's Slurm, quiet: no job, every node resumed and idle."""
    slurm_cluster.reset()
    return slurm_cluster


@pytest.fixture(scope="session")
def slurm_cloud_cluster() -> Iterator[SlurmCluster]:
    """A started Slurm with power saving (onprem1-onprem2, cloud1-cloud2 as CLOUD nodes,
    partition gpu, :data:`CLOUD_POWER`, the harness's test power programs) for the session."""
    reason = unavailable_reason()
    if reason:
        pytest.skip(reason)
    base_dir = Path(tempfile.mkdtemp(prefix="tidectl-slurm-cloud-"))
    try:
        with SlurmCluster(
            base_dir,
            CLOUD_ONPREM_NODES,
            cloud_nodes=CLOUD_NODES,
            power=CLOUD_POWER,
            first_port=CLOUD_FIRST_PORT,
        ) as cluster:
            yield cluster
    finally:
        shutil.rmtree(base_dir, ignore_errors=True)


@pytest.fixture
def slurm_cloud(slurm_cloud_cluster: SlurmCluster) -> SlurmCluster:
    """The session's power-saving Slurm, quiet: no job, on-prem nodes idle, CLOUD nodes
    powered down and booting normally."""
    slurm_cloud_cluster.reset()
    return slurm_cloud_cluster
