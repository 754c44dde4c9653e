"""Live fleet updates for one subscribed client, coalesced, with backpressure.

The fleet's flush callback only adds names to this client's pending set (no I/O, no waiting),
so no client can slow the fleet or another client. A sender task per client wakes on a
change, waits ``every_s`` for more to gather, and writes one message with each changed node's
state *as it is now*: a client that falls behind skips the states in between, never receives
a backlog. A client that stops reading altogether fills its socket; once a write has waited
``send_timeout_s`` for room, the client is dropped.

Messages: ``{"event": "fleet", "seq": N, "nodes": {"gpu001": {"health": "ok", "link":
"streaming", "finding": null}, ...}}``; a node that left the fleet is ``null``.
"""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec

from tidectl.console.fleet import Fleet, NodeState

__all__ = ["FleetStream", "node_summary"]

_ENCODER = msgspec.json.Encoder()


def node_summary(node: NodeState | None) -> dict[str, Any] | None:
    if node is None:
        return None
    worst = node.findings[0].code if node.findings else None
    return {"health": node.health.word, "link": str(node.link), "finding": worst}


class FleetStream:
    """Streams ``fleet`` changes to ``writer`` until closed, the client leaves or falls
    ``send_timeout_s`` behind."""

    def __init__(
        self,
        fleet: Fleet,
        writer: asyncio.StreamWriter,
        *,
        every_s: float = 0.5,
        send_timeout_s: float = 10.0,
    ) -> None:
        self.fleet = fleet
        self.writer = writer
        self.every_s = every_s
        self.send_timeout_s = send_timeout_s
        self.dropped = False
        self._pending: set[str] = set(fleet.nodes)  # the first message: everything
        self._changed = asyncio.Event()
        self._changed.set()
        self._seq = 0

    def _note(self, names: frozenset[str]) -> None:
        self._pending.update(names)
        self._changed.set()

    async def run(self) -> None:
        """Send until the client goes away or is dropped; then return."""
        unsubscribe = self.fleet.subscribe(self._note)
        try:
            while True:
                await self._changed.wait()
                await asyncio.sleep(self.every_s)  # let more gather: one message, not many
                self._changed.clear()
                names, self._pending = self._pending, set()
                self._seq += 1
                nodes = {name: node_summary(self.fleet.nodes.get(name)) for name in names}
                line = _ENCODER.encode({"event": "fleet", "seq": self._seq, "nodes": nodes})
                self.writer.write(line + b"\n")
                try:
                    async with asyncio.timeout(self.send_timeout_s):
                        await self.writer.drain()
                except TimeoutError:
                    self.dropped = True  # it does not read: let it go, keep serving the rest
                    self.writer.transport.abort()
                    return
        except ConnectionError:
            return
        finally:
            unsubscribe()
