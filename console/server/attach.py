"""A front end attached to ``tidectl serve``: the service's fleet and lifecycle, mirrored
here, and its actions, carried out there.

``AttachedPlane`` is a ``view.plane.FrontEndPlane``: the console works on it as on the
embedded ``ControlPlane``. Two connections to the socket: one for requests (a
``RemotePlane``: burst, drain…, answered in order), one for the ``full`` stream, which a
reader task applies to the front end's ``Fleet`` and to a ``LifeMirror`` (``mirror.py``).

When the service goes away (restarted, upgraded) the mirror keeps its last state — the
fleet's own staleness rule then shows the nodes unheard — and the reader tries again with
capped backoff; ``on_status`` hears a sentence when the link is lost and when it is back.
Actions in between fail with ``ServiceUnavailable``, a ``ControlError`` whose sentence says
so: nothing is queued to happen later behind the operator's back.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, Self

import msgspec

from tidectl.console.audit import AuditPage
from tidectl.console.config.model import PoolSpec
from tidectl.console.control.caller import Caller, Frontend
from tidectl.console.control.host_keys import PresentedKey
from tidectl.console.control.plane import AUDIT_LIMIT
from tidectl.console.cost.report import CostReport
from tidectl.console.fleet import Fleet
from tidectl.console.lifecycle.burst import BurstResult
from tidectl.console.lifecycle.operate import ActionResult
from tidectl.console.lifecycle.records import NodeRecord
from tidectl.console.lifecycle.states import Transition
from tidectl.console.scheduler.base import Job, SchedulerSnapshot
from tidectl.console.server.client import RemotePlane, ServiceUnavailable
from tidectl.console.server.mirror import FleetMessage, FleetMirror, LifeMirror, decode_stream
from tidectl.console.server.wire import Request, decode_response, encode
from tidectl.console.thresholds import HealthThresholds

__all__ = ["AttachedPlane"]

_log = logging.getLogger(__name__)
#: The stream's longest line: the first message holds every node's latest sample (a few
#: KiB each), so it is far longer than a request.
STREAM_LINE_BYTES = 256 * 1024 * 1024
RETRY_FIRST_S = 1.0
RETRY_MAX_S = 30.0


class AttachedPlane:
    """``async with AttachedPlane(path, fleet):`` attached (raises ``ServiceUnavailable`` when
    no service answers); ``fleet`` becomes the service's, node for node."""

    def __init__(
        self,
        path: Path,
        fleet: Fleet,
        *,
        frontend: Frontend = Frontend.CONSOLE,
        on_status: Callable[[str], None] | None = None,
        every_s: float = 0.5,
    ) -> None:
        self.path = path
        self.fleet = fleet
        self.frontend = frontend
        self.on_status = on_status or (lambda sentence: None)
        self.every_s = every_s
        self.fleet_mirror = FleetMirror(fleet)
        self.life = LifeMirror()
        self.remote = RemotePlane(path, frontend)
        self.connected = False
        self._pools: tuple[PoolSpec, ...] = ()
        self._tasks: list[asyncio.Task[None]] = []
        self._stream_writer: asyncio.StreamWriter | None = None

    # -- life -------------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        stream = await self._attach()
        self._tasks = [
            asyncio.create_task(self._follow(stream)),
            asyncio.create_task(self._watch_staleness()),
        ]
        return self

    async def __aexit__(self, *exc: object) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._stream_writer is not None:
            self._stream_writer.close()
        await self.remote.aclose()

    async def _attach(self) -> asyncio.StreamReader:
        """Both connections up, the stream subscribed; returns the stream's reader."""
        await self.remote.aclose()
        self.remote = RemotePlane(self.path, self.frontend)
        await self.remote.connect()
        self._pools = await self.remote.pools()
        try:
            reader, writer = await asyncio.open_unix_connection(
                str(self.path), limit=STREAM_LINE_BYTES
            )
        except OSError as error:
            raise ServiceUnavailable(
                f"the service on {self.path} took a request but not a stream ({error.strerror})",
                request_id="",
            ) from None
        self._stream_writer = writer
        await _ask(reader, writer, Request(1, "hello", {"frontend": self.frontend}))
        answer = await _ask(reader, writer, Request(2, "subscribe", self._subscription()))
        self._take_settings(answer)
        self.fleet_mirror.restart()
        self.life.restart()
        self.connected = True
        return reader

    def _subscription(self) -> dict[str, Any]:
        return {"detail": "full", "every_s": self.every_s}

    def _take_settings(self, answer: Any) -> None:
        """Evaluate with the service's thresholds, so this fleet's findings are its."""
        try:
            thresholds = msgspec.convert(answer["thresholds"], HealthThresholds)
        except (KeyError, TypeError, msgspec.ValidationError) as error:
            raise ServiceUnavailable(
                f"the service on {self.path} sent no usable thresholds ({error}); is it a "
                "different tidectl version?",
                request_id="",
            ) from None
        self.fleet.thresholds = thresholds

    async def _follow(self, reader: asyncio.StreamReader) -> None:
        """Apply the stream until cancelled; reattach (with backoff) whenever it ends."""
        while True:
            await self._apply_stream(reader)
            self.connected = False
            if self._stream_writer is not None:
                self._stream_writer.close()
            self.on_status(
                f"Lost the tidectl service on {self.path}; the fleet shows its last state "
                "until the service is back (trying again)."
            )
            reader = await self._reattach()
            self.on_status(f"Attached to the tidectl service on {self.path} again.")

    async def _apply_stream(self, reader: asyncio.StreamReader) -> None:
        while True:
            try:
                line = await reader.readuntil(b"\n")
            except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
                return
            try:
                message = decode_stream(line)
            except (msgspec.DecodeError, msgspec.ValidationError) as error:
                # One bad message is skipped, not applied in part; the next whole one heals.
                _log.warning("a stream message from the service did not fit: %s", error)
                self.on_status(f"A fleet update from the service could not be read: {error}.")
                continue
            if isinstance(message, FleetMessage):
                self.fleet_mirror.apply(message)
            else:
                self.life.apply(message)

    async def _watch_staleness(self) -> None:
        """What the collector does in the service: a node not heard from in time becomes
        unknown here too — and so does every node while the service itself is away."""
        while True:
            await asyncio.sleep(1.0)
            self.fleet.check_staleness()

    async def _reattach(self) -> asyncio.StreamReader:
        delay = RETRY_FIRST_S
        while True:
            await asyncio.sleep(delay * random.uniform(0.8, 1.2))
            try:
                return await self._attach()
            except ServiceUnavailable:
                delay = min(delay * 2, RETRY_MAX_S)

    # -- the lifecycle reads (the mirror's) -------------------------------------------------

    @property
    def reports(self) -> list[str]:
        return self.life.reports

    @property
    def reported(self) -> int:
        return self.life.reported

    def nodes(self, pool: str | None = None, *, live_only: bool = False) -> list[NodeRecord]:
        return self.life.nodes(pool, live_only=live_only)

    def transitions(self, after_id: int = 0, limit: int = 500) -> list[tuple[int, Transition]]:
        return self.life.transitions(after_id, limit)

    def burn_rate(self, pool: str | None = None) -> float:
        return self.life.burn_rate(pool)

    def pools(self) -> tuple[PoolSpec, ...]:
        return self._pools

    def scheduler_snapshot(self) -> SchedulerSnapshot | None:
        return self.life.scheduler_snapshot()

    # -- the actions (the service's) --------------------------------------------------------

    async def burst(self, caller: Caller, pool: str, *, count: int | None = None) -> BurstResult:
        return await self.remote.burst(caller, pool, count=count)

    async def drain(
        self, caller: Caller, nodes: str | Sequence[str], *, reason: str
    ) -> ActionResult:
        return await self.remote.drain(caller, nodes, reason=reason)

    async def resume(self, caller: Caller, nodes: str | Sequence[str]) -> ActionResult:
        return await self.remote.resume(caller, nodes)

    async def terminate(
        self, caller: Caller, nodes: str | Sequence[str], *, reason: str
    ) -> ActionResult:
        return await self.remote.terminate(caller, nodes, reason=reason)

    async def jobs_on(self, nodes: Sequence[str]) -> list[Job]:
        return await self.remote.jobs_on(nodes)

    async def set_pool_policy(
        self,
        caller: Caller,
        pool: str,
        *,
        min_nodes: int | None = None,
        max_nodes: int | None = None,
        burst_on_pressure: bool | None = None,
    ) -> PoolSpec:
        """Change the pool's policy in the service; ``pools()`` shows it at once."""
        changed = await self.remote.set_pool_policy(
            caller,
            pool,
            min_nodes=min_nodes,
            max_nodes=max_nodes,
            burst_on_pressure=burst_on_pressure,
        )
        self._pools = tuple(changed if p.name == pool else p for p in self._pools)
        return changed

    async def presented_host_key(self, caller: Caller, node: str) -> PresentedKey:
        return await self.remote.presented_host_key(caller, node)

    async def accept_host_key(self, caller: Caller, node: str, *, fingerprint: str) -> str:
        return await self.remote.accept_host_key(caller, node, fingerprint=fingerprint)

    async def price_per_hour(self, pool: str) -> float | None:
        return await self.remote.price_per_hour(pool)

    async def cost_report(self, caller: Caller, *, since: float | None = None) -> CostReport:
        return await self.remote.cost_report(caller, since=since)

    async def audit_records(
        self,
        caller: Caller,
        *,
        since: datetime | None = None,
        actor: str | None = None,
        action: str | None = None,
        limit: int = AUDIT_LIMIT,
    ) -> AuditPage:
        return await self.remote.audit_records(
            caller, since=since, actor=actor, action=action, limit=limit
        )


async def _ask(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: Request) -> Any:
    """One request on the stream connection, before it starts streaming."""
    try:
        writer.write(encode(request))
        await writer.drain()
        response = decode_response(await reader.readuntil(b"\n"))
    except (ConnectionError, asyncio.IncompleteReadError):
        raise ServiceUnavailable(
            "the service closed the stream as it began", request_id=""
        ) from None
    if response.error is not None:
        raise ServiceUnavailable(
            f"the service refused the stream: {response.error.message}", request_id=""
        )
    return response.result
