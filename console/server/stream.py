"""Live updates for one subscribed client, coalesced, with backpressure.

The fleet's flush callback only adds names to this client's pending set (no I/O, no waiting),
so no client can slow the fleet or another client. A sender task per client wakes on a
change, waits ``every_s`` for more to gather, and writes one message with each changed node
*as it is now*: a client that falls behind skips the states in between, never receives a
backlog. A client that stops reading altogether fills its socket; once a write has waited
``send_timeout_s`` for room, the client is dropped.

Two levels of detail. ``summary`` (a script watching health): ``{"event": "fleet", "seq": N,
"nodes": {"gpu001": {"health": "ok", "link": "streaming", "finding": null}, ...}}``.
``full`` (a front end that mirrors the fleet, ``mirror.py``): each node's inputs — its spec
the first time, its agent's hello and latest sample when they changed, its link — from which
the client's own ``Fleet`` derives rates, history and findings with the service's thresholds;
and, about once a second when something moved, a ``life`` message (``life_delta.py``). A node
that left the fleet is ``null`` in both.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from typing import Any, Literal

import msgspec

from tidectl.console import schema
from tidectl.console.fleet import Fleet, NodeState
from tidectl.console.server.life_delta import LifeDelta

__all__ = ["Detail", "FleetStream", "NodeInputs", "node_summary"]

Detail = Literal["summary", "full"]
_ENCODER = msgspec.json.Encoder()
#: How often a full stream looks for lifecycle changes.
LIFE_EVERY_S = 1.0


def node_summary(name: str, node: NodeState | None) -> dict[str, Any] | None:
    if node is None:
        return None
    worst = node.findings[0].code if node.findings else None
    return {"health": node.health.word, "link": str(node.link), "finding": worst}


class NodeInputs:
    """A node's inputs for one mirroring client: what it does not have yet, only."""

    def __init__(self) -> None:
        # Per node, the hello and the sample (its line, when the fleet has one) last sent:
        # each is a new object.
        self._sent: dict[str, tuple[schema.Hello | None, bytes | schema.Sample | None]] = {}

    def __call__(self, name: str, node: NodeState | None) -> dict[str, Any] | None:
        if node is None:
            self._sent.pop(name, None)
            return None
        update: dict[str, Any] = {
            "link": str(node.link),
            "link_error": node.link_error,
            "agent_error": node.agent_error,
        }
        had = self._sent.get(name)
        if had is None:
            spec = node.spec  # what a view shows; not the keys a cloud node is reached with
            update["spec"] = {
                "name": spec.name,
                "address": spec.address,
                "port": spec.port,
                "site": spec.site,
                "user": spec.user,
                "labels": spec.labels,
            }
        hello, sent = had or (None, None)
        if node.hello is not None and node.hello is not hello:
            update["hello"] = node.hello
        # The agent's own line when the fleet has it: a valid JSON object without a newline
        # (the collector decoded it whole, split on newlines), embedded as is. Encoding the
        # record again cost ~30 µs a sample per attached client; and a fleet fed by
        # collector workers need not decode the sample at all.
        line = node.sample_line
        latest = line if line is not None else node.sample
        if latest is not None and latest is not sent:
            update["sample"] = msgspec.Raw(line) if line is not None else latest
        self._sent[name] = (node.hello, latest)
        return update


class FleetStream:
    """Streams ``fleet`` changes (and, given ``life``, lifecycle changes) to ``writer`` until
    closed, the client leaves or falls ``send_timeout_s`` behind."""

    def __init__(
        self,
        fleet: Fleet,
        writer: asyncio.StreamWriter,
        *,
        every_s: float = 0.5,
        send_timeout_s: float = 10.0,
        detail: Detail = "summary",
        life: LifeDelta | None = None,
    ) -> None:
        self.fleet = fleet
        self.writer = writer
        self.every_s = every_s
        self.send_timeout_s = send_timeout_s
        self.describe = NodeInputs() if detail == "full" else node_summary
        self.life = life
        self.dropped = False
        self._pending: set[str] = set(fleet.nodes)  # the first message: everything
        self._changed = asyncio.Event()
        self._changed.set()
        self._seq = 0
        self._life_at = -math.inf

    def _note(self, names: frozenset[str]) -> None:
        self._pending.update(names)
        self._changed.set()

    async def run(self) -> None:
        """Send until the client goes away or is dropped; then return."""
        unsubscribe = self.fleet.subscribe(self._note)
        try:
            while True:
                # A full stream wakes each second for the lifecycle, changed fleet or not.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(LIFE_EVERY_S if self.life else None):
                        await self._changed.wait()
                if self._changed.is_set():
                    await asyncio.sleep(self.every_s)  # let more gather: one message, not many
                    self._changed.clear()
                    if not await self._send(self._fleet_message()):
                        return
                life = self._life_message() if self.life is not None else None
                if life is not None and not await self._send(life):
                    return
        except ConnectionError:
            return
        finally:
            unsubscribe()

    def _fleet_message(self) -> dict[str, Any]:
        names, self._pending = self._pending, set()
        self._seq += 1
        nodes = {name: self.describe(name, self.fleet.nodes.get(name)) for name in names}
        return {"event": "fleet", "seq": self._seq, "nodes": nodes}

    def _life_message(self) -> dict[str, Any] | None:
        assert self.life is not None
        now = time.monotonic()
        if now - self._life_at < LIFE_EVERY_S:
            return None
        self._life_at = now
        return self.life.next()

    async def _send(self, message: dict[str, Any]) -> bool:
        """Write one message; False when the client was dropped for not reading it."""
        self.writer.write(_ENCODER.encode(message) + b"\n")
        try:
            async with asyncio.timeout(self.send_timeout_s):
                await self.writer.drain()
        except TimeoutError:
            self.dropped = True  # it does not read: let it go, keep serving the rest
            self.writer.transport.abort()
            return False
        return True
