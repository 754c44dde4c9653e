"""Starting each cloud node's watchdog: the hard stop for a control plane that died.

A pool with ``[pools.policy] watchdog_lease_s`` has the engine start, on each of its linked
cloud nodes, the agent's watchdog (``tidectl/agents/watchdog.py``): detached on the node, it
powers the node off once no control plane has streamed its agent for a lease and the node
is idle. It is started once the node's agent has been heard (so the agent is deployed), once
per node while the engine runs, and again after a restart: a start while one runs is a no-op
on the node. A start that fails is reported and tried again on the next pass.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Final, Protocol, runtime_checkable

from tidectl.console.config.model import PoolSpec
from tidectl.console.lifecycle.reconcile import Report

__all__ = ["WATCHDOG_START_TIMEOUT_S", "StartsWatchdogs", "Watchdogs"]

#: Starting the watchdog forks a daemon and returns: seconds, but an NVML-less Python may be
#: slow to start on a busy node.
WATCHDOG_START_TIMEOUT_S: Final = 60.0


@runtime_checkable
class StartsWatchdogs(Protocol):
    """A linker that can start a node's watchdog (``bootstrap.Bootstrapper``)."""

    def linked(self, node: str) -> bool: ...

    def watchdog_command(self, node: str, pool: PoolSpec) -> str | None: ...

    async def run(self, node: str, command: str, timeout_s: float) -> str | None: ...


class Watchdogs:
    """Which linked cloud nodes have their watchdog started, and starting the rest.

    ``heard(node)`` says whether the node's agent has spoken (the admission gate's verdict is
    not None), i.e. it is deployed and its stream holds the lease.
    """

    def __init__(
        self,
        linker: object,
        pools: Mapping[str, PoolSpec],
        heard: Callable[[str], bool],
    ) -> None:
        self._linker = linker if isinstance(linker, StartsWatchdogs) else None
        self._pools = pools
        self._heard = heard
        self._started: set[str] = set()

    async def start(self, nodes: Iterable[tuple[str, str | None]]) -> list[Report]:
        """Start the watchdog on each (node, pool) that needs one and has none yet."""
        linker = self._linker
        if linker is None:
            return []
        reports: list[Report] = []
        for name, pool_name in nodes:
            pool = self._pools.get(pool_name or "")
            if pool is None or name in self._started or not linker.linked(name):
                continue
            if pool.policy.watchdog_lease_s is None or not self._heard(name):
                continue
            command = linker.watchdog_command(name, pool)
            if command is None:
                continue
            failure = await linker.run(name, command, WATCHDOG_START_TIMEOUT_S)
            if failure is not None:
                reports.append(
                    Report(name, f"its watchdog did not start (tried again next pass): {failure}")
                )
                continue
            self._started.add(name)
        return reports

    def forget(self, node: str) -> None:
        """The node is gone (unlinked): a node launched again under its name needs a new one."""
        self._started.discard(node)
