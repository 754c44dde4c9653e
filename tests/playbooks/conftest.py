"""The playbook tests' cluster: ``tidectl demo``'s — simulated on-prem nodes served over real
SSH by a child process, the sim cloud pool ``burst`` and the sim scheduler in the test's own
process — with the pool booting at once (the demo's 5 s boot is for people watching) and no
random jobs (a test submits the ones it waits for)."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from tidectl.console.config.model import ClusterConfig
from tidectl.console.demo import DemoCluster
from tidectl.console.scheduler.sim import SimScheduler
from tidectl.playbooks.backend import LocalBackend
from tidectl.playbooks.model import Playbook
from tidectl.playbooks.opening import open_cluster
from tidectl.playbooks.session import Session

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples" / "playbooks"
#: The demo's on-prem nodes: sim0001-sim0002 (label pool=train) and sim0003 (infer).
ONPREM = ("sim0001", "sim0002", "sim0003")


@pytest.fixture(scope="module")
def demo() -> Iterator[DemoCluster]:
    """One simulated cluster per test module (each test has its own store and plane); a
    test that injects a fault clears it."""
    with DemoCluster(len(ONPREM), seed=1) as cluster:
        yield cluster
        cluster.faults.clear_all()


def demo_config(demo: DemoCluster) -> ClusterConfig:
    """The demo's config, its pool booting at once."""
    pools = tuple(dataclasses.replace(p, boot_delay_s=0.0) for p in demo.config.pools)
    return dataclasses.replace(demo.config, pools=pools)


@contextlib.asynccontextmanager
async def opened(
    demo: DemoCluster,
    store: Path,
    playbook: Playbook | None = None,
    *,
    check: bool = False,
) -> AsyncIterator[Session]:
    """A session on the demo, as ``tidectl play --demo`` opens one (the plane in this
    process), on the store at ``store``."""
    async with open_cluster(
        demo_config(demo),
        store=store,
        playbook=playbook,
        check=check,
        in_process_sim=True,
    ) as session:
        yield session


def scheduler_of(session: Session) -> SimScheduler:
    """The sim scheduler behind a session: tests submit the jobs playbooks wait for."""
    backend = session.backend
    assert isinstance(backend, LocalBackend)
    scheduler = backend.plane._scheduler
    assert isinstance(scheduler, SimScheduler)
    return scheduler
