"""A real Slurm for the slurm scheduler's tests (tests/harness/slurm.py): one cluster of three
on-prem nodes for the whole session, started only when a test asks for it, and put back to
quiet (no job, every node resumed and idle) before each test that uses it.

It needs root and slurm-wlm + munge; elsewhere the tests that use it are skipped with the
reason.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness.slurm import SlurmCluster, unavailable_reason

SLURM_NODES = 3


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
