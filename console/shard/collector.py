"""The console's side of collection in workers: ``ShardedCollector``.

It has the ``Collector``'s interface (``add_node``, ``remove_node``, ``retry``, ``run_on``,
``links`` for membership), so the control plane and the front ends use either. Nodes are
dealt to the workers in turn (a joining node to the worker with the fewest). A worker that
dies is said on each of its nodes (unreachable, with the exit status) and started again
after a backoff, with the same nodes; a command in flight on it ends with that error.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import sys
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from tidectl.console.config.model import ClusterConfig, NodeSpec
from tidectl.console.fleet import DuplicateNodeError, Fleet
from tidectl.console.model import LinkState
from tidectl.console.shard import frames
from tidectl.console.transport.backoff import Backoff
from tidectl.console.transport.deploy import AgentPackage
from tidectl.console.transport.link import CommandResult
from tidectl.console.transport.ssh import SshConnector

log = logging.getLogger(__name__)

#: How long a worker may take to start (an interpreter and imports) and to stop.
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 10.0
#: A removal the worker does not confirm in this long is taken as done (its link is gone
#: with the worker, if it is stuck).
REMOVE_TIMEOUT_S = 15.0


class WorkersDidNotStart(Exception):
    """The worker processes did not come up; the message says what to do."""


class _Worker:
    """One worker process and what the console keeps about it."""

    def __init__(self, index: int) -> None:
        self.index = index
        self.nodes: set[str] = set()
        self.process: asyncio.subprocess.Process | None = None
        self.ready = asyncio.Event()
        self.decoded = self.refused = 0
        self.waiting: dict[int, asyncio.Future[Any]] = {}
        self.backoff = Backoff(1.0, 30.0)

    def send(self, message: tuple[Any, ...]) -> bool:
        process = self.process
        if process is None or process.stdin is None or process.stdin.is_closing():
            return False
        process.stdin.write(frames.encode(message))
        return True


class ShardedCollector:
    def __init__(
        self,
        config: ClusterConfig,
        fleet: Fleet,
        *,
        workers: int,
        connector: SshConnector | None = None,
        package: AgentPackage | None = None,
        stream_agents: bool = True,
    ) -> None:
        if workers < 1:
            raise ValueError(f"a sharded collector needs 1 or more workers, not {workers}")
        self.config = config
        self.fleet = fleet
        fleet.derived_elsewhere = True
        #: The console's own connector: for what it asks of nodes itself (a new node's
        #: presented host key); the links live in the workers.
        self.connector = connector or SshConnector(config.ssh)
        if stream_agents and package is None:
            package = AgentPackage.build()
        self._package = package if stream_agents else None
        self._stream_agents = stream_agents
        self._workers = [_Worker(i) for i in range(workers)]
        #: Node name → the worker that watches it.
        self._home: dict[str, _Worker] = {}
        for spec, worker in zip(config.nodes, itertools.cycle(self._workers), strict=False):
            worker.nodes.add(spec.name)
            self._home[spec.name] = worker
        self._specs: dict[str, NodeSpec] = {spec.name: spec for spec in config.nodes}
        self._tasks: list[asyncio.Task[None]] = []
        self._ids = itertools.count(1)
        self._stopping = False

    @property
    def package(self) -> AgentPackage | None:
        return self._package

    @property
    def links(self) -> Mapping[str, int]:
        """The nodes watched, each with the number of the worker that watches it."""
        return {name: worker.index for name, worker in self._home.items()}

    @property
    def worker_pids(self) -> list[int]:
        """The running workers' process ids (for measuring what they cost)."""
        return [w.process.pid for w in self._workers if w.process is not None]

    @property
    def lines_decoded(self) -> int:
        return sum(worker.decoded for worker in self._workers)

    @property
    def lines_refused(self) -> int:
        return sum(worker.refused for worker in self._workers)

    # -- running -----------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the workers; returns once each has started its links (raises
        ``WorkersDidNotStart`` after ``START_TIMEOUT_S``, the workers stopped again)."""
        for worker in self._workers:
            task = asyncio.create_task(self._keep(worker), name=f"shard-{worker.index}")
            self._tasks.append(task)
        try:
            async with asyncio.timeout(START_TIMEOUT_S):
                for worker in self._workers:
                    await worker.ready.wait()
        except TimeoutError:
            await self.stop()
            raise WorkersDidNotStart(
                f"the collector's worker processes did not start within {START_TIMEOUT_S:g} s "
                "(their errors are in the log); set [collector] workers = 0 to collect in "
                "this process"
            ) from None

    async def stop(self) -> None:
        # The fleet keeps the last state each node was seen in, as the Collector's does.
        self._stopping = True
        for worker in self._workers:
            worker.send(("stop",))
        for worker in self._workers:
            process = worker.process
            if process is None:
                continue
            try:
                async with asyncio.timeout(STOP_TIMEOUT_S):
                    await process.wait()
            except TimeoutError:
                log.warning("collector worker %d did not stop; killing it", worker.index)
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks = []
        await self.connector.close()

    async def __aenter__(self) -> ShardedCollector:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def _keep(self, worker: _Worker) -> None:
        """Run ``worker``, and start it again each time it dies, until the collector stops."""
        while not self._stopping:
            try:
                ended = f"ended (status {await self._run(worker)})"
            except Exception as exc:  # cannot start a process: said, and tried again
                ended = f"could not start ({exc})"
            said = f"the collector's worker process {ended}; restarting it"
            for future in worker.waiting.values():
                if not future.done():
                    future.set_exception(ConnectionError(said))
            worker.waiting.clear()
            if self._stopped_meanwhile():
                return
            log.warning("collector worker %d: %s", worker.index, said)
            worker.ready.clear()
            for name in worker.nodes:
                if name in self.fleet.nodes:
                    self.fleet.on_link(name, LinkState.UNREACHABLE, said)
            await asyncio.sleep(worker.backoff.next_delay())

    def _stopped_meanwhile(self) -> bool:
        return self._stopping

    async def _run(self, worker: _Worker) -> int | None:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tidectl.console.shard.worker",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            limit=frames.MAX_FRAME_BYTES,
            start_new_session=True,  # a Ctrl-C is the console's to handle, not the workers'
        )
        worker.process = process
        shard = tuple(self._specs[name] for name in self._specs if name in worker.nodes)
        worker.send(
            (
                "init",
                replace(self.config, nodes=shard),
                self._package.data if self._package is not None else None,
                self._stream_agents,
                self.fleet.history_s,
            )
        )
        worker.send(("peers", self.fleet.peer_context))
        assert process.stdout is not None and process.stderr is not None
        logs = asyncio.create_task(self._log(worker, process.stderr))
        try:
            await self._read(worker, process.stdout)
        except frames.FrameError as exc:
            log.error("collector worker %d: %s; restarting it", worker.index, exc)
            with contextlib.suppress(ProcessLookupError):
                process.kill()
        finally:
            status = await process.wait()
            logs.cancel()
            worker.process = None
        return status

    async def _read(self, worker: _Worker, stdout: asyncio.StreamReader) -> None:
        fleet = self.fleet
        while (message := await frames.read(stdout)) is not None:
            kind = message[0]
            if kind == "batch":
                _, digests, worker.decoded, worker.refused = message
                moved = False
                for name, digest in digests:
                    if name in fleet.nodes and self._home.get(name) is worker:
                        moved |= fleet.take(name, digest)
                if moved:
                    self._tell_peers()
            elif kind == "ready":
                worker.backoff.reset()
                worker.ready.set()
            elif kind in ("ran", "removed"):
                future = worker.waiting.pop(message[1], None)
                if future is not None and not future.done():
                    future.set_result(message[2] if kind == "ran" else None)

    async def _log(self, worker: _Worker, stderr: asyncio.StreamReader) -> None:
        while line := await stderr.readline():
            log.warning(
                "collector worker %d: %s", worker.index, line.decode(errors="replace").rstrip()
            )

    def _tell_peers(self) -> None:
        context = self.fleet.peer_context
        for worker in self._workers:
            worker.send(("peers", context))

    def _ask(self, worker: _Worker, message: tuple[Any, ...]) -> asyncio.Future[Any]:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        rid = next(self._ids)
        if worker.send((message[0], rid, *message[1:])):
            worker.waiting[rid] = future
        else:
            future.set_exception(ConnectionError("the collector's worker process is restarting"))
        return future

    # -- membership while running --------------------------------------------------------------

    def add_node(self, spec: NodeSpec) -> None:
        """Watch one more node: into the fleet, and to the worker with the fewest nodes."""
        if spec.name in self._home:
            raise DuplicateNodeError(
                f"node {spec.name!r} is already watched by the collector; remove it first, "
                "or give the new node another name"
            )
        self.fleet.add(spec)
        worker = min(self._workers, key=lambda w: len(w.nodes))
        worker.nodes.add(spec.name)
        self._home[spec.name] = worker
        self._specs[spec.name] = spec
        worker.send(("add", spec))  # a worker restarting gets it with its init

    def retry(self, name: str) -> None:
        worker = self._home.get(name)
        if worker is not None:
            worker.send(("retry", name))

    async def remove_node(self, name: str) -> None:
        """Stop watching a node: its link is stopped and closed in its worker before this
        returns, then it leaves the fleet. A name not watched is left alone."""
        worker = self._home.get(name)
        if worker is None:
            return
        try:
            async with asyncio.timeout(REMOVE_TIMEOUT_S):
                await self._ask(worker, ("remove", name))
        except (TimeoutError, ConnectionError) as exc:
            log.warning("%s: its worker did not confirm the removal (%s)", name, exc)
        worker.nodes.discard(name)
        del self._home[name]
        del self._specs[name]
        self.connector.forget(name)
        if name in self.fleet.nodes:
            before = self.fleet.peer_context
            self.fleet.remove(name)
            if self.fleet.peer_context != before:
                self._tell_peers()

    async def run_on(self, name: str, command: str, timeout_s: float) -> CommandResult:
        """Run ``command`` on node ``name`` over its open connection, in its worker."""
        worker = self._home.get(name)
        if worker is None:
            return CommandResult(name, None, "", "", "the collector does not watch this node")
        try:
            # The worker times the command out itself; this only guards against a worker
            # that died or hangs.
            async with asyncio.timeout(timeout_s + 10.0):
                result: CommandResult = await self._ask(worker, ("run", name, command, timeout_s))
        except TimeoutError:
            return CommandResult(name, None, "", "", f"timed out after {timeout_s:g} s")
        except ConnectionError as exc:
            return CommandResult(name, None, "", "", str(exc))
        return result
