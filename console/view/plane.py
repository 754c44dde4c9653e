"""What a front end asks of the control plane: one interface, two implementations.

The console (and the notebook panel) act through a ``FrontEndPlane``: the in-process
``ControlPlane`` (the embedded default, as in the demo) or a ``server.attach.AttachedPlane``
when a ``tidectl serve`` runs the cluster. The lifecycle reads (``LifeSource``) are
synchronous — the embedded plane reads its store, the attached one its mirror — and the
actions are coroutines that return the plane's result types or raise its ``ControlError``s.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Protocol

from tidectl.console.audit import AuditPage
from tidectl.console.config.model import PoolSpec
from tidectl.console.control.caller import Caller
from tidectl.console.control.host_keys import PresentedKey
from tidectl.console.cost.report import CostReport
from tidectl.console.lifecycle.burst import BurstResult
from tidectl.console.lifecycle.operate import ActionResult
from tidectl.console.scheduler.base import Job
from tidectl.console.view.life import LifeSource

__all__ = ["FrontEndPlane"]


class FrontEndPlane(LifeSource, Protocol):
    def pools(self) -> tuple[PoolSpec, ...]: ...

    async def price_per_hour(self, pool: str) -> float | None: ...

    async def burst(
        self, caller: Caller, pool: str, *, count: int | None = None
    ) -> BurstResult: ...

    async def drain(
        self, caller: Caller, nodes: str | Sequence[str], *, reason: str
    ) -> ActionResult: ...

    async def resume(self, caller: Caller, nodes: str | Sequence[str]) -> ActionResult: ...

    async def terminate(
        self, caller: Caller, nodes: str | Sequence[str], *, reason: str
    ) -> ActionResult: ...

    async def jobs_on(self, nodes: Sequence[str]) -> list[Job]: ...

    async def set_pool_policy(
        self,
        caller: Caller,
        pool: str,
        *,
        min_nodes: int | None = None,
        max_nodes: int | None = None,
        burst_on_pressure: bool | None = None,
    ) -> PoolSpec: ...

    async def presented_host_key(self, caller: Caller, node: str) -> PresentedKey: ...

    async def accept_host_key(self, caller: Caller, node: str, *, fingerprint: str) -> str: ...

    async def cost_report(self, caller: Caller, *, since: float | None = None) -> CostReport: ...

    async def audit_records(
        self,
        caller: Caller,
        *,
        since: datetime | None = None,
        actor: str | None = None,
        action: str | None = None,
        limit: int = ...,
    ) -> AuditPage: ...
