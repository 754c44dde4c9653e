"""The collector: one link per node, every agent line decoded, validated and applied.

Lines are decoded by msgspec straight into the typed records of ``schema`` — parsing and
validation in one pass, microseconds a line — so a thousand nodes a second cost the event
loop little. A line that is not JSON, has a field of the wrong type, or comes from an agent
of another schema major never reaches the fleet: the node shows the reason as an
``agent.error`` finding, other nodes are untouched, and a node that keeps sending such
lines has its stream recycled (reconnected with backoff), which also throttles it.

Nodes may join and leave while it runs (cloud nodes): ``add_node`` puts one in the fleet and
starts its link, ``remove_node`` stops the link, closes its connection and drops it from the
fleet.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter

import msgspec

from tidectl.agents.protocol import SCHEMA_MAJOR, ProtocolError, parse_schema
from tidectl.console import schema
from tidectl.console.config.model import ClusterConfig, NodeSpec
from tidectl.console.fleet import DuplicateNodeError, Fleet
from tidectl.console.model import LinkState
from tidectl.console.transport.deploy import AgentPackage
from tidectl.console.transport.link import CommandResult, NodeLink
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
        self._stream_agents = stream_agents
        self._package = package if stream_agents else None
        self.links = {spec.name: self._link(spec) for spec in config.nodes}
        self._decoder = msgspec.json.Decoder(schema.Record)
        #: The last schema version found readable: agents repeat theirs in every line, and
        #: comparing two short strings is cheaper than parsing one.
        self._readable_schema: str | None = None
        self._bad_lines: Counter[str] = Counter()
        #: One task per link while started, by node name; and the staleness watcher.
        self._link_tasks: dict[str, asyncio.Task[None]] = {}
        self._staleness: asyncio.Task[None] | None = None
        self._started = False
        self._stopping = False
        self.lines_decoded = 0
        self.lines_refused = 0

    @property
    def package(self) -> AgentPackage | None:
        """The agent this collector deploys to nodes (None when it streams no agents)."""
        return self._package

    def _link(self, spec: NodeSpec) -> NodeLink:
        return NodeLink(
            spec,
            self.connector,
            on_state=self._on_state,
            on_line=self._on_line if self._stream_agents else None,
            package=self._package,
            agent=self.config.agent,
            stale_after_intervals=self.config.health.stale_after_intervals,
        )

    def _start_link(self, name: str) -> None:
        task = asyncio.get_running_loop().create_task(self.links[name].run(), name=f"link-{name}")
        self._link_tasks[name] = task

    async def start(self) -> None:
        raise_fd_limit(len(self.links) * 2 + 256)
        self._started = True
        for name in self.links:
            self._start_link(name)
        loop = asyncio.get_running_loop()
        self._staleness = loop.create_task(self._watch_staleness(), name="staleness")

    async def stop(self) -> None:
        # The fleet keeps the last state each node was seen in: "stopped" is the collector's
        # news, not the node's.
        self._stopping = True
        self._started = False
        tasks = [*self._link_tasks.values()]
        if self._staleness is not None:
            tasks.append(self._staleness)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._link_tasks = {}
        self._staleness = None
        await self.connector.close()

    # -- membership while running ------------------------------------------------------------

    def add_node(self, spec: NodeSpec) -> None:
        """Watch one more node (a cloud node joining): into the fleet, and its link started
        at once if the collector runs (else with ``start``).

        Raises ``DuplicateNodeError`` for a name the collector or the fleet already holds.
        """
        if spec.name in self.links:
            raise DuplicateNodeError(
                f"node {spec.name!r} is already watched by the collector; remove it first, "
                "or give the new node another name"
            )
        self.fleet.add(spec)  # refuses a name the fleet holds, before any link exists
        self.links[spec.name] = self._link(spec)
        if self._started:
            raise_fd_limit(len(self.links) * 2 + 256)
            self._start_link(spec.name)

    def retry(self, name: str) -> None:
        """Have ``name``'s link try again now rather than after its backoff (a node's host
        key was just added to known_hosts). A name not watched is ignored."""
        link = self.links.get(name)
        if link is not None:
            link.retry_now()

    async def remove_node(self, name: str) -> None:
        """Stop watching a node (a cloud node leaving): its link is stopped and its
        connection closed before this returns, then it leaves the fleet.

        A name the collector does not watch is left alone (a no-op, not an error): removing
        is idempotent, so a caller retrying after a crash or a race need not check first.
        """
        if name not in self.links:
            return
        task = self._link_tasks.pop(name, None)
        if task is not None:
            task.cancel()
            # wait(), not await task: the link's cancellation is not ours to re-raise, and if
            # our caller is cancelled meanwhile, that does propagate.
            await asyncio.wait({task})
            if not task.cancelled() and task.exception() is not None:
                log.warning("%s: link ended with %r", name, task.exception())
        del self.links[name]
        self._bad_lines.pop(name, None)
        self.connector.forget(name)
        if name in self.fleet.nodes:
            self.fleet.remove(name)

    async def run_on(self, name: str, command: str, timeout_s: float) -> CommandResult:
        """Run ``command`` on node ``name`` over its open connection (the one its agent
        streams on); a node not watched, or not connected, gives a result with the error."""
        link = self.links.get(name)
        if link is None:
            return CommandResult(name, None, "", "", "the collector does not watch this node")
        return await link.run_command(command, timeout_s)

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
            self.fleet.on_sample(name, record, line)
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
