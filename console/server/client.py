"""A front end's side of the service: the ControlPlane's actions, over the Unix socket.

``RemotePlane`` answers the calls the CLI makes of a ``ControlPlane`` — the same names, the
same result types, the same ``Refused``/``Failed`` errors — so a command works unchanged
against the embedded control plane or a running ``tidectl serve``. The caller's user name is
not sent: the service reads it from the socket (``peer.py``); only the front end is.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import Callable, Collection, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self, TypeVar

import msgspec

from tidectl.console.audit import AuditPage
from tidectl.console.config.model import PoolSpec
from tidectl.console.control.caller import Caller, Frontend
from tidectl.console.control.errors import ControlError, Failed, Refused
from tidectl.console.control.host_keys import PresentedKey
from tidectl.console.control.plane import AUDIT_LIMIT, Progress
from tidectl.console.cost.report import CostReport
from tidectl.console.lifecycle.burst import BurstResult
from tidectl.console.lifecycle.operate import ActionResult
from tidectl.console.lifecycle.records import NodeRecord
from tidectl.console.lifecycle.states import State
from tidectl.console.scheduler.base import Job
from tidectl.console.server.wire import MAX_LINE_BYTES, Request, decode_response, encode

if TYPE_CHECKING:  # the transport pulls in asyncssh: imported when a command is run
    from tidectl.console.transport.link import CommandResult

__all__ = ["RemotePlane", "ServiceUnavailable"]

_T = TypeVar("_T")


class ServiceUnavailable(ControlError):
    """No service answers on the socket (not running, or the socket cannot be opened)."""


class RemotePlane:
    """One connection to ``tidectl serve`` at ``path``; ``async with`` (or connect/aclose)."""

    def __init__(self, path: Path, frontend: Frontend, *, origin: str | None = None) -> None:
        self.path = path
        self.frontend = frontend
        #: What this client's requests come from (a playbook's path and hash): said in the
        #: hello, and kept by the service in the audit records of what it asks.
        self.origin = origin
        self.user: str | None = None  # as the service saw us
        self.cluster: str | None = None
        self.reports: list[str] = []  # the service keeps its own; nothing is mirrored here
        self._ids = itertools.count(1)
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._lock = asyncio.Lock()

    async def connect(self) -> Self:
        try:
            self._reader, self._writer = await asyncio.open_unix_connection(
                str(self.path), limit=MAX_LINE_BYTES
            )
        except OSError as error:
            raise ServiceUnavailable(
                f"no tidectl service answers on {self.path} ({error.strerror}); start it with "
                "tidectl serve (to act from this process instead, leave out --server and "
                "[server] socket)",
                request_id="",
            ) from None
        said: dict[str, Any] = {"frontend": str(self.frontend)}
        if self.origin is not None:
            said["origin"] = self.origin
        hello = await self._call("hello", said)
        self.user, self.cluster = hello["user"], hello["cluster"]
        return self

    async def start(self) -> None:
        """The service runs its own loops: nothing to start here."""

    async def aclose(self) -> None:
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(ConnectionError):
                await self._writer.wait_closed()
            self._writer = self._reader = None

    async def __aenter__(self) -> Self:
        return await self.connect()

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # -- the ControlPlane's calls -----------------------------------------------------------

    async def burst(
        self,
        caller: Caller,
        pool: str,
        *,
        count: int | None = None,
        ensure: int | None = None,
        request_id: str | None = None,
        token: str | None = None,
        data_class: str | None = None,
    ) -> BurstResult:
        params = {"pool": pool, "count": count, "ensure": ensure, "data_class": data_class}
        params |= {"request_id": request_id, "token": token}
        return _as(BurstResult, await self._call("burst", params))

    async def drain(
        self,
        caller: Caller,
        nodes: str | Sequence[str],
        *,
        reason: str,
        request_id: str | None = None,
    ) -> ActionResult:
        params = {"nodes": _listed(nodes), "reason": reason, "request_id": request_id}
        return _as(ActionResult, await self._call("drain", params))

    async def resume(
        self, caller: Caller, nodes: str | Sequence[str], *, request_id: str | None = None
    ) -> ActionResult:
        params = {"nodes": _listed(nodes), "request_id": request_id}
        return _as(ActionResult, await self._call("resume", params))

    async def terminate(
        self,
        caller: Caller,
        nodes: str | Sequence[str],
        *,
        reason: str,
        request_id: str | None = None,
    ) -> ActionResult:
        params = {"nodes": _listed(nodes), "reason": reason, "request_id": request_id}
        return _as(ActionResult, await self._call("terminate", params))

    async def cancel(
        self, caller: Caller, burst_intent: str, *, request_id: str | None = None
    ) -> ActionResult:
        params = {"intent": burst_intent, "request_id": request_id}
        return _as(ActionResult, await self._call("cancel", params))

    async def run_command(
        self,
        caller: Caller,
        nodes: str | Sequence[str],
        command: str,
        *,
        timeout_s: float = 30.0,
        request_id: str | None = None,
    ) -> list[CommandResult]:
        """Run ``command`` on ``nodes`` over the service's connections to their agents."""
        from tidectl.console.transport.link import CommandResult

        params: dict[str, Any] = {"nodes": _listed(nodes), "command": command}
        params |= {"timeout_s": timeout_s, "request_id": request_id}
        return [_as(CommandResult, r) for r in await self._call("run", params)]

    async def nodes(self, pool: str | None = None) -> list[NodeRecord]:
        return [_as(NodeRecord, node) for node in await self._call("nodes", {"pool": pool})]

    async def wait(
        self,
        nodes: Collection[str],
        until: Collection[State],
        *,
        timeout_s: float,
        on_progress: Callable[[Progress], None] | None = None,
    ) -> Progress:
        """Waits in the service; ``on_progress`` hears every change as the service sees it."""
        params = {"nodes": list(nodes), "until": [str(s) for s in until], "timeout_s": timeout_s}
        params["progress"] = on_progress is not None

        def step(value: Any) -> None:
            if on_progress is not None:
                on_progress(_as(Progress, value))

        return _as(Progress, await self._call("wait", params, interim=step))

    async def slurm_resume(
        self, caller: Caller, nodes: str | Sequence[str], *, request_id: str | None = None
    ) -> list[BurstResult]:
        params = {"nodes": _listed(nodes), "request_id": request_id}
        return [_as(BurstResult, r) for r in await self._call("slurm-resume", params)]

    async def slurm_suspend(
        self, caller: Caller, nodes: str | Sequence[str], *, request_id: str | None = None
    ) -> ActionResult:
        params = {"nodes": _listed(nodes), "request_id": request_id}
        return _as(ActionResult, await self._call("slurm-suspend", params))

    async def slurm_resume_failed(
        self, caller: Caller, nodes: str | Sequence[str], *, request_id: str | None = None
    ) -> ActionResult:
        params = {"nodes": _listed(nodes), "request_id": request_id}
        return _as(ActionResult, await self._call("slurm-resume-fail", params))

    async def set_pool_policy(
        self,
        caller: Caller,
        pool: str,
        *,
        min_nodes: int | None = None,
        max_nodes: int | None = None,
        burst_on_pressure: bool | None = None,
        request_id: str | None = None,
    ) -> PoolSpec:
        """Change the pool's policy in the service (``ControlPlane.set_pool_policy``)."""
        params = {"pool": pool, "min_nodes": min_nodes, "max_nodes": max_nodes}
        params |= {"burst_on_pressure": burst_on_pressure, "request_id": request_id}
        return _as(PoolSpec, await self._call("set-pool-policy", params))

    async def pools(self) -> tuple[PoolSpec, ...]:
        return tuple(_as(PoolSpec, pool) for pool in await self._call("pools", {}))

    async def jobs_on(self, nodes: Sequence[str]) -> list[Job]:
        """The jobs running on ``nodes`` now (what a drain lets finish)."""
        return [_as(Job, job) for job in await self._call("jobs", {"nodes": list(nodes)})]

    async def price_per_hour(self, pool: str) -> float | None:
        price = await self._call("price", {"pool": pool})
        return None if price is None else float(price)

    async def audit_records(
        self,
        caller: Caller,
        *,
        since: datetime | None = None,
        actor: str | None = None,
        action: str | None = None,
        limit: int = AUDIT_LIMIT,
    ) -> AuditPage:
        """The service's audit log: its newest records and how far its chain verifies."""
        params = {"since": None if since is None else since.isoformat(), "limit": limit}
        params |= {"actor": actor, "action": action}
        return _as(AuditPage, await self._call("audit", params))

    async def cost_report(self, caller: Caller, *, since: float | None = None) -> CostReport:
        """The service's cost report (``ControlPlane.cost_report``)."""
        return _as(CostReport, await self._call("cost", {"since": since}))

    async def presented_host_key(self, caller: Caller, node: str) -> PresentedKey:
        """The host key an on-prem node presents now, fetched by the service."""
        return _as(PresentedKey, await self._call("host-key", {"node": node}))

    async def accept_host_key(
        self, caller: Caller, node: str, *, fingerprint: str, request_id: str | None = None
    ) -> str:
        """Add the node's key to the service's known_hosts (console only, admin)."""
        params = {"node": node, "fingerprint": fingerprint, "request_id": request_id}
        return _as(str, await self._call("accept-host-key", params))

    # -- the wire ---------------------------------------------------------------------------

    async def _call(
        self, method: str, params: dict[str, Any], interim: Callable[[Any], None] | None = None
    ) -> Any:
        """The final answer's result; ``interim`` hears each interim one before it."""
        if self._reader is None or self._writer is None:
            raise ServiceUnavailable("not connected to the service", request_id="")
        request = Request(next(self._ids), method, params)
        async with self._lock:  # one request at a time on a connection: answers come in order
            try:
                self._writer.write(encode(request))
                await self._writer.drain()
                while True:
                    response = decode_response(await self._reader.readuntil(b"\n"))
                    if response.id != request.id:
                        continue  # the answer to a call cancelled while it waited for it
                    if not response.more:
                        break
                    if interim is not None:
                        interim(response.result)
            except (ConnectionError, asyncio.IncompleteReadError):
                raise ServiceUnavailable(
                    f"the service on {self.path} closed the connection; is it still running?",
                    request_id="",
                ) from None
        if response.error is not None:
            error = response.error
            if error.kind == "failed":
                raise Failed(error.message, request_id=error.request_id)
            if error.kind == "refused":
                raise Refused(error.message, request_id=error.request_id)
            raise ServiceUnavailable(
                f"the service did not take the request: {error.message}", request_id=""
            )
        return response.result


def _listed(nodes: str | Sequence[str]) -> str | list[str]:
    return nodes if isinstance(nodes, str) else list(nodes)


def _as(kind: type[_T], value: Any) -> _T:
    """``value`` (plain JSON) as the result type both sides share."""
    return msgspec.convert(value, type=kind)
