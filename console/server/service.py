"""``tidectl serve``'s listener: the ControlPlane behind a Unix socket.

Each connection is one client (a CLI call, a console, a notebook); its requests are answered
in order. The caller is the socket peer's login name (``peer.py``) and the front end its
``hello`` named: a client cannot speak for another user. A client that sends garbage gets a
``bad-request`` answer and may go on; one that disconnects mid-request, or is killed, takes
nothing with it — its request finishes (or fails) in the plane as any other would, and no
other client waits on it.

The socket file is created with ``mode`` (0660 by default) and, given ``group``, that group:
who may act is who may open the file. The service opens no TCP port for control; remote
operators forward the socket over SSH (docs/server.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import grp
import logging
import os
import socket
import stat
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import msgspec

from tidectl.console.control.caller import Caller, Frontend
from tidectl.console.control.errors import ControlError, Failed
from tidectl.console.control.plane import AUDIT_LIMIT, ControlPlane
from tidectl.console.lifecycle.states import State
from tidectl.console.server.life_delta import LifeDelta
from tidectl.console.server.peer import Peer, peer_of
from tidectl.console.server.stream import FleetStream
from tidectl.console.server.wire import (
    MAX_LINE_BYTES,
    PROTOCOL,
    ErrorBody,
    ErrorKind,
    Request,
    Response,
    decode_request,
    encode,
)

__all__ = ["Service", "ServiceError"]

_log = logging.getLogger(__name__)
#: Methods that only read: a viewer may call them (actions are checked by the plane).
READS = frozenset({"nodes", "pools", "jobs", "price", "wait", "audit", "host-key", "cost"})
#: The longest a client may ask ``wait`` to wait, in seconds.
MAX_WAIT_S = 24 * 3600.0
#: The most audit records one ``audit`` answer holds: a few hundred bytes each, well under the
#: longest line a client reads.
MAX_AUDIT_LIMIT = 2000


class ServiceError(Exception):
    """The service cannot listen where it was asked to; ``str()`` says why."""


class BadRequest(Exception):
    pass


Handler = Callable[[Caller, Mapping[str, Any]], Awaitable[Any]]
#: Tells the client one step of a long call's progress (an interim answer).
Tell = Callable[[Any], None]
LongHandler = Callable[[Caller, Mapping[str, Any], Tell], Awaitable[Any]]


class Service:
    def __init__(
        self,
        plane: ControlPlane,
        path: Path,
        *,
        mode: int = 0o660,
        group: str | None = None,
        send_timeout_s: float = 10.0,
    ) -> None:
        self.plane = plane
        self.send_timeout_s = send_timeout_s
        #: Streaming clients let go because they stopped reading.
        self.dropped_clients = 0
        self.path = path
        self.mode = mode
        self.group = group
        self._server: asyncio.AbstractServer | None = None
        self._clients: set[asyncio.Task[None]] = set()
        self._closing = False
        self._handlers: dict[str, Handler] = {
            "burst": self._burst,
            "drain": self._drain,
            "resume": self._resume,
            "terminate": self._terminate,
            "cancel": self._cancel,
            "nodes": self._nodes,
            "pools": self._pools,
            "jobs": self._jobs,
            "price": self._price,
            "audit": self._audit,
            "slurm-resume": self._slurm_resume,
            "slurm-suspend": self._slurm_suspend,
            "slurm-resume-fail": self._slurm_resume_fail,
            "host-key": self._host_key,
            "accept-host-key": self._accept_host_key,
            "cost": self._cost,
            "run": self._run,
            "set-pool-policy": self._set_pool_policy,
        }
        #: Long calls, which send interim answers (``more``) before the final one.
        self._long_handlers: dict[str, LongHandler] = {"wait": self._wait}

    # -- life -------------------------------------------------------------------------------

    async def start(self) -> None:
        gid = self._group_id()
        self._clear_stale_socket()
        try:
            self._server = await asyncio.start_unix_server(
                self._serve, path=str(self.path), limit=MAX_LINE_BYTES
            )
        except OSError as error:
            raise ServiceError(f"cannot listen on {self.path}: {error.strerror}") from None
        os.chmod(self.path, self.mode)
        if gid is not None:
            os.chown(self.path, -1, gid)

    async def aclose(self) -> None:
        """Stop accepting, let requests under way finish, remove the socket file."""
        self._closing = True
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for task in list(self._clients):
            task.cancel()
        await asyncio.gather(*self._clients, return_exceptions=True)
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    def _group_id(self) -> int | None:
        if self.group is None:
            return None
        try:
            return grp.getgrnam(self.group).gr_gid
        except KeyError:
            raise ServiceError(
                f"no group named {self.group!r} on this machine; create it or name another "
                "in [server] group"
            ) from None

    def _clear_stale_socket(self) -> None:
        """A socket file left by a service that died. Ours to remove: the store's lock is
        held by this process, so no other service can be listening on it."""
        try:
            mode = self.path.lstat().st_mode
        except FileNotFoundError:
            return
        if not stat.S_ISSOCK(mode):
            raise ServiceError(
                f"{self.path} exists and is not a socket; remove it or choose another path"
            )
        self.path.unlink()

    # -- one client -------------------------------------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._clients.add(task)
        try:
            sock: socket.socket = writer.get_extra_info("socket")
            peer = peer_of(sock)
            _log.info("client %s (pid %d) connected", peer.user, peer.pid)
            await self._conversation(peer, reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the client went away: nothing of it to keep
        except asyncio.CancelledError:
            if not self._closing:
                raise
            # aclose() ended this client. Returned, not raised: asyncio's stream callback
            # (3.11) asks the finished task for its exception, and a cancelled one raises
            # there, logged as an error at every shutdown.
        finally:
            self._clients.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _conversation(
        self, peer: Peer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        frontend, origin = Frontend.CLI, None
        while True:
            try:
                line = await reader.readuntil(b"\n")
            except asyncio.LimitOverrunError:
                await self._send(writer, _bad(0, f"a request is over {MAX_LINE_BYTES} bytes"))
                return
            except asyncio.IncompleteReadError:
                return  # closed, possibly mid-line
            try:
                request = decode_request(line)
            except (msgspec.DecodeError, msgspec.ValidationError) as error:
                await self._send(writer, _bad(0, f"not a request: {error}"))
                continue
            if request.method == "hello":
                frontend, answer = self._hello(peer, request)
                origin = _origin(request.params) if answer.error is None else None
                await self._send(writer, answer)
                continue
            if request.method == "subscribe":
                await self._subscribe(Caller(peer.user, frontend, origin), request, writer)
                return  # a streaming connection takes no more requests
            answer = await self._answer(Caller(peer.user, frontend, origin), request, writer)
            await self._send(writer, answer)

    async def _subscribe(
        self, caller: Caller, request: Request, writer: asyncio.StreamWriter
    ) -> None:
        access = self.plane.roles.check(caller.user, "read")
        if not access.allowed:
            await self._send(
                writer, Response(request.id, error=ErrorBody("refused", access.sentence))
            )
            return
        fleet = self.plane.fleet
        if fleet is None:
            await self._send(writer, _bad(request.id, "this service watches no fleet"))
            return
        every = request.params.get("every_s", 0.5)
        if not isinstance(every, int | float) or not 0.05 <= every <= 60:
            await self._send(writer, _bad(request.id, "every_s must be 0.05 to 60 seconds"))
            return
        detail = request.params.get("detail", "summary")
        if detail not in ("summary", "full"):
            await self._send(writer, _bad(request.id, "detail must be summary or full"))
            return
        result: dict[str, Any] = {"subscribed": True}
        life = None
        if detail == "full":
            # What a mirror derives its findings with, so it sees what the service sees.
            result |= {"thresholds": fleet.thresholds, "history_s": fleet.history_s}
            life = LifeDelta(self.plane)
        await self._send(writer, Response(request.id, result=msgspec.to_builtins(result)))
        stream = FleetStream(
            fleet,
            writer,
            every_s=float(every),
            send_timeout_s=self.send_timeout_s,
            detail=detail,
            life=life,
        )
        await stream.run()
        if stream.dropped:
            self.dropped_clients += 1
            _log.warning("dropped a client that stopped reading its fleet updates")

    def _hello(self, peer: Peer, request: Request) -> tuple[Frontend, Response]:
        try:
            frontend = Frontend(request.params.get("frontend", "cli"))
        except ValueError:
            frontend = Frontend.SERVICE
        if frontend is Frontend.SERVICE:  # the plane's own automation: never a client
            known = ", ".join(f.value for f in Frontend if f is not Frontend.SERVICE)
            return Frontend.CLI, _bad(request.id, f"front end must be one of {known}")
        result = {
            "protocol": PROTOCOL,
            "user": peer.user,
            "cluster": self.plane.config.name,
        }
        return frontend, Response(request.id, result=result)

    async def _answer(
        self, caller: Caller, request: Request, writer: asyncio.StreamWriter
    ) -> Response:
        def tell(step: Any) -> None:
            # Buffered, not awaited: a client slow to read its progress holds up nobody;
            # the final answer's drain waits for all of it.
            writer.write(encode(Response(request.id, msgspec.to_builtins(step), more=True)))

        handler = self._handlers.get(request.method)
        long_handler = self._long_handlers.get(request.method)
        if handler is None and long_handler is None:
            return _bad(request.id, f"no method {request.method!r}")
        if request.method in READS:
            access = self.plane.roles.check(caller.user, "read")
            if not access.allowed:  # actions are checked by the plane itself
                return Response(request.id, error=ErrorBody("refused", access.sentence))
        try:
            if long_handler is not None:
                result = await long_handler(caller, request.params, tell)
            else:
                assert handler is not None
                result = await handler(caller, request.params)
        except BadRequest as error:
            return _bad(request.id, str(error))
        except ControlError as error:
            kind: ErrorKind = "failed" if isinstance(error, Failed) else "refused"
            return Response(request.id, error=ErrorBody(kind, str(error), error.request_id))
        return Response(request.id, result=msgspec.to_builtins(result))

    @staticmethod
    async def _send(writer: asyncio.StreamWriter, response: Response) -> None:
        writer.write(encode(response))
        await writer.drain()

    # -- the methods ------------------------------------------------------------------------

    async def _burst(self, caller: Caller, params: Mapping[str, Any]) -> Any:
        return await self.plane.burst(
            caller,
            _text(params, "pool"),
            count=_number(params, "count"),
            ensure=_number(params, "ensure"),
            request_id=_optional_text(params, "request_id"),
            token=_optional_text(params, "token"),
            data_class=_optional_text(params, "data_class"),
        )

    async def _drain(self, caller: Caller, params: Mapping[str, Any]) -> Any:
        return await self.plane.drain(
            caller,
            _nodes(params),
            reason=_text(params, "reason"),
            request_id=_optional_text(params, "request_id"),
        )

    async def _resume(self, caller: Caller, params: Mapping[str, Any]) -> Any:
        return await self.plane.resume(
            caller, _nodes(params), request_id=_optional_text(params, "request_id")
        )

    async def _terminate(self, caller: Caller, params: Mapping[str, Any]) -> Any:
        return await self.plane.terminate(
            caller,
            _nodes(params),
            reason=_text(params, "reason"),
            request_id=_optional_text(params, "request_id"),
        )

    async def _cancel(self, caller: Caller, params: Mapping[str, Any]) -> Any:
        return await self.plane.cancel(
            caller, _text(params, "intent"), request_id=_optional_text(params, "request_id")
        )

    async def _nodes(self, caller: Caller, params: Mapping[str, Any]) -> Any:
        return self.plane.nodes(_optional_text(params, "pool"))

    async def _slurm_resume(self, caller: Caller, params: Mapping[str, Any]) -> Any:
        return await self.plane.slurm_resume(
            caller, _nodes(params), request_id=_optional_text(params, "request_id")
        )

    async def _slurm_suspend(self, caller: Caller, params: Mapping[str, Any]) -> Any:
        return await self.plane.slurm_suspend(
            caller, _nodes(params), request_id=_optional_text(params, "request_id")
        )

    async def _slurm_resume_fail(self, caller: Caller, params: Mapping[str, Any]) -> Any:
        return await self.plane.slurm_resume_failed(
            caller, _nodes(params), request_id=_optional_text(params, "request_id")
        )

    async def _host_key(self, caller: Caller, params: Mapping[str, Any]) -> Any:
        return await self.plane.presented_host_key(caller, _text(params, "node"))

    async def _accept_host_key(self, caller: Caller, params: Mapping[str, Any]) -> Any:
        return await self.plane.accept_host_key(
            caller,
            _text(params, "node"),
            fingerprint=_text(params, "fingerprint"),
            request_id=_optional_text(params, "request_id"),
        )

    async def _pools(self, caller: Caller, params: Mapping[str, Any]) -> Any:
        return self.plane.pools()

    async def _jobs(self, caller: Caller, params: Mapping[str, Any]) -> Any:
        names = _nodes(params)
        if isinstance(names, str):
            raise BadRequest("jobs takes a list of node names")
        return await self.plane.jobs_on(names)

    async def _wait(self, caller: Caller, params: Mapping[str, Any], tell: Tell) -> Any:
        names = _nodes(params)
        if isinstance(names, str):
            raise BadRequest("wait takes a list of node names")
        try:
            until = {State(s) for s in params.get("until", [])}
        except ValueError as error:
            raise BadRequest(f"until: {error}") from None
        timeout = params.get("timeout_s", 60.0)
        if not isinstance(timeout, int | float) or not 0 <= timeout <= MAX_WAIT_S:
            raise BadRequest(f"timeout_s must be 0 to {MAX_WAIT_S:.0f} seconds")
        progress = params.get("progress", False)
        return await self.plane.wait(
            names, until, timeout_s=float(timeout), on_progress=tell if progress else None
        )

    async def _price(self, caller: Caller, params: Mapping[str, Any]) -> Any:
        return await self.plane.price_per_hour(_text(params, "pool"))

    async def _run(self, caller: Caller, params: Mapping[str, Any]) -> Any:
        timeout = params.get("timeout_s", 30.0)
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0:
            raise BadRequest("timeout_s must be a number of seconds above 0")
        return await self.plane.run_command(
            caller,
            _nodes(params),
            _text(params, "command"),
            timeout_s=min(float(timeout), MAX_WAIT_S),
            request_id=_optional_text(params, "request_id"),
        )

    async def _set_pool_policy(self, caller: Caller, params: Mapping[str, Any]) -> Any:
        pressure = params.get("burst_on_pressure")
        if pressure is not None and not isinstance(pressure, bool):
            raise BadRequest("burst_on_pressure must be true, false or null")
        return await self.plane.set_pool_policy(
            caller,
            _text(params, "pool"),
            min_nodes=_number(params, "min_nodes"),
            max_nodes=_number(params, "max_nodes"),
            burst_on_pressure=pressure,
            request_id=_optional_text(params, "request_id"),
        )

    async def _cost(self, caller: Caller, params: Mapping[str, Any]) -> Any:
        since = params.get("since")
        if since is not None and (isinstance(since, bool) or not isinstance(since, int | float)):
            raise BadRequest("since must be a time in epoch seconds, or null for the UTC day")
        return await self.plane.cost_report(caller, since=None if since is None else float(since))

    async def _audit(self, caller: Caller, params: Mapping[str, Any]) -> Any:
        since = _optional_text(params, "since")
        try:
            start = None if since is None else datetime.fromisoformat(since)
        except ValueError:
            raise BadRequest(f"since must be an ISO-8601 time, not {since!r}") from None
        limit = _number(params, "limit")
        if limit is not None and not 0 <= limit <= MAX_AUDIT_LIMIT:
            raise BadRequest(f"limit must be 0 to {MAX_AUDIT_LIMIT}")
        return await self.plane.audit_records(
            caller,
            since=start,
            actor=_optional_text(params, "actor"),
            action=_optional_text(params, "action"),
            limit=AUDIT_LIMIT if limit is None else limit,
        )


def _origin(params: Mapping[str, Any]) -> str | None:
    """What the client says its requests come from (a playbook's path and hash), for the
    audit log: a label, never an identity; kept to one short line."""
    origin = params.get("origin")
    if not isinstance(origin, str) or not origin.strip():
        return None
    return " ".join(origin.split())[:1024]


def _bad(request_id: int, message: str) -> Response:
    return Response(request_id, error=ErrorBody("bad-request", message))


def _text(params: Mapping[str, Any], key: str) -> str:
    value = params.get(key)
    if not isinstance(value, str):
        raise BadRequest(f"{key} must be a string")
    return value


def _optional_text(params: Mapping[str, Any], key: str) -> str | None:
    return None if params.get(key) is None else _text(params, key)


def _number(params: Mapping[str, Any], key: str) -> int | None:
    value = params.get(key)
    if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
        raise BadRequest(f"{key} must be a whole number")
    return value


def _nodes(params: Mapping[str, Any]) -> str | list[str]:
    value = params.get("nodes")
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return list(value)
    raise BadRequest("nodes must be a node set (a string) or a list of names")
