"""Where a panel's control plane comes from: the cluster's own, run on the kernel's loop, a
``tidectl serve`` it attaches to, or the demo's simulated cluster.

Each source is an async context manager the panel's task enters: it yields a running
``FrontEndPlane`` (or None when only the fleet can be shown, with the reason said) and stops
it on the way out — when the panel closes. The same choices as the console's
(``tidectl console``): the service named by ``[server] socket`` when one answers, else a
control plane in this process, else the collector alone.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import TYPE_CHECKING

from tidectl.console.config.model import ClusterConfig
from tidectl.console.control.caller import Frontend
from tidectl.console.control.plane import RECONCILE_INTERVAL_S
from tidectl.console.fleet import Fleet

if TYPE_CHECKING:
    from tidectl.console.scheduler.workload import Workload
    from tidectl.console.view.plane import FrontEndPlane

__all__ = ["Say", "Source", "attached", "embedded", "given"]

#: How a source tells the panel something (a warning: it runs without what it wanted).
Say = Callable[[str], None]
Source = Callable[[Say], AbstractAsyncContextManager["FrontEndPlane | None"]]
#: Names this control plane in the store's lock, so a second one says who holds it.
WHO = "tidectl notebook"


def embedded(
    config: ClusterConfig,
    fleet: Fleet,
    *,
    workload: Workload | None = None,
    interval_s: float | None = None,
) -> Source:
    """The cluster's control plane, in this kernel: collector, reconcile and policy loops."""

    @contextlib.asynccontextmanager
    async def source(say: Say) -> AsyncIterator[FrontEndPlane | None]:
        from tidectl.console.control.assemble import AssemblyError, assemble

        try:
            plane = await assemble(
                config,
                fleet=fleet,
                in_process_sim=True,
                workload=workload,
                who=WHO,
                policies=True,
                interval_s=RECONCILE_INTERVAL_S if interval_s is None else interval_s,
            )
        except AssemblyError as error:
            say(f"Burst, drain and Adaptive are off: {error}. The fleet is shown without them.")
            async with _collecting(config, fleet):
                yield None
            return
        async with plane:
            yield plane

    return source


def attached(socket: Path, config: ClusterConfig, fleet: Fleet) -> Source:
    """The service on ``socket``, mirrored into ``fleet``; this kernel's own control plane
    when no service answers (which the store's lock refuses while one holds it)."""

    @contextlib.asynccontextmanager
    async def source(say: Say) -> AsyncIterator[FrontEndPlane | None]:
        from tidectl.console.server.attach import AttachedPlane
        from tidectl.console.server.client import ServiceUnavailable

        plane = AttachedPlane(socket, fleet, frontend=Frontend.NOTEBOOK, on_status=say)
        try:
            await plane.__aenter__()
        except ServiceUnavailable as error:
            say(f"{error}. This panel runs the control plane itself.")
            async with embedded(config, fleet)(say) as own:
                yield own
            return
        try:
            yield plane
        finally:
            await plane.__aexit__(None, None, None)

    return source


def given(plane: FrontEndPlane) -> Source:
    """A control plane someone else runs (and stops): the panel only shows and acts on it."""

    @contextlib.asynccontextmanager
    async def source(say: Say) -> AsyncIterator[FrontEndPlane | None]:
        yield plane

    return source


@contextlib.asynccontextmanager
async def _collecting(config: ClusterConfig, fleet: Fleet) -> AsyncIterator[None]:
    from tidectl.console.collectors import make_collector

    async with make_collector(config, fleet):
        yield
