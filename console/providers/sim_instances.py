"""One sim cloud instance: its record, the moves its state may make, and how to reach it.

The sim provider keeps one :class:`SimInstance` per instance it launched. Its state follows
EC2's (``pending → running → shutting-down → terminated``; a pending one can be terminated
too) through one table of allowed moves, so a bug that would, say, bring a terminated
instance back to running fails loudly instead of showing the engine a world no cloud has.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Final

from tidectl.console.providers.base import Instance, InstanceState, LaunchRequest

if TYPE_CHECKING:
    from tidectl.console.sim.server import SimServer

__all__ = ["SimEndpoint", "SimInstance"]

_S = InstanceState
#: Where each state may go next. Stopping and stopped are EC2's, but the sim never stops.
MOVES: Final[Mapping[InstanceState, frozenset[InstanceState]]] = {
    _S.PENDING: frozenset({_S.RUNNING, _S.SHUTTING_DOWN}),
    _S.RUNNING: frozenset({_S.SHUTTING_DOWN}),
    _S.SHUTTING_DOWN: frozenset({_S.TERMINATED}),
    _S.TERMINATED: frozenset(),
    _S.STOPPING: frozenset(),
    _S.STOPPED: frozenset(),
}


@dataclass(frozen=True, slots=True)
class SimEndpoint:
    """How to reach a running sim instance over SSH, and the host key that proves it is it.

    The engine must verify the node against ``known_hosts_line`` (``asyncssh``:
    ``known_hosts=asyncssh.import_known_hosts(line)``), never connect unverified.
    """

    instance_id: str
    node: str  # the node's name, also its hostname
    address: str  # 127.0.0.1 (loopback only)
    port: int
    user: str  # the one login the node accepts
    host_key: str  # "ssh-ed25519 AAAA...": the node's own host key, public half
    known_hosts_line: str  # "NODE,[ADDRESS]:PORT ssh-ed25519 AAAA...\n"
    client_key: Path  # the private key the node accepts (the provider's, shared by all)
    folder: Path  # the node's sim folder: faults.txt for `SimFaults`, its login directory


@dataclass(slots=True, eq=False)
class SimInstance:
    """The provider's live record of one instance (mutable; the engine only sees snapshots)."""

    instance_id: str
    node: str
    request: LaunchRequest
    zone: str
    seed: int  # the simulated hardware's seed
    folder: Path
    launched_at: datetime
    address: str
    state: InstanceState = InstanceState.PENDING
    interruption: bool = False  # its spot capacity was reclaimed
    forget: bool = False  # drop it from describe once terminated (a cloud forgets old ones)
    endpoint: SimEndpoint | None = None  # set while running
    server: SimServer | None = None  # its SSH server, from boot until shut down
    boot: asyncio.Task[None] | None = None  # None: booted, or stalled on purpose
    #: Set once its SSH is closed for good: terminate() waits for it.
    unreachable: asyncio.Event = field(default_factory=asyncio.Event)

    def move(self, to: InstanceState) -> None:
        if to not in MOVES[self.state]:
            raise RuntimeError(
                f"sim instance {self.instance_id} cannot go from {self.state} to {to}; this is "
                "a bug in the sim provider"
            )
        self.state = to

    def snapshot(self) -> Instance:
        """The instance as a cloud would report it now."""
        return Instance(
            instance_id=self.instance_id,
            state=self.state,
            instance_type=self.request.instance_type,
            zone=self.zone,
            launched_at=self.launched_at,
            tags=self.request.tags,
            private_ip=None if self.state is InstanceState.TERMINATED else self.address,
            spot=self.request.spot,
            interruption=self.interruption,
        )
