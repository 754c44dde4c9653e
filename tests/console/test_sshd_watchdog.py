"""The real watchdog on a real OpenSSH host (tests/harness/sshd.py; root only, else skipped):
the collector deploys the zipapp and streams it (touching the lease), the watchdog is started
over the collector's own SSH connection as the engine starts it, and then the collector stops,
as a control plane that died would: its SSH session and the agent in it end, and the
watchdog, detached, powers the idle node off (here: appends to a file) once the lease is out.

This machine has no GPU (the GPU probe reports no driver: nothing to be busy) and a Slurm
that is not configured, so Slurm's tools are fakes on the node's PATH saying "no job, idle".
"""

from __future__ import annotations

import asyncio
import pwd
import shutil
import time
import uuid
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from tests.harness.sshd import SshdHosts
from tidectl.console.collector import Collector
from tidectl.console.config.loader import load_config
from tidectl.console.config.model import ClusterConfig
from tidectl.console.fleet import Fleet
from tidectl.console.model import LinkState
from tidectl.console.transport.deploy import watchdog_command

LEASE_S = 1.0


async def _until(check: Callable[[], bool], timeout: float) -> float:
    """Poll ``check`` (the node's files: no event reaches us) until it holds; seconds taken."""
    started = time.monotonic()
    async with asyncio.timeout(timeout):
        while not check():
            await asyncio.sleep(0.05)
    return time.monotonic() - started


async def test_the_detached_watchdog_powers_an_idle_node_off_once_the_collector_is_gone(
    sshd_hosts_factory: Callable[..., SshdHosts], tmp_path: Path
) -> None:
    hosts = sshd_hosts_factory(1)
    name = hosts.names[0]
    config = load_config(hosts.write_cluster_toml(tmp_path / "cluster.toml", interval_s=0.2))
    run = uuid.uuid4().hex[:12]  # the hosts share one home: this test's own folder in it
    remote_dir = f".cache/tidectl-wd-{run}"
    config = replace(config, agent=replace(config.agent, remote_dir=remote_dir))
    on_node = Path(pwd.getpwnam(hosts.user).pw_dir) / remote_dir
    fake_slurm = Path(f"/tmp/tidectl-wd-{run}")
    try:
        await _watch_and_kill(hosts, config, name, fake_slurm, on_node)
    finally:
        shutil.rmtree(fake_slurm, ignore_errors=True)
        shutil.rmtree(on_node, ignore_errors=True)


async def _watch_and_kill(
    hosts: SshdHosts, config: ClusterConfig, name: str, fake_slurm: Path, on_node: Path
) -> None:
    fake_slurm.mkdir(mode=0o755)
    for tool, said in (("squeue", ""), ("sinfo", "idle")):
        (fake_slurm / tool).write_text(f"#!/bin/sh\nprintf '%s' '{said}'\n")
        (fake_slurm / tool).chmod(0o755)
    powered_off = fake_slurm / "powered-off"
    fake_slurm.chmod(0o777)  # the test user's poweroff command writes here
    fleet = Fleet(config.nodes, config.health)
    collector = Collector(config, fleet)
    await collector.start()
    try:
        await _until(lambda: fleet.nodes[name].link is LinkState.STREAMING, 40)
        assert collector.package is not None
        start = watchdog_command(
            collector.package,
            config.agent,
            node=name,
            lease_s=LEASE_S,
            poweroff=f"echo off >> {powered_off}",
            idle_gpu_util_below=5.0,
        )
        # A session that waited for the daemon would time out here: it must let go.
        started = await collector.run_on(name, f"PATH={fake_slurm}:$PATH {start}", 10)
        assert started.exit_status == 0, started
        assert f"tidectl agent watchdog: watching {on_node}/lease (pid " in started.stdout
        again = await collector.run_on(name, f"PATH={fake_slurm}:$PATH {start}", 10)
        assert "already watching" in again.stdout, again
        await asyncio.sleep(2 * LEASE_S)  # the agent streams: the lease is held
        assert not powered_off.exists()
    finally:
        await collector.stop()  # the control plane is gone
    took = await _until(powered_off.exists, 10)
    assert took >= LEASE_S - 0.3, "powered off before the lease ran out"
    assert powered_off.read_text() == "off\n"
    log = (on_node / "lease.watchdog.log").read_text()
    assert "no control plane holds it" in log and "powering off: the lease is" in log
