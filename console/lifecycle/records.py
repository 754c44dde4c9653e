"""The store's rows as frozen records. Explicit fields; free-form detail is a JSON object."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from tidectl.console.lifecycle.states import NodeKind, State

__all__ = [
    "InstanceRecord",
    "IntentAction",
    "IntentRecord",
    "IntentStatus",
    "LedgerEntry",
    "NodeRecord",
    "UsageRow",
]

#: A decoded JSON object (``detail``).
JsonObject = dict[str, Any]


class IntentAction(StrEnum):
    BURST = "burst"
    DRAIN = "drain"
    RESUME = "resume"
    TERMINATE = "terminate"
    CANCEL = "cancel"


class IntentStatus(StrEnum):
    PENDING = "pending"  # written, its side effects may or may not have happened yet
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"


@dataclass(frozen=True, slots=True)
class NodeRecord:
    name: str
    kind: NodeKind
    pool: str | None  # None for on-prem nodes, which belong to a site, not a pool
    state: State
    state_since: float
    instance_id: str | None
    intent_id: str | None
    created_at: float
    updated_at: float
    #: What an hour of this node costs (cloud nodes; None: not known yet, or on-prem).
    price_per_hour: float | None = None


@dataclass(frozen=True, slots=True)
class IntentRecord:
    """An action asked for, written before any side effect it causes.

    ``count`` is the delta form ("add 4"), ``target`` the ensure-N form ("ensure 8 in pool").
    ``token`` is the idempotency token: asking again with it returns this record.
    """

    id: str
    token: str
    action: IntentAction
    pool: str | None
    count: int | None
    target: int | None
    actor: str
    frontend: str
    request_id: str
    created_at: float
    status: IntentStatus
    status_at: float
    error: str | None  # the sentence, when status is failed
    detail: JsonObject  # part of the request (e.g. the node set of a drain), compared on reuse


@dataclass(frozen=True, slots=True)
class InstanceRecord:
    """A provider instance we launched or found by its ownership tags."""

    instance_id: str
    provider: str
    pool: str
    region: str
    zone: str | None
    instance_type: str
    intent_id: str | None  # from its tag; None only if an adopted instance lacked it
    node: str | None
    launched_at: float
    terminated_at: float | None
    confirmed_terminated: bool  # the provider said it is gone; only then is it closed
    tags: dict[str, str]
    last_seen_state: str | None  # the provider's word, as it said it (pending, running, ...)
    last_seen_at: float | None


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    """One stretch of a node's billing: from ``started_at`` to ``stopped_at`` (None: open)."""

    id: int
    node: str
    pool: str
    intent_id: str | None
    started_at: float
    stopped_at: float | None
    price_per_hour: float

    def cost(self, until: float) -> float:
        """Dollars spent from the start up to ``until`` (or the stop, when earlier)."""
        end = until if self.stopped_at is None else min(self.stopped_at, until)
        return self.price_per_hour * max(0.0, end - self.started_at) / 3600.0


@dataclass(frozen=True, slots=True)
class UsageRow:
    """What the usage meter saw of one billing cloud node, for one burst, in one UTC hour.

    ``first_at``..``last_at`` is the span it was metered in (inside ``hour``, which starts the
    hour); ``up_s`` the seconds metered, ``gpu_s`` the GPU-seconds used (each GPU's
    utilisation fraction times the seconds), ``idle_s``/``idle_usd`` the seconds it sat idle
    and what they cost, ``last_idle`` whether it was idle when last metered.
    """

    node: str
    pool: str
    intent_id: str | None
    hour: float
    first_at: float
    last_at: float
    up_s: float
    gpu_s: float
    idle_s: float
    idle_usd: float
    last_idle: bool


@dataclass(frozen=True, slots=True)
class Notice:
    """What the automation saw and said without moving a node: a budget past its warning
    line. ``at`` is wall-clock seconds; ``pool`` None for a notice about every pool."""

    at: float
    kind: str
    pool: str | None
    actor: str
    sentence: str
