"""One node's link: a persistent connection, the agent's stream over it, and its repair.

A ``NodeLink`` runs as one task for as long as the console watches the node. It connects,
deploys the agent, reads the agent's lines and hands them on; when anything breaks it says
why (a ``LinkState`` and a sentence), waits a capped, jittered backoff and starts again, so a
node that went away streams again without an operator. A node whose host key does not
match, or that refuses our key, is retried only at the slowest rate: those need a person.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

import asyncssh
from asyncssh.channel import SSHChannel

from tidectl.console.config.model import AgentSettings, NodeSpec
from tidectl.console.model import LinkState
from tidectl.console.transport.backoff import Backoff
from tidectl.console.transport.deploy import AgentPackage, deploy, stream_command
from tidectl.console.transport.errors import AgentFailed, TransportError, Unreachable, classify
from tidectl.console.transport.lines import LineSplitter, LineTooLong
from tidectl.console.transport.ssh import SshConnector

log = logging.getLogger(__name__)

StateCallback = Callable[[str, LinkState, "str | None"], None]
LineCallback = Callable[[str, bytes], None]

_SLOW_STATES = (LinkState.HOST_KEY_MISMATCH, LinkState.AUTH_FAILED)
#: Bytes of the agent's stderr kept for the sentence when it exits (its last line is what
#: says why: a traceback ends with the exception).
_STDERR_KEPT = 4096


@dataclass(frozen=True, slots=True)
class CommandResult:
    node: str
    exit_status: int | None  # None: the command could not be run (see error)
    stdout: str
    stderr: str
    error: str | None = None


class _Recycle(Exception):
    """Raised inside the stream to drop this connection and start over."""


class NodeLink:
    def __init__(
        self,
        spec: NodeSpec,
        connector: SshConnector,
        *,
        on_state: StateCallback,
        on_line: LineCallback | None = None,
        package: AgentPackage | None = None,
        agent: AgentSettings | None = None,
        backoff: Backoff | None = None,
        stale_after_intervals: float = 3.0,
        recycle_after_intervals: float = 10.0,
        max_lines_per_interval: int = 5,
    ) -> None:
        self.spec = spec
        self.name = spec.name
        self._connector = connector
        self._on_state = on_state
        self._on_line = on_line
        self._package = package
        self._agent = agent or AgentSettings()
        settings = connector.settings
        self._backoff = backoff or Backoff(settings.reconnect_min_s, settings.reconnect_max_s)
        interval = self._agent.interval_s
        self._stale_after_s = stale_after_intervals * interval
        self._recycle_after_s = max(recycle_after_intervals * interval, self._stale_after_s)
        self._max_lines = max_lines_per_interval
        self.state = LinkState.STOPPED  # until run() starts
        self.error: str | None = None
        self.conn: asyncssh.SSHClientConnection | None = None
        self.connected = asyncio.Event()
        self._recycle_reason: str | None = None
        self._stream_task: asyncio.Task[None] | None = None
        self._retry_now = asyncio.Event()

    @property
    def streams_agent(self) -> bool:
        return self._package is not None

    def _set(self, state: LinkState, error: str | None = None) -> None:
        if state == self.state and error == self.error:
            return
        self.state, self.error = state, error
        self._on_state(self.name, state, error)

    def recycle(self, reason: str) -> None:
        """Drop the current stream (garbage from the agent): it reconnects after a backoff."""
        self._recycle_reason = reason
        if self._stream_task is not None and not self._stream_task.done():
            self._stream_task.cancel()

    def retry_now(self) -> None:
        """Cut the wait before the next connect short (a host key was just trusted: the
        minute a refused key otherwise waits is for nodes nobody is fixing)."""
        self._retry_now.set()

    async def run(self) -> None:
        """Keep the node connected (and streaming) until cancelled."""
        while True:
            failure: TransportError | None = None
            try:
                await self._session()
            except asyncio.CancelledError:
                # A recycle cancels the stream, not this task: a cancel of this task (the
                # collector stopping, a node removed) must stop it even if one came too.
                current = asyncio.current_task()
                if self._recycle_reason is None or (current and current.cancelling()):
                    self._set(LinkState.STOPPED)
                    raise
                failure = AgentFailed(self.name, self._recycle_reason)
                self._recycle_reason = None
            except TransportError as exc:
                failure = exc
            except Exception as exc:
                failure = classify(self._connector.target(self.spec), exc, "known_hosts")
            finally:
                await self._close()
            if failure is not None:
                self._set(failure.state, failure.message)
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                # A cancel that arrived while closing was swallowed on the way (3.11's
                # wait_for can): honour it rather than sleep and reconnect.
                self._set(LinkState.STOPPED)
                raise asyncio.CancelledError
            delay = (
                self._backoff.maximum_s
                if self.state in _SLOW_STATES
                else self._backoff.next_delay()
            )
            # asyncio.timeout, not wait_for: 3.11's wait_for can swallow a cancel (DECISIONS.md).
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._retry_now.wait()
            self._retry_now.clear()

    async def _close(self) -> None:
        self.connected.clear()
        conn, self.conn = self.conn, None
        if conn is not None:
            conn.close()
            with contextlib.suppress(Exception):
                async with asyncio.timeout(5):
                    await conn.wait_closed()

    async def _session(self) -> None:
        self._set(LinkState.CONNECTING, self.error)
        self.conn = await self._connector.connect(self.spec)
        self.connected.set()
        if self._package is None:
            self._backoff.reset()
            self._set(LinkState.CONNECTED)
            await self.conn.wait_closed()
            raise Unreachable(self.name, "connection closed")
        self._set(LinkState.DEPLOYING)
        deployed = await deploy(self.conn, self.name, self._package, self._agent)
        self._stream_task = asyncio.ensure_future(
            self._stream(self.conn, stream_command(deployed, self._agent))
        )
        try:
            await self._stream_task
        finally:
            self._stream_task = None

    async def _stream(self, conn: asyncssh.SSHClientConnection, command: str) -> None:
        output = _AgentOutput(self)
        channel, _ = await conn.create_session(lambda: output, command, encoding=None)
        try:
            while not output.ended.is_set():
                silent = time.monotonic() - output.last_data
                if silent < self._stale_after_s:
                    wait = self._stale_after_s - silent
                elif silent >= self._recycle_after_s:
                    raise Unreachable(
                        self.name, f"no data from the agent for {silent:.0f} s; reconnecting"
                    )
                else:
                    self._set(LinkState.STALE, f"no data from the agent for {silent:.0f} s")
                    wait = self._stale_after_s
                # One timer per link every few seconds, not one per line (asyncio.timeout,
                # not wait_for: 3.11's wait_for can swallow a cancel, DECISIONS.md).
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(wait):
                        await output.ended.wait()
            if output.failure is not None:
                raise output.failure
            raise self._agent_ended(channel, output)
        finally:
            channel.close()

    def _take(self, output: _AgentOutput, data: bytes) -> None:
        """Lines from the agent's stdout, as they arrive: cut a flood, hand the rest on."""
        try:
            lines = output.splitter.feed(data)
        except LineTooLong as exc:
            output.fail(AgentFailed(self.name, f"agent output refused: {exc}"))
            return
        now = output.last_data = time.monotonic()
        if now - output.window_start >= self._agent.interval_s:
            if output.dropped:
                log.warning("%s: dropped %d lines of a flood", self.name, output.dropped)
            output.window_start, output.window_lines, output.dropped = now, 0, 0
        for line in lines:
            output.window_lines += 1
            # A flood (a broken or hostile agent) is cut before it costs decoding.
            if output.window_lines > self._max_lines:
                output.dropped += 1
                continue
            if self.state != LinkState.STREAMING:
                self._backoff.reset()
                self._set(LinkState.STREAMING)
            if self._on_line is not None:
                self._on_line(self.name, line)

    def _agent_ended(
        self, channel: asyncssh.SSHClientChannel[bytes], output: _AgentOutput
    ) -> TransportError:
        last = output.stderr.decode("utf-8", "replace").strip().splitlines()[-1:] or [""]
        status = channel.get_exit_status()
        detail = f": {last[0][:300]}" if last[0] else ""
        return AgentFailed(self.name, f"agent exited with status {status}{detail}")

    async def run_command(self, command: str, timeout_s: float) -> CommandResult:
        """Run ``command`` over the open connection (for fan-out)."""
        conn = self.conn
        if conn is None:
            return CommandResult(self.name, None, "", "", self.error or "not connected")
        try:
            result = await asyncio.wait_for(conn.run(command, check=False), timeout_s)
        except TimeoutError:
            return CommandResult(self.name, None, "", "", f"timed out after {timeout_s:g} s")
        except (OSError, asyncssh.Error) as exc:
            error = classify(self._connector.target(self.spec), exc, "known_hosts")
            return CommandResult(self.name, None, "", "", error.message)
        return CommandResult(
            self.name,
            result.exit_status,
            _text(result.stdout),
            _text(result.stderr),
        )


class _AgentOutput(asyncssh.SSHClientSession[bytes]):
    """One run of the agent's stream, taken on asyncssh's own callbacks.

    Measured at 1,000 nodes on the 2-core development machine, asyncssh's stream reader (a
    future per read, and a timeout armed around each) cost about 7 points of a core more than
    this: data goes straight from the connection's packet handler to ``NodeLink._take``.
    """

    def __init__(self, link: NodeLink) -> None:
        self._link = link
        self.splitter = LineSplitter()
        self.last_data = time.monotonic()
        self.window_start, self.window_lines, self.dropped = self.last_data, 0, 0
        #: The end of the agent's stderr, for the sentence when it exits.
        self.stderr = bytearray()
        self.failure: BaseException | None = None
        self.ended = asyncio.Event()
        self._channel: asyncssh.SSHClientChannel[bytes] | None = None

    def connection_made(self, chan: SSHChannel[bytes]) -> None:
        self._channel = cast("asyncssh.SSHClientChannel[bytes]", chan)

    def data_received(self, data: bytes, datatype: asyncssh.DataType) -> None:
        if self.failure is not None:
            return  # refused already: the channel is closing
        if datatype == asyncssh.EXTENDED_DATA_STDERR:
            self.stderr += data
            del self.stderr[:-_STDERR_KEPT]
            return
        try:
            self._link._take(self, data)
        except Exception as exc:  # a bug downstream must end this stream, not the connection
            log.exception("%s: handling the agent's output failed", self._link.name)
            self.fail(exc)

    def fail(self, failure: BaseException) -> None:
        """End the stream with ``failure`` (the link reconnects after its backoff)."""
        if self.failure is None:
            self.failure = failure
        if self._channel is not None:
            self._channel.close()
        self.ended.set()

    def connection_lost(self, exc: Exception | None) -> None:
        if exc is not None and self.failure is None:
            self.failure = exc
        self.ended.set()


def _text(value: object) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value if isinstance(value, str) else ""
