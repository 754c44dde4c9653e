"""A collector worker: ``python -m tidectl.console.shard.worker``, started by the console.

It reads frames from stdin and writes frames to a private copy of stdout (anything a library
prints goes to stderr, which the console logs). The first frame is ``("init", config,
package, stream_agents, history_s)`` with ``config.nodes`` this worker's share; then it runs
the ordinary ``Collector`` and a ``Fleet`` over them, and sends ``("batch", digests, decoded,
refused)`` after each of its fleet's flushes (about twenty a second). It ends when told
(``("stop",)``) or when stdin closes (the console is gone).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
from collections.abc import Mapping
from typing import Any

from tidectl.console import gc_tuning
from tidectl.console.collector import Collector
from tidectl.console.config.model import ClusterConfig
from tidectl.console.fleet import Fleet, NodeState
from tidectl.console.health import PeerContext, PeerRates, PortShare
from tidectl.console.history import Row
from tidectl.console.shard import frames
from tidectl.console.shard.digest import HistoryRow, NodeDigest, Sent
from tidectl.console.transport.deploy import AgentPackage

log = logging.getLogger(__name__)

#: How often a worker's fleet hands its changes on: the latency it adds, at most.
FLUSH_S = 0.05
#: Once the links have had this long to connect, long-lived objects are frozen
#: (``gc_tuning``): the connections and node states stop costing full collections.
FREEZE_AFTER_S = 30.0


class _ConsolePeers(PeerRates):
    """Peers as the console adds them up over every worker: this share alone decides
    nothing (``WorkerFleet.set_peer_context`` brings the fleet-wide rates)."""

    def update(self, name: str, share: PortShare) -> bool:
        return False


class WorkerFleet(Fleet):
    """The ordinary fleet over a worker's nodes, keeping the history rows it adds until the
    next digest."""

    def __init__(self, config: ClusterConfig, history_s: float) -> None:
        super().__init__(config.nodes, config.health, history_s=history_s, coalesce_s=FLUSH_S)
        self._peers = _ConsolePeers()
        self.rows: dict[str, list[HistoryRow]] = {}

    def _recorded(self, node: NodeState, at: float, row: Row, gpus: Mapping[int, Row]) -> None:
        self.rows.setdefault(node.name, []).append(
            (at, tuple(row), {index: tuple(values) for index, values in gpus.items()})
        )

    def set_peer_context(self, context: PeerContext) -> None:
        self._peers.context = context
        self._evaluate_all()


class Worker:
    def __init__(
        self,
        config: ClusterConfig,
        package: bytes | None,
        stream_agents: bool,
        history_s: float,
        writer: asyncio.StreamWriter,
    ) -> None:
        self.fleet = WorkerFleet(config, history_s)
        self.collector = Collector(
            config,
            self.fleet,
            package=AgentPackage(package) if package is not None else None,
            stream_agents=stream_agents,
        )
        self._writer = writer
        self._sent = Sent()
        self._tasks: set[asyncio.Task[None]] = set()
        self.fleet.subscribe(self._send_digests)

    def _send(self, message: tuple[Any, ...]) -> None:
        self._writer.write(frames.encode(message))

    def _send_digests(self, names: frozenset[str]) -> None:
        digests: list[tuple[str, NodeDigest]] = []
        nodes = self.fleet.nodes
        for name in names:
            node = nodes.get(name)
            if node is None:
                continue  # removed: the console removed it first
            digests.append((name, self._sent.digest(node, self.fleet.rows.pop(name, []))))
        collector = self.collector
        self._send(("batch", digests, collector.lines_decoded, collector.lines_refused))

    def _spawn(self, work: Any) -> None:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, rid: int, name: str, command: str, timeout_s: float) -> None:
        result = await self.collector.run_on(name, command, timeout_s)
        self._send(("ran", rid, result))

    async def _remove(self, rid: int, name: str) -> None:
        await self.collector.remove_node(name)
        self._sent.forget(name)
        self.fleet.rows.pop(name, None)
        self._send(("removed", rid))

    def handle(self, message: tuple[Any, ...]) -> bool:
        """Carry out one message from the console; False for ``stop``."""
        kind = message[0]
        if kind == "stop":
            return False
        if kind == "add":
            self.collector.add_node(message[1])
        elif kind == "remove":
            self._spawn(self._remove(message[1], message[2]))
        elif kind == "retry":
            self.collector.retry(message[1])
        elif kind == "run":
            self._spawn(self._run(*message[1:]))
        elif kind == "peers":
            self.fleet.set_peer_context(message[1])
        else:
            log.warning("collector worker: unknown message %r", kind)
        return True


async def _pipes() -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=frames.MAX_FRAME_BYTES)
    await loop.connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(0, "rb", buffering=0)
    )
    # Frames go to a copy of stdout; stdout itself becomes stderr, so that a stray print
    # from anywhere cannot break the framing.
    frames_fd = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    transport, protocol = await loop.connect_write_pipe(
        asyncio.streams.FlowControlMixin, os.fdopen(frames_fd, "wb", buffering=0)
    )
    writer = asyncio.StreamWriter(transport, protocol, None, loop)
    return reader, writer


async def serve() -> int:
    gc_tuning.tune_for_streaming()
    reader, writer = await _pipes()
    init = await frames.read(reader)
    if not init or init[0] != "init":
        log.error("collector worker: the first message was not init: %r", init and init[0])
        return 2
    _, config, package, stream_agents, history_s = init
    worker = Worker(config, package, stream_agents, history_s, writer)
    loop = asyncio.get_running_loop()
    freeze = loop.call_later(FREEZE_AFTER_S, gc_tuning.freeze_long_lived)
    async with worker.collector:
        writer.write(frames.encode(("ready",)))
        while True:
            message = await frames.read(reader)
            if message is None:
                break
            try:
                if not worker.handle(message):
                    break
            except Exception:  # one bad message must not take the worker's links down
                log.exception("collector worker: %r failed", message[0])
    freeze.cancel()
    with contextlib.suppress(ConnectionError):
        await writer.drain()
    return 0


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")
    sys.exit(asyncio.run(serve()))


if __name__ == "__main__":
    main()
