"""The watchdog of a simulated node: the agent's own decision, run inside the server.

On a real node ``python3 agent.pyz watchdog ...`` detaches a daemon that outlives the SSH
session (``tidectl/agents/detach.py``). A simulated node has no processes of its own, so its
server runs the same :class:`~tidectl.agents.watchdog.Watchdog` as a task: it outlives the
session that started it as the daemon does, and ends with the server (the node's power). It
reads the lease file in the node's login directory, the node's simulated GPUs through the
``sim`` probe, and logs to ``LEASE.watchdog.log`` there, as the real one does. A simulated
node has no Slurm. It reads the GPUs only while the lease is stale, when no agent streams
them: a simulated XID shows in one reading only, and the watchdog must not take it. The
poweroff command goes through the node's shell (``shell.py``), so the default ``sudo
systemctl poweroff`` powers it off the way the server says.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Callable
from pathlib import Path

from tidectl.agents.lease import LOG_SUFFIX
from tidectl.agents.probes.sim import SimNode
from tidectl.agents.watchdog import Watchdog, gpus_busy


async def watch(
    args: argparse.Namespace,
    lease: Path,
    hardware: Callable[[], SimNode],
    power_off: Callable[[], str | None],
) -> None:
    """Watch ``lease`` with the options of ``python3 agent.pyz watchdog`` (``args``) until the
    node is powered off (``power_off()`` returned None) or the task is cancelled."""
    log_path = Path(f"{lease}{LOG_SUFFIX}")

    def log(message: str) -> None:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        with log_path.open("a") as out:  # a short append: cheaper than a thread hop
            out.write(f"{stamp} tidectl-agent watchdog[sim]: {message}\n")

    def busy() -> str | None:
        return gpus_busy(hardware().gpu_sample(), args.idle_gpu_util_below)

    dog = Watchdog(str(lease), args.lease_s, busy, log, idle_window_s=args.idle_window)
    log(
        f"watching {args.lease_file}: lease {args.lease_s:g} s; idle means every GPU below "
        f"{args.idle_gpu_util_below:g} % for {args.idle_window:g} s; a check every "
        f"{args.check_every:g} s; poweroff: {args.poweroff}"
    )
    while True:
        if dog.check():
            failure = power_off()
            if failure is None:
                log("the poweroff command succeeded; the watchdog's work is done")
                return
            dog.poweroff_failed(failure)
        await asyncio.sleep(args.check_every)
