"""A front end's copy of the service's fleet and lifecycle, kept from its ``full`` stream.

``FleetMirror`` replays each node's inputs (spec, hello, latest sample, link) into the front
end's own ``Fleet``, which derives rates, history and findings exactly as the service's does
(with the thresholds the service sent): the views, written against a ``Fleet``, work
unchanged. A sample the stream skipped (a client behind) widens one rate's interval; nothing
else is lost. ``LifeMirror`` answers the console's lifecycle reads (``view.life.LifeSource``)
from the ``life`` messages, without a round trip.

Messages are decoded into typed structs (``msgspec``): a message that does not fit is an
error with what is wrong, never half applied.
"""

from __future__ import annotations

from collections import deque
from dataclasses import replace

import msgspec

from tidectl.console import schema
from tidectl.console.config.model import NodeSpec
from tidectl.console.fleet import Fleet
from tidectl.console.lifecycle.records import NodeRecord
from tidectl.console.lifecycle.states import Transition
from tidectl.console.model import LinkState
from tidectl.console.scheduler.base import SchedulerSnapshot

__all__ = ["FleetMessage", "FleetMirror", "LifeMessage", "LifeMirror", "decode_stream"]

#: Moves a mirror keeps (a console shows fewer).
_MOVES_KEPT = 2000


class SpecView(msgspec.Struct, forbid_unknown_fields=True):
    name: str
    address: str
    port: int
    site: str
    user: str
    labels: dict[str, str] = msgspec.field(default_factory=dict)


class NodeUpdate(msgspec.Struct):
    link: LinkState
    link_error: str | None = None
    agent_error: str | None = None
    spec: SpecView | None = None
    hello: schema.Hello | None = None
    sample: schema.Sample | None = None


class FleetMessage(msgspec.Struct, tag="fleet", tag_field="event"):
    seq: int
    nodes: dict[str, NodeUpdate | None]


class LifeMessage(msgspec.Struct, tag="life", tag_field="event"):
    records: list[NodeRecord]
    gone: list[str]
    moves: list[tuple[int, Transition]]
    reports: list[str]
    reported: int
    burn: dict[str, float]
    #: Absent: the scheduler's view did not change (or there is none yet).
    scheduler: SchedulerSnapshot | None = None


_DECODER: msgspec.json.Decoder[FleetMessage | LifeMessage] = msgspec.json.Decoder(
    FleetMessage | LifeMessage
)


def decode_stream(line: bytes) -> FleetMessage | LifeMessage:
    """Raises ``msgspec.DecodeError``/``ValidationError`` saying what does not fit."""
    return _DECODER.decode(line)


class FleetMirror:
    """Applies ``fleet`` messages to ``fleet``; the first one (after each ``restart``) holds
    every node, and nodes it lacks are removed."""

    def __init__(self, fleet: Fleet) -> None:
        self.fleet = fleet
        self._whole = True

    def restart(self) -> None:
        """The next message is a new stream's first: the whole fleet."""
        self._whole = True

    def apply(self, message: FleetMessage) -> None:
        fleet = self.fleet
        if self._whole:
            self._whole = False
            for name in [n for n in fleet.nodes if n not in message.nodes]:
                fleet.remove(name)
        for name, update in message.nodes.items():
            if update is None:
                if name in fleet.nodes:
                    fleet.remove(name)
                continue
            if name not in fleet.nodes:
                if update.spec is None:
                    continue  # a change to a node this mirror never had: the next whole has it
                view = update.spec
                spec = NodeSpec(view.name, view.address, view.port, view.site, view.user)
                fleet.add(replace(spec, labels=dict(view.labels)))
            # In the order the collector calls them: link, hello, sample, a line it could
            # not read (a sample clears the agent error; the error comes after it).
            fleet.on_link(name, update.link, update.link_error)
            if update.hello is not None:
                fleet.on_hello(name, update.hello)
            if update.sample is not None:
                fleet.on_sample(name, update.sample)
            if update.agent_error is not None:
                fleet.on_agent_error(name, update.agent_error)


class LifeMirror:
    """The lifecycle as the service last streamed it: the reads ``view.life.LifeFeed`` makes."""

    def __init__(self) -> None:
        self.reports: list[str] = []
        self.reported = 0
        self._records: dict[str, NodeRecord] = {}
        self._moves: deque[tuple[int, Transition]] = deque(maxlen=_MOVES_KEPT)
        self._burn: dict[str, float] = {}
        self._scheduler: SchedulerSnapshot | None = None
        self._whole = True

    def restart(self) -> None:
        """The next message is a new stream's first: every live record, nothing before."""
        self._whole = True

    def apply(self, message: LifeMessage) -> None:
        if self._whole:
            self._whole = False
            self._records.clear()
        for record in message.records:
            self._records[record.name] = record
        for name in message.gone:
            self._records.pop(name, None)
        last = self._moves[-1][0] if self._moves else 0
        self._moves.extend(move for move in message.moves if move[0] > last)
        self.reports = (self.reports + message.reports)[-200:]
        self.reported = message.reported
        self._burn = dict(message.burn)
        if message.scheduler is not None:
            self._scheduler = message.scheduler

    def nodes(self, pool: str | None = None, *, live_only: bool = False) -> list[NodeRecord]:
        """The live nodes (the service streams no terminated ones: ``live_only`` is always
        so here)."""
        return [r for r in self._records.values() if pool is None or r.pool == pool]

    def transitions(self, after_id: int = 0, limit: int = 500) -> list[tuple[int, Transition]]:
        return [move for move in self._moves if move[0] > after_id][:limit]

    def burn_rate(self, pool: str | None = None) -> float:
        return self._burn.get("" if pool is None else pool, 0.0)

    def scheduler_snapshot(self) -> SchedulerSnapshot | None:
        return self._scheduler
