"""The policy loop: every ``[policies] interval_s``, one look at the world, the rules'
decisions (``rules.py``), carried out through the ControlPlane as the actor ``policy``.

Every decision passes the plane's one door like a person's: the audit log records it (actor
``policy``, front end ``service``) and the node's history keeps the rule's reason. What each
pass decided, and how it went, is reported (the events view shows it). ``dry_run`` decides and
reports what it would do, and does nothing.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from tidectl.console.control.caller import Caller, Frontend
from tidectl.console.control.errors import ControlError
from tidectl.console.control.roles import POLICY_ACTOR
from tidectl.console.cost.budgets import budget_refusal, budget_status
from tidectl.console.lifecycle.states import NodeKind, State
from tidectl.console.model import LinkState
from tidectl.console.policy.rules import (
    POLICY_REASON,
    Burst,
    Decision,
    Drain,
    Look,
    Memory,
    NodeLook,
    Terminate,
    Warn,
    decide,
)
from tidectl.console.scheduler.base import JobState

if TYPE_CHECKING:
    from tidectl.console.control.plane import ControlPlane

__all__ = ["POLICY", "Done", "PolicyLoop"]

_log = logging.getLogger(__name__)

POLICY: Final = Caller(POLICY_ACTOR, Frontend.SERVICE)
_DRAINED_STATES: Final = frozenset({State.DRAINING, State.DRAINED})


@dataclass(frozen=True, slots=True)
class Done:
    """A decision and what became of it: ``sentence`` is what happened (or would have)."""

    decision: Decision
    ok: bool
    sentence: str


class PolicyLoop:
    def __init__(self, plane: ControlPlane, *, dry_run: bool = False) -> None:
        self.plane = plane
        self.dry_run = dry_run
        self.memory = Memory()
        self.passes = 0
        #: Told each pass's sentences (``tidectl serve --policy-dry-run`` prints them).
        self.listeners: list[Callable[[list[str]], None]] = []

    async def run(self) -> None:
        """Pass after pass until cancelled; a pass that fails is reported, not fatal."""
        interval = self.plane.config.policies.interval_s
        while True:
            try:
                await self.pass_once()
            except asyncio.CancelledError:
                raise
            except Exception as error:  # one bad pass must not end the automation
                _log.exception("policy pass failed")
                self.plane.report([f"policy: the pass failed ({error}); trying again"])
            await asyncio.sleep(interval)

    async def pass_once(self) -> list[Done]:
        """One look, the rules' decisions, each carried out (or, dry, described)."""
        look = await self.look()
        if look is None:
            return []  # the scheduler has not been read yet: whether nodes hold jobs is unknown
        now = look.now

        def fits(pool: str, price: float) -> int | None:
            return self._fit(pool, price, now)

        decisions = decide(look, self.plane.config.pools, self.memory, fits)
        done = [d for d in [await self._carry_out(decision) for decision in decisions] if d]
        self.passes += 1
        if done:
            said = [_said(item, dry=self.dry_run) for item in done]
            for sentence in said:
                _log.info("%s", sentence)
            self.plane.report(said)
            for listener in self.listeners:
                listener(said)
        return done

    async def look(self) -> Look | None:
        """What the rules decide on; None while a scheduler exists that no reconcile pass has
        read yet."""
        plane = self.plane
        now = plane.engine.now()
        snapshot = plane.scheduler_snapshot()
        if snapshot is None and plane.has_scheduler:
            return None
        records = [r for r in plane.nodes(live_only=True) if r.kind is NodeKind.CLOUD]
        drains = self._drain_reasons([r.name for r in records if r.state in _DRAINED_STATES])
        nodes = tuple(
            NodeLook(
                name=record.name,
                pool=record.pool or "",
                state=record.state,
                state_since=record.state_since,
                created_at=record.created_at,
                jobs=None if snapshot is None else len(snapshot.jobs_on(record.name)),
                gpu_utils=self._gpu_utils(record.name),
                drain_reason=drains.get(record.name),
            )
            for record in records
        )
        pending = (
            ()
            if snapshot is None
            else tuple(job for job in snapshot.jobs if job.state is JobState.PENDING)
        )
        budgets = tuple(budget_status(b, plane.store, now) for b in plane.config.budgets)
        prices = {pool.name: await plane.price_per_hour(pool.name) for pool in plane.pools()}
        return Look(now, nodes, pending, budgets, prices)

    def _gpu_utils(self, name: str) -> tuple[float, ...] | None:
        """Each GPU's utilisation in the node's latest fresh sample; None when the node is
        not streaming, stale, or its sample has no GPU figures."""
        fleet = self.plane.fleet
        node = None if fleet is None else fleet.nodes.get(name)
        if node is None or node.link is not LinkState.STREAMING or node.stale:
            return None
        sample = node.sample
        gpu = None if sample is None else sample.probes.gpu
        if gpu is None or gpu.error is not None or not gpu.gpus:
            return None
        utils = [g.util_pct for g in gpu.gpus]
        if any(u is None for u in utils):
            return None
        return tuple(float(u) for u in utils if u is not None)

    def _drain_reasons(self, names: Sequence[str]) -> dict[str, str]:
        """Why each node was last drained (its move into draining): the policy's own reason
        (``policy: ...``) when the policy drained it, else who did and why — which the
        terminate rule leaves alone, whatever words a person chose."""
        reasons: dict[str, str] = {}
        for name in names:
            for move in reversed(self.plane.store.history(name)):
                if move.after is State.DRAINING:
                    said = move.reason.removeprefix(f"drain asked by {move.actor}: ")
                    mine = move.actor == POLICY_ACTOR and said.startswith(POLICY_REASON)
                    reasons[name] = said if mine else f"by {move.actor}: {move.reason}"
                    break
        return reasons

    def _fit(self, pool: str, price: float, now: float) -> int | None:
        """How many nodes of ``pool`` at ``price`` the budgets allow now (None: no budget)."""
        budgets = self.plane.config.budgets
        spec = self.plane.pool(pool)
        if spec is None:
            return 0
        if budget_refusal(budgets, self.plane.store, pool, count=1, price_per_hour=price, now=now):
            return 0
        low, high = 1, spec.max_nodes
        while low < high:  # the largest count that fits
            mid = (low + high + 1) // 2
            if budget_refusal(
                budgets, self.plane.store, pool, count=mid, price_per_hour=price, now=now
            ):
                high = mid - 1
            else:
                low = mid
        covered = any(b.pool in (None, pool) for b in budgets)
        return low if covered else None

    async def _carry_out(self, decision: Decision) -> Done | None:
        """What became of ``decision``; None for a warning given already (before a restart:
        the store keeps one per budget and period, and ``tidectl events`` lists it)."""
        if isinstance(decision, Warn):
            if not self.dry_run and not self.plane.record_notice(
                "budget-warning", decision.sentence, pool=decision.pool, key=decision.key
            ):
                return None
            return Done(decision, True, decision.sentence)
        if self.dry_run:
            return Done(decision, True, _what(decision))
        plane = self.plane
        result: object
        try:
            if isinstance(decision, Drain):
                result = await plane.drain(POLICY, [decision.node], reason=decision.reason)
            elif isinstance(decision, Terminate):
                result = await plane.terminate(POLICY, [decision.node], reason=decision.reason)
            else:
                assert isinstance(decision, Burst)
                result = await plane.burst(
                    POLICY, decision.pool, count=decision.count, why=decision.reason
                )
        except ControlError as error:
            return Done(decision, False, str(error))
        return Done(decision, True, getattr(result, "sentence", "") or _what(decision))


def _what(decision: Decision) -> str:
    if isinstance(decision, Drain):
        return f"drain {decision.node} ({decision.reason})"
    if isinstance(decision, Terminate):
        return f"terminate {decision.node} ({decision.reason})"
    if isinstance(decision, Burst):
        return f"burst {decision.count} into {decision.pool} ({decision.reason})"
    return decision.sentence


def _said(item: Done, *, dry: bool) -> str:
    rule = item.decision.rule
    if isinstance(item.decision, Warn):
        return f"policy {rule}: {item.sentence}"
    if dry:
        return f"policy {rule} (dry run) would {_what(item.decision)}"
    if item.ok:
        return f"policy {rule}: {_what(item.decision)}: {item.sentence}"
    return f"policy {rule}: could not {_what(item.decision)}: {item.sentence}"
