"""What changed in the lifecycle since a streaming client last heard: the service's side.

A client that mirrors the control plane (an attached console) needs the live node records,
the moves, the reconcile reports and the burn rate. Each ``LifeDelta`` remembers what its one
client was sent and ``next()`` returns only what is new — records that differ, names that left
the live set, moves after the last row sent (the newest ``HISTORY`` at first, not a long
store's whole past), reports added since — or None when nothing is. It reads the plane's store
about once a second per client: a thousand live records compare in well under a millisecond.

Message: ``{"event": "life", "records": [NodeRecord...], "gone": [name...], "moves": [[id,
Transition]...], "reports": [sentence...], "reported": N, "burn": {pool: $/h, "": all pools},
"scheduler": {"nodes": [...], "jobs": [...]}}`` (the scheduler's view only when it changed).
"""

from __future__ import annotations

from typing import Any, Protocol

from tidectl.console.config.model import PoolSpec
from tidectl.console.lifecycle.records import NodeRecord
from tidectl.console.scheduler.base import SchedulerSnapshot
from tidectl.console.view.life import LifeSource

__all__ = ["HISTORY", "LifeDelta", "LifeReads"]

#: Moves a newly attached client is sent from before it attached.
HISTORY = 500
#: Moves sent in one message at most; the rest follow in the next.
_MOVES_PER_MESSAGE = 2000


class LifeReads(LifeSource, Protocol):
    """The ControlPlane's reads a delta needs: what a console's view reads, and two more."""

    def last_transition_id(self) -> int: ...

    def pools(self) -> tuple[PoolSpec, ...]: ...


class LifeDelta:
    def __init__(self, plane: LifeReads) -> None:
        self.plane = plane
        self._records: dict[str, NodeRecord] = {}
        self._after_id = max(0, plane.last_transition_id() - HISTORY)
        # The reports a client is first sent: those still kept (the plane keeps the last 200).
        self._reported = plane.reported - len(plane.reports)
        self._burn: dict[str, float] | None = None
        self._sched: SchedulerSnapshot | None = None

    def next(self) -> dict[str, Any] | None:
        """What changed since the last call, as a ``life`` message; None when nothing did."""
        plane = self.plane
        records = {r.name: r for r in plane.nodes(live_only=True)}
        changed = [r for name, r in records.items() if self._records.get(name) != r]
        gone = [name for name in self._records if name not in records]
        self._records = records
        moves = plane.transitions(self._after_id, _MOVES_PER_MESSAGE)
        if moves:
            self._after_id = moves[-1][0]
        new_reports = plane.reported - self._reported
        reports = plane.reports[-new_reports:] if new_reports > 0 else []
        self._reported = plane.reported
        # Per configured pool, and the whole (a pool since removed from the config may
        # still have a node billing).
        burn = {pool.name: plane.burn_rate(pool.name) for pool in plane.pools()}
        burn[""] = plane.burn_rate()
        burn_moved = burn != self._burn
        self._burn = burn
        # The scheduler's view: whole, when the last pass read something new (a pass reads
        # it whole too; a thousand nodes and their jobs are a few hundred KiB).
        snapshot = plane.scheduler_snapshot()
        sched_moved = snapshot is not self._sched and snapshot != self._sched
        self._sched = snapshot
        if not (changed or gone or moves or reports or burn_moved or sched_moved):
            return None
        message: dict[str, Any] = {
            "event": "life",
            "records": changed,
            "gone": gone,
            "moves": moves,
            "reports": reports,
            "reported": plane.reported,
            "burn": burn,
        }
        if sched_moved:
            message["scheduler"] = snapshot
        return message
