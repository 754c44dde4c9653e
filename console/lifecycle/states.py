"""The node lifecycle as data: the states, the moves allowed between them, and how long each
waiting state may last before something is done about it.

No I/O here. The store (``store.py``) refuses to write a move this table does not allow; the
engine and the reconcile loop read the timeouts. Every allowed move carries a one-line reason,
so the table is also its own documentation (``docs/lifecycle.md`` shows it, and a test keeps
the two in step).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType
from typing import Final

__all__ = [
    "BILLING",
    "DEFAULT_TIMEOUTS",
    "ENTRY",
    "TRANSITIONS",
    "WAITING",
    "Expiry",
    "IllegalTransition",
    "NodeKind",
    "State",
    "Timeout",
    "Transition",
    "allowed",
    "bills",
    "check",
    "check_entry",
    "is_terminal",
    "timeouts",
]


class NodeKind(StrEnum):
    CLOUD = "cloud"  # an instance we launch, pay for and terminate
    ONPREM = "onprem"  # a machine we never start or stop: only drained and resumed


class State(StrEnum):
    REQUESTED = "requested"
    PROVISIONING = "provisioning"
    BOOTSTRAPPING = "bootstrapping"
    JOINING = "joining"
    ACTIVE = "active"
    DRAINING = "draining"
    DRAINED = "drained"
    TERMINATING = "terminating"
    TERMINATED = "terminated"
    FAILED = "failed"


_S = State  # short, for the tables below

# before -> {after: why this move exists}. A move that is not here is refused.
_CLOUD: Final[dict[State, dict[State, str]]] = {
    _S.REQUESTED: {
        _S.PROVISIONING: "the provider accepted the launch request (token and tags in it)",
        _S.FAILED: "the provider refused the launch (capacity, quota, auth), or it timed out",
        _S.TERMINATING: "cancelled when the launch may have been sent: terminate and confirm",
        _S.TERMINATED: "cancelled before any launch request was sent: no instance can exist",
    },
    _S.PROVISIONING: {
        _S.BOOTSTRAPPING: "the instance is running and has an address to reach",
        _S.FAILED: "the instance never came up, vanished, or was interrupted (spot)",
        # Not straight to terminated: the launch was accepted, so an instance exists or will;
        # only the provider's confirmation in terminating may close it.
        _S.TERMINATING: "cancelled while the instance boots: terminate it and confirm",
    },
    _S.BOOTSTRAPPING: {
        _S.JOINING: "host key verified, agent deployed, admission gate passed",
        _S.FAILED: "unreachable, host key refused, or the admission gate failed",
        _S.TERMINATING: "cancelled before the node joined the scheduler: no job can be on it",
    },
    _S.JOINING: {
        _S.ACTIVE: "the scheduler reports the node up and taking jobs",
        _S.FAILED: "the scheduler never admitted the node, or its instance was lost",
        # Not straight to terminating: the scheduler may already have placed a job on it.
        _S.DRAINING: "cancelled while joining: a job may already be placed, so drain first",
    },
    _S.ACTIVE: {
        _S.DRAINING: "a drain was asked for, by a person or by automation, with its reason",
        _S.FAILED: "the instance vanished or was interrupted (spot): the node is gone",
    },
    _S.DRAINING: {
        _S.DRAINED: "the scheduler says drained and no job is left on the node",
        _S.ACTIVE: "resumed before the drain finished",
        _S.FAILED: "the instance vanished or was interrupted while draining",
    },
    _S.DRAINED: {
        _S.TERMINATING: "terminate asked for a drained, empty node",
        _S.ACTIVE: "resumed: the node takes jobs again",
        _S.FAILED: "the instance vanished while drained",
    },
    # Termination that fails stays here and is retried (see DEFAULT_TIMEOUTS): a billing
    # instance must never hide behind another state.
    _S.TERMINATING: {
        _S.TERMINATED: "the provider confirmed the instance is gone",
    },
    _S.FAILED: {
        _S.TERMINATING: "clean up: a failed node's instance may still bill",
        _S.TERMINATED: "the provider confirmed no instance exists for this node",
    },
    # The instance is over; the name may live again. A Slurm CLOUD node (a pool's
    # slurm_nodes) is resumed and suspended many times under the one NodeName.
    _S.TERMINATED: {
        _S.REQUESTED: "launched again under its name (a Slurm CLOUD node resumed once more)",
    },
}

_ONPREM: Final[dict[State, dict[State, str]]] = {
    _S.ACTIVE: {
        _S.DRAINING: "a drain was asked for, by a person or by automation, with its reason",
    },
    _S.DRAINING: {
        _S.DRAINED: "the scheduler says drained and no job is left on the node",
        _S.ACTIVE: "resumed before the drain finished",
    },
    _S.DRAINED: {
        _S.ACTIVE: "resumed: the node takes jobs again",
    },
}


def _frozen(table: dict[State, dict[State, str]]) -> Mapping[State, Mapping[State, str]]:
    return MappingProxyType({k: MappingProxyType(dict(v)) for k, v in table.items()})


#: The one transition table, per kind: ``TRANSITIONS[kind][before][after]`` is the reason.
TRANSITIONS: Final[Mapping[NodeKind, Mapping[State, Mapping[State, str]]]] = MappingProxyType(
    {NodeKind.CLOUD: _frozen(_CLOUD), NodeKind.ONPREM: _frozen(_ONPREM)}
)

#: The states a node may have when it is first written to the store, and why.
ENTRY: Final[Mapping[NodeKind, Mapping[State, str]]] = MappingProxyType(
    {
        NodeKind.CLOUD: MappingProxyType(
            {
                _S.REQUESTED: "a burst intent asked for this node; nothing launched yet",
                _S.PROVISIONING: "adopted: a tagged instance the store did not know",
            }
        ),
        NodeKind.ONPREM: MappingProxyType(
            {
                _S.ACTIVE: "first seen taking jobs",
                _S.DRAINING: "first seen draining (a drain set before we knew the node)",
                _S.DRAINED: "first seen drained",
            }
        ),
    }
)

_ALLOWED: Final[dict[tuple[NodeKind, State], frozenset[State]]] = {
    (kind, before): frozenset(moves)
    for kind, table in TRANSITIONS.items()
    for before, moves in table.items()
}

#: States in which an instance may exist and bill (for a cloud node): from the launch being
#: accepted up to the provider confirming termination, and failed, which must be cleaned up.
BILLING: Final = frozenset(
    {
        _S.PROVISIONING,
        _S.BOOTSTRAPPING,
        _S.JOINING,
        _S.ACTIVE,
        _S.DRAINING,
        _S.DRAINED,
        _S.TERMINATING,
        _S.FAILED,
    }
)


class Expiry(StrEnum):
    """What happens when a waiting state has lasted longer than its timeout."""

    FAIL = "fail"  # move to failed; the failed node is then cleaned up (it may bill)
    STUCK = "stuck"  # stay, and report the node as stuck; no action is taken
    RETRY = "retry"  # stay, retry the pending action with backoff, report each failure


@dataclass(frozen=True, slots=True)
class Timeout:
    """How long a waiting state may last (``seconds``) and what follows (``then``)."""

    seconds: float
    expiry: Expiry
    then: State  # the state after expiry: failed, or the same state for stuck and retry
    why: str


#: Every waiting state, its default timeout and its outcome. Callers (pools in config) may
#: change the seconds through :func:`timeouts`, never the outcome: draining must never turn
#: into killing a job, and terminating must never be left without the provider's word.
DEFAULT_TIMEOUTS: Final[Mapping[State, Timeout]] = MappingProxyType(
    {
        _S.REQUESTED: Timeout(
            120.0, Expiry.FAIL, _S.FAILED, "the launch was never sent or never answered"
        ),
        _S.PROVISIONING: Timeout(
            900.0, Expiry.FAIL, _S.FAILED, "the instance never came up (GPU boots take minutes)"
        ),
        _S.BOOTSTRAPPING: Timeout(
            600.0, Expiry.FAIL, _S.FAILED, "no verified SSH, no agent, or never healthy"
        ),
        _S.JOINING: Timeout(300.0, Expiry.FAIL, _S.FAILED, "the scheduler never admitted the node"),
        _S.DRAINING: Timeout(
            4 * 3600.0,
            Expiry.STUCK,
            _S.DRAINING,
            "jobs still running: report it stuck, wait on; drain never kills a job",
        ),
        _S.TERMINATING: Timeout(
            300.0,
            Expiry.RETRY,
            _S.TERMINATING,
            "no confirmation from the provider: retry terminate with backoff and report",
        ),
    }
)

#: The states a node waits in for something outside the control plane.
WAITING: Final = frozenset(DEFAULT_TIMEOUTS)


def timeouts(overrides: Mapping[str, float] | None = None) -> Mapping[State, Timeout]:
    """The timeout table with the seconds of some waiting states replaced.

    ``overrides`` maps a state's name to seconds (as a pool's config would give them). A state
    that is not a waiting state, or seconds that are not a positive finite number, raise
    ValueError with a sentence saying which and what is accepted.
    """
    table = dict(DEFAULT_TIMEOUTS)
    for name, seconds in (overrides or {}).items():
        state = next((s for s in DEFAULT_TIMEOUTS if s == name), None)
        if state is None:
            raise ValueError(
                f'no timeout can be set for "{name}": it is not a waiting state; '
                f"the waiting states are {_words(DEFAULT_TIMEOUTS)}"
            )
        if isinstance(seconds, bool) or not isinstance(seconds, int | float):
            raise ValueError(
                f"the timeout for {state} must be a number of seconds, not {seconds!r}"
            )
        if not (math.isfinite(seconds) and seconds > 0):
            raise ValueError(
                f"the timeout for {state} must be a positive number of seconds, got {seconds}"
            )
        default = table[state]
        table[state] = Timeout(float(seconds), default.expiry, default.then, default.why)
    return MappingProxyType(table)


@dataclass(frozen=True, slots=True)
class Transition:
    """One recorded move. ``before`` is None for the row that records a node entering the
    store. ``at`` is wall-clock seconds (time.time()); ``actor`` is who asked (a person or
    ``automation:...``), ``request_id`` the request it belongs to."""

    node: str
    before: State | None
    after: State
    at: float
    reason: str
    actor: str
    request_id: str


class IllegalTransition(Exception):
    """A move the table does not allow. ``str()`` says what is allowed from here instead."""

    def __init__(
        self, node: str, kind: NodeKind, before: State | None, after: State, message: str
    ) -> None:
        super().__init__(message)
        self.node = node
        self.kind = kind
        self.before = before
        self.after = after
        self.message = message


def allowed(kind: NodeKind, before: State) -> frozenset[State]:
    """The states a ``kind`` node in ``before`` may move to (empty: none, or not its state)."""
    return _ALLOWED.get((kind, before), frozenset())


def is_terminal(state: State) -> bool:
    """True for the state a node's instance ends in: terminated. Only a new launch under
    the same name (``requested``) may follow it."""
    return state is _S.TERMINATED


def bills(state: State) -> bool:
    """Whether a cloud node in ``state`` may have an instance that bills."""
    return state in BILLING


def check(kind: NodeKind, node: str, before: State, after: State) -> None:
    """Raise :class:`IllegalTransition` unless ``before → after`` is in ``kind``'s table."""
    if after in allowed(kind, before):
        return
    table = TRANSITIONS[kind]
    label = f"{node} ({kind} node)"
    if before not in table:
        message = (
            f"{label} cannot be in {before}: {kind} nodes have no such state; "
            f"their states are {_words(table)}"
        )
    elif is_terminal(before):
        message = (
            f"{label} is {before}: its instance is gone, and only a new launch under its "
            f"name ({_S.REQUESTED}) can follow"
        )
    else:
        message = (
            f"{label} cannot go from {before} to {after}; "
            f"from {before} it can go to {_words(table[before], joiner='or')}"
        )
        path = _path(table, before, after)
        if path:
            message += f"; the way to {after} is {' → '.join(path)}"
    raise IllegalTransition(node, kind, before, after, message)


def check_entry(kind: NodeKind, node: str, state: State) -> None:
    """Raise :class:`IllegalTransition` unless a new ``kind`` node may start in ``state``."""
    if state in ENTRY[kind]:
        return
    message = (
        f"{node} ({kind} node) cannot enter the store as {state}; "
        f"a new {kind} node starts as {_words(ENTRY[kind], joiner='or')}"
    )
    raise IllegalTransition(node, kind, None, state, message)


def _path(
    table: Mapping[State, Mapping[State, str]], start: State, goal: State
) -> list[State] | None:
    """The shortest chain of allowed moves from ``start`` to ``goal`` (breadth first).

    Never through failed: it is an outcome, not a step anyone can take on purpose, and
    "go through failed" would be advice to break the node.
    """
    came_from: dict[State, State | None] = {start: None}
    queue = deque([start])
    while queue:
        here = queue.popleft()
        for there in (s for s in State if s in table.get(here, {})):
            if there in came_from or (there is _S.FAILED and there != goal):
                continue
            came_from[there] = here
            if there == goal:
                path: list[State] = [there]
                step = came_from[there]
                while step is not None:
                    path.append(step)
                    step = came_from[step]
                return path[::-1]
            queue.append(there)
    return None


def _words(states: Mapping[State, object] | frozenset[State], joiner: str = "and") -> str:
    names = [str(s) for s in State if s in states]  # in lifecycle order, not alphabetical
    if len(names) <= 1:
        return "".join(names) or "nothing"
    return f"{', '.join(names[:-1])} {joiner} {names[-1]}"
