"""When and why a burst's node ended, read from its recorded moves.

A node's history holds every burst it served (a Slurm CLOUD node is launched again under its
name); :func:`served` cuts out the moves of one burst. Its end is the first move that took it
out of service — a drain, a terminate, a failure — and the move to ``terminated`` that closed
it. The cause is read from that first move's reason and actor: the policy loop's drains say
``policy: idle …``, ``policy: budget …``, ``policy: max lifetime …``; Slurm's power saving,
a cancelled burst and the reconcile loop say so too; anything else was a person.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from tidectl.console.lifecycle.states import State, Transition

__all__ = ["EndCause", "NodeEnd", "end_cause", "node_end", "served"]

#: The reconcile loop's actor (``lifecycle.engine.ACTOR``).
_RECONCILE: Final = "reconcile"
_OUT_OF_SERVICE: Final = frozenset({State.DRAINING, State.TERMINATING, State.FAILED})


class EndCause(StrEnum):
    PERSON = "person"  # drained or terminated by someone
    IDLE = "idle"  # the idle policy
    BUDGET = "budget"  # a budget was reached
    MAX_LIFETIME = "max-lifetime"  # the pool's max lifetime
    POLICY = "policy"  # another rule of the policy loop
    SLURM = "slurm"  # Slurm's power saving powered it down or gave up on it
    CANCELLED = "cancelled"  # the burst was cancelled
    FAILED = "failed"  # the instance failed, vanished, or never came up
    RECONCILE = "reconcile"  # the reconcile loop ended it (a zombie, an orphan)


#: Words the reasons carry, most specific first: the policy loop's (``console/policy``),
#: Slurm's power saving's (``lifecycle.operate.EndWhy``) and a cancel's.
_MARKERS: Final = (
    ("policy: budget", EndCause.BUDGET),
    ("policy: idle", EndCause.IDLE),
    ("policy: max lifetime", EndCause.MAX_LIFETIME),
    ("policy:", EndCause.POLICY),
    ("Slurm", EndCause.SLURM),
    ("cancelled by", EndCause.CANCELLED),
)


@dataclass(frozen=True, slots=True)
class NodeEnd:
    """How one node's service to a burst ended (``at`` None: it has not ended)."""

    node: str
    at: float | None  # the move to terminated
    out_at: float | None  # the first move out of service
    cause: EndCause | None
    reason: str | None  # that move's reason, verbatim
    by: str | None  # that move's actor


def end_cause(move: Transition) -> EndCause:
    """Why ``move`` (a drain, terminate or failure) took a node out of service."""
    if move.after is State.FAILED:
        return EndCause.FAILED
    reason = move.reason
    for marker, cause in _MARKERS:
        if marker in reason:
            return cause
    if move.actor == "policy":
        return EndCause.POLICY
    return EndCause.RECONCILE if move.actor == _RECONCILE else EndCause.PERSON


def served(history: Sequence[Transition], started_at: float) -> list[Transition]:
    """The moves of a node's service to the burst that started at ``started_at``: from then
    on, up to (not including) a later launch under the same name."""
    moves: list[Transition] = []
    for move in history:
        if move.at < started_at:
            continue
        relaunched = move.before is State.TERMINATED and move.after is State.REQUESTED
        if relaunched and moves:
            break
        moves.append(move)
    return moves


def node_end(node: str, moves: Sequence[Transition]) -> NodeEnd:
    """How ``node`` left its burst, from the moves :func:`served` cut out: the first move
    out of service since it last took jobs (a drain that was resumed did not end it)."""
    out: Transition | None = None
    ended: float | None = None
    for move in moves:
        if move.after is State.ACTIVE:
            out = None
        elif move.after in _OUT_OF_SERVICE and move.before is not None and out is None:
            out = move
        elif move.after is State.TERMINATED:
            ended = move.at
    if out is None:
        return NodeEnd(node, ended, None, None, None, None)
    return NodeEnd(node, ended, out.at, end_cause(out), out.reason, out.actor)
