"""``tidectl slurm resume | suspend | resume-fail`` as Slurm runs them — real processes, with
only a host list — against a running ``tidectl serve``: they hand the work to the service and
return at once, asking twice does nothing twice, a name no pool holds is refused with a
sentence (status 1), and a node that never registered ends failed with the reason.

The whole path with Slurm itself calling these programs is in tests/console/scheduler/."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.console.server.test_serve import CONFIG, start, stop, tidectl
from tidectl.console.lifecycle.states import State
from tidectl.console.lifecycle.store import Store

SLURM_POOL = CONFIG.replace('name = "burst"\n', 'name = "burst"\nslurm_nodes = "cloud[1-3]"\n')


@pytest.fixture
def folder() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="tsp-", dir="/tmp"))
    (path / "known_hosts").write_text("")
    (path / "cluster.toml").write_text(SLURM_POOL)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def slurm(folder: Path, hook: str, nodes: str) -> tuple[subprocess.CompletedProcess[str], float]:
    started = time.monotonic()
    done = subprocess.run(
        tidectl("slurm", hook, nodes, "-c", str(folder / "cluster.toml")),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return done, time.monotonic() - started


def states(folder: Path) -> dict[str, State]:
    with Store.open(folder / "lab.sqlite3") as store:
        return {node.name: node.state for node in store.nodes(pool="burst")}


def test_the_programs_hand_their_work_to_the_service_and_return_at_once(folder: Path) -> None:
    server, ready = start(folder)
    assert ready.startswith("tidectl serve: listening on"), ready
    try:
        resumed, took = slurm(folder, "resume", "cloud[1-2]")
        assert resumed.returncode == 0, resumed.stderr
        assert resumed.stdout.splitlines()[0].endswith(": cloud1 cloud2")
        assert took < 10, f"{took:.1f} s: Slurm waits on this program"
        with Store.open(folder / "lab.sqlite3") as store:
            (intent,) = store.intents()
        assert (intent.frontend, intent.detail["nodes"]) == ("slurm", ["cloud1", "cloud2"])
        again, _ = slurm(folder, "resume", "cloud[1-2]")
        assert again.returncode == 0 and "nothing to do" in again.stdout
        refused, _ = slurm(folder, "resume", "cloud[3-4]")
        assert refused.returncode == 1
        assert "no pool has cloud4 in its slurm_nodes" in refused.stderr
        assert "cloud3" not in states(folder)  # all or nothing
        # cloud2's slurmd never registered: Slurm gives up on it.
        failed, _ = slurm(folder, "resume-fail", "cloud2")
        assert failed.returncode == 0, failed.stderr
        assert "cloud2: " in failed.stdout and "-> terminating" in failed.stdout
        with Store.open(folder / "lab.sqlite3") as store:
            reasons = [t.reason for t in store.history("cloud2") if t.after is State.FAILED]
        assert len(reasons) == 1 and "ResumeTimeout" in reasons[0]
        # A suspend Slurm did not decide on (the sim scheduler powers nothing down): refused.
        deadline = time.monotonic() + 30
        while states(folder).get("cloud1") is not State.ACTIVE and time.monotonic() < deadline:
            time.sleep(0.2)
        assert states(folder)["cloud1"] is State.ACTIVE
        kept, _ = slurm(folder, "suspend", "cloud1")
        assert kept.returncode == 1 and "is not powering it down" in kept.stderr
        assert states(folder)["cloud1"] is State.ACTIVE
    finally:
        assert stop(server) == 0


def test_without_a_service_a_sim_pool_is_refused_with_what_to_do(folder: Path) -> None:
    config = folder / "cluster.toml"
    config.write_text(SLURM_POOL.split("[server]")[0])  # [server] is its last table
    assert "[server]" not in config.read_text()
    done, _ = slurm(folder, "resume", "cloud1")
    assert done.returncode == 2
    assert "tidectl slurm resume:" in done.stderr and "tidectl serve" in done.stderr
