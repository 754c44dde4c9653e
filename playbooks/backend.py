"""The control plane a playbook acts through: the embedded one, or ``tidectl serve``'s.

Both answer the same calls (:class:`Backend`), so a step is written once. Every action goes
through the control plane — roles, the audit log and the engine's rules apply there, never
here — and so do the reads a step decides on:

* :class:`LocalBackend` wraps a :class:`~tidectl.console.control.plane.ControlPlane` in this
  process (``assemble``d from cluster.toml, or the demo's);
* :class:`RemoteBackend` attaches to a running service: actions, waits and the lifecycle
  records through a ``RemotePlane`` (carrying the playbook's origin for the audit log), and
  the fleet and the scheduler's view from the service's stream (``AttachedPlane``).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Collection, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from tidectl.console.config.model import ClusterConfig
from tidectl.console.control.caller import Caller, Frontend
from tidectl.console.control.plane import ControlPlane, Progress
from tidectl.console.cost.report import CostReport
from tidectl.console.fleet import Fleet
from tidectl.console.lifecycle.burst import BurstResult
from tidectl.console.lifecycle.operate import ActionResult
from tidectl.console.lifecycle.states import State
from tidectl.console.server.mirror import LifeMessage, LifeMirror
from tidectl.playbooks.world import World

if TYPE_CHECKING:
    from tidectl.console.server.attach import AttachedPlane
    from tidectl.console.server.client import RemotePlane
    from tidectl.console.transport.link import CommandResult

__all__ = ["Backend", "LocalBackend", "RemoteBackend"]

OnProgress = Callable[[Progress], None]


class Backend(Protocol):
    """What a step asks of the control plane."""

    config: ClusterConfig

    @property
    def reports(self) -> list[str]:
        """The control plane's latest sentences about what it could not do (for a failure)."""
        ...

    async def world(self, launched: Collection[str]) -> World: ...

    async def burst(
        self, caller: Caller, pool: str, *, ensure: int, data_class: str | None
    ) -> BurstResult: ...

    async def drain(self, caller: Caller, nodes: Sequence[str], *, reason: str) -> ActionResult: ...

    async def resume(self, caller: Caller, nodes: Sequence[str]) -> ActionResult: ...

    async def terminate(
        self, caller: Caller, nodes: Sequence[str], *, reason: str
    ) -> ActionResult: ...

    async def wait(
        self,
        nodes: Collection[str],
        until: Collection[State],
        *,
        timeout_s: float,
        on_progress: OnProgress | None = None,
    ) -> Progress: ...

    async def run_command(
        self, caller: Caller, nodes: Sequence[str], command: str, *, timeout_s: float
    ) -> list[CommandResult]: ...

    async def price_per_hour(self, pool: str) -> float | None: ...

    async def cost_report(self, caller: Caller) -> CostReport: ...


class _Forwarding:
    """The actions and reads both backends pass on unchanged to what acts for them: the
    ``ControlPlane`` in this process, or the service's ``RemotePlane`` (the same calls)."""

    _acts: ControlPlane | RemotePlane

    async def burst(
        self, caller: Caller, pool: str, *, ensure: int, data_class: str | None
    ) -> BurstResult:
        return await self._acts.burst(caller, pool, ensure=ensure, data_class=data_class)

    async def drain(self, caller: Caller, nodes: Sequence[str], *, reason: str) -> ActionResult:
        return await self._acts.drain(caller, list(nodes), reason=reason)

    async def resume(self, caller: Caller, nodes: Sequence[str]) -> ActionResult:
        return await self._acts.resume(caller, list(nodes))

    async def terminate(self, caller: Caller, nodes: Sequence[str], *, reason: str) -> ActionResult:
        return await self._acts.terminate(caller, list(nodes), reason=reason)

    async def wait(
        self,
        nodes: Collection[str],
        until: Collection[State],
        *,
        timeout_s: float,
        on_progress: OnProgress | None = None,
    ) -> Progress:
        return await self._acts.wait(nodes, until, timeout_s=timeout_s, on_progress=on_progress)

    async def run_command(
        self, caller: Caller, nodes: Sequence[str], command: str, *, timeout_s: float
    ) -> list[CommandResult]:
        return await self._acts.run_command(caller, list(nodes), command, timeout_s=timeout_s)

    async def price_per_hour(self, pool: str) -> float | None:
        return await self._acts.price_per_hour(pool)

    async def cost_report(self, caller: Caller) -> CostReport:
        return await self._acts.cost_report(caller)


class LocalBackend(_Forwarding):
    """The control plane in this process. Reads ask the scheduler afresh (no reconcile pass
    is run for them, so a ``--check`` moves nothing); waits run passes when the plane's loop
    is not running."""

    def __init__(self, plane: ControlPlane) -> None:
        self.plane = plane
        self.config = plane.config
        self._acts = plane

    @property
    def reports(self) -> list[str]:
        return self.plane.reports

    async def world(self, launched: Collection[str]) -> World:
        snapshot = await self.plane.scheduler_now()
        return World.gather(
            self.config,
            self.plane.nodes(),
            self.plane.fleet,
            snapshot,
            launched=launched,
            has_scheduler=self.plane.has_scheduler,
        )


class _HeardLife(LifeMirror):
    """The service's lifecycle, mirrored; ``heard`` is set by its first message."""

    def __init__(self) -> None:
        super().__init__()
        self.heard = asyncio.Event()

    def apply(self, message: LifeMessage) -> None:
        super().apply(message)
        self.heard.set()


class RemoteBackend(_Forwarding):
    """``tidectl serve`` at ``path``: ``async with RemoteBackend(...)`` attaches (raises
    ``ServiceUnavailable``, a ``ControlError``, when nothing answers there)."""

    def __init__(self, config: ClusterConfig, path: Path, *, origin: str | None = None) -> None:
        from tidectl.console.server.attach import AttachedPlane
        from tidectl.console.server.client import RemotePlane

        self.config = config
        self.path = path
        #: Actions and waits, in the service, as this user through the playbook front end.
        self.remote: RemotePlane = RemotePlane(path, Frontend.PLAYBOOK, origin=origin)
        self._acts = self.remote
        #: The service's fleet, records and scheduler view, mirrored here.
        self.attached: AttachedPlane = AttachedPlane(
            path, Fleet((), config.health), frontend=Frontend.PLAYBOOK
        )
        self._life = _HeardLife()
        self.attached.life = self._life

    async def ready(self, timeout_s: float = 5.0) -> None:
        """Until the service's first lifecycle message has been mirrored (the records and
        the scheduler's view a step selects from), within ``timeout_s``."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                await self._life.heard.wait()

    async def __aenter__(self) -> RemoteBackend:
        await self.remote.connect()
        try:
            await self.attached.__aenter__()
        except BaseException:
            await self.remote.aclose()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.attached.__aexit__(*exc)
        await self.remote.aclose()

    @property
    def reports(self) -> list[str]:
        return self.attached.reports

    async def world(self, launched: Collection[str]) -> World:
        # The records asked of the service (what an action just changed is there at once);
        # health and the scheduler's view from the stream, which follows within a second.
        return World.gather(
            self.config,
            await self.remote.nodes(),
            self.attached.fleet,
            self.attached.scheduler_snapshot(),
            launched=launched,
            has_scheduler=self.config.scheduler.kind != "none",
        )
