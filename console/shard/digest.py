"""What a collector worker tells the console about one node, and how it keeps track.

A ``NodeDigest`` is the node as the worker's fleet now has it, less what the console has
already: the hello and the line only when they are new, the history rows and events added
since the last digest, the peer share only when it moved. ``Sent`` remembers, per node,
what went out last.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import NamedTuple

from tidectl.console import schema
from tidectl.console.figures import SampleFigures
from tidectl.console.fleet import GpuStats, NodeEvent, NodeState
from tidectl.console.health import PortShare
from tidectl.console.model import Finding, LinkState, Severity
from tidectl.console.rates import RatesState

__all__ = ["HistoryRow", "NodeDigest", "Sent"]

#: One history row: when, the node's series, and each GPU's series (``NodeHistory.append``).
HistoryRow = tuple[float, tuple[float | None, ...], dict[int, tuple[float | None, ...]]]


class NodeDigest(NamedTuple):
    link: LinkState
    link_error: str | None
    agent_error: str | None
    stale: bool
    health: Severity
    health_since: float
    findings: list[Finding]
    #: Events since the last digest, oldest first.
    events: list[NodeEvent]
    heard_at: float | None
    sample_at: float
    #: New since the last digest, or None.
    hello: schema.Hello | None
    line: bytes | None
    rows: list[HistoryRow]
    rates: RatesState | None
    gpu_stats: GpuStats
    #: The fleet table's figures of ``line`` (None with no new line).
    figures: SampleFigures | None
    #: The node's ports by peer group and rate, when they changed; else None.
    peer_share: PortShare | None


class Sent:
    """Per node, what the worker last sent: the hello and sample objects, the newest event,
    the peer share."""

    def __init__(self) -> None:
        self._hello: dict[str, schema.Hello | None] = {}
        self._sample: dict[str, schema.Sample | None] = {}
        self._event: dict[str, NodeEvent | None] = {}
        self._share: dict[str, PortShare] = {}

    def forget(self, name: str) -> None:
        self._hello.pop(name, None)
        self._sample.pop(name, None)
        self._event.pop(name, None)
        self._share.pop(name, None)

    def digest(self, node: NodeState, rows: Sequence[HistoryRow]) -> NodeDigest:
        name = node.name
        hello = node.hello if node.hello is not self._hello.get(name) else None
        self._hello[name] = node.hello
        sample = node.sample
        fresh = sample is not None and sample is not self._sample.get(name)
        self._sample[name] = sample
        last = self._event.get(name)
        events: list[NodeEvent] = []
        for event in node.events:  # newest first
            if event is last:
                break
            events.append(event)
        events.reverse()
        self._event[name] = node.events[0] if node.events else None
        share = node.peer_share
        moved = share != self._share.get(name, Counter())
        if moved:
            self._share[name] = Counter(share)
        return NodeDigest(
            link=node.link,
            link_error=node.link_error,
            agent_error=node.agent_error,
            stale=node.stale,
            health=node.health,
            health_since=node.health_since,
            findings=list(node.findings),
            events=events,
            heard_at=node.heard_at,
            sample_at=node.sample_at,
            hello=hello,
            line=node.sample_line if fresh else None,
            rows=list(rows),
            rates=node.rates.state() if fresh else None,
            gpu_stats=node.gpu_stats,
            figures=node.figures if fresh else None,
            peer_share=Counter(share) if moved else None,
        )
