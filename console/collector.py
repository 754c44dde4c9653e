"""The collector: one link per node, every agent line decoded, validated and applied.

Lines are decoded by msgspec straight into the typed records of ``schema`` — parsing and
validation in one pass, microseconds a line — so a thousand nodes a second cost the event
loop little. A line that is not JSON, has a field of the wrong type, or comes from an agent
of another schema major never reaches the fleet: the node shows the reason as an
``agent.error`` finding, other nodes are untouched, and a node that keeps sending such
lines has its stream recycled (reconnected with backoff), which also throttles it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter

import msgspec

from tidectl.agents.protocol import SCHEMA_MAJOR, ProtocolError, parse_schema
from tidectl.console import schema
from tidectl.console.config.model import ClusterConfig
from tidectl.console.fleet import Fleet
from tidectl.console.model import LinkState
from tidectl.console.transport.deploy import AgentPackage
from tidectl.console.transport.link import NodeLink
from tidectl.console.transport.ssh import SshConnector, raise_fd_limit

log = logging.getLogger(__name__)

#: Unreadable lines in a row after which a node's stream is recycled.
BAD_LINES_BEFORE_RECYCLE = 3


class Collector:
    def __init__(
        self,
        config: ClusterConfig,
        fleet: Fleet,
        *,
        connector: SshConnector | None = None,
        package: AgentPackage | None = None,
        stream_agents: bool = True,
    ) -> None:
        self.config = config
        self.fleet = fleet
        self.connector = connector or SshConnector(config.ssh)
        if stream_agents and package is None:
            package = AgentPackage.build()
        self.links = {
            spec.name: NodeLink(
                spec,
                self.connector,
                on_state=self._on_state,
                on_line=self._on_line if stream_agents else None,
                package=package if stream_agents else None,
                agent=config.agent,
                stale_after_intervals=config.health.stale_after_intervals,
            )
            for spec in config.nodes
        }
        self._decoder = msgspec.json.Decoder(schema.Record)
        #: The last schema version found readable: agents repeat theirs in every line, and
        #: comparing two short strings is cheaper than parsing one.
        self._readable_schema: str | None = None
        self._bad_lines: Counter[str] = Counter()
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False
        self.lines_decoded = 0
        self.lines_refused = 0

    async def start(self) -> None:
        raise_fd_limit(len(self.links) * 2 + 256)
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(link.run(), name=f"link-{name}") for name, link in self.links.items()
        ]
        self._tasks.append(loop.create_task(self._watch_staleness(), name="staleness"))

    async def stop(self) -> None:
        # The fleet keeps the last state each node was seen in: "stopped" is the collector's
        # news, not the node's.
        self._stopping = True
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks = []
        await self.connector.close()

    async def __aenter__(self) -> Collector:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def _watch_staleness(self) -> None:
        while True:
            await asyncio.sleep(min(1.0, self.config.agent.interval_s))
            self.fleet.check_staleness()

    def _on_state(self, name: str, state: LinkState, error: str | None) -> None:
        if not self._stopping:
            self.fleet.on_link(name, state, error)

    def _on_line(self, name: str, line: bytes) -> None:
        try:
            record = self._decoder.decode(line)
            if record.schema != self._readable_schema:
                major, _ = parse_schema(record.schema)
                if major != SCHEMA_MAJOR:
                    raise ProtocolError(
                        f"agent speaks schema {record.schema}; this console reads "
                        f"{SCHEMA_MAJOR}.x: deploy a matching agent"
                    )
                self._readable_schema = record.schema
        except (msgspec.DecodeError, ProtocolError) as exc:
            self._refuse(name, line, str(exc))
            return
        self._bad_lines[name] = 0
        self.lines_decoded += 1
        if isinstance(record, schema.Sample):
            self.fleet.on_sample(name, record)
        else:
            self.fleet.on_hello(name, record)

    def _refuse(self, name: str, line: bytes, reason: str) -> None:
        self.lines_refused += 1
        self._bad_lines[name] += 1
        preview = line[:80].decode("utf-8", "replace")
        message = f"unreadable line from the agent ({reason}): {preview!r}"
        self.fleet.on_agent_error(name, message)
        if self._bad_lines[name] >= BAD_LINES_BEFORE_RECYCLE:
            self._bad_lines[name] = 0
            self.links[name].recycle(
                f"{BAD_LINES_BEFORE_RECYCLE} unreadable lines in a row from the agent; "
                f"last: {reason}"
            )
