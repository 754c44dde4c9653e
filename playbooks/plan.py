"""Each step's plan: what it would change in a world (the cluster as the steps before it
would leave it), node by node and priced, and the world after it. Planning only reads.

It decides as the run does (``steps.py``): the same selection, the same nodes skipped, so a
plan is the run's first half.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from tidectl.console.control.errors import ControlError
from tidectl.console.control.plane import refusal
from tidectl.console.lifecycle.states import State
from tidectl.console.nodesets import fold
from tidectl.console.scheduler.base import SchedulerError
from tidectl.playbooks.conditions import needs_costs, unmet
from tidectl.playbooks.errors import PlaybookError, StepFailed
from tidectl.playbooks.model import (
    Burst,
    Check,
    Drain,
    Notify,
    Resume,
    Run,
    Step,
    StepAction,
    Terminate,
    Wait,
)
from tidectl.playbooks.report import NodeChange, StepReport, money
from tidectl.playbooks.session import Session
from tidectl.playbooks.steps import BILLING_ENDED, drainable, unmet_when
from tidectl.playbooks.world import SERVING, World

__all__ = ["plan_step"]


async def plan_step(
    session: Session, world: World, step: Step, index: int
) -> tuple[StepReport, World]:
    """What ``step`` would do in ``world`` (the cluster as the steps before it would leave
    it), and the world after it. Nothing is asked of anyone but reads."""
    report = StepReport(index, step.title, step.action.kind, step.line, "planned", "")
    try:
        why = await unmet_when(session, step.when, world)
        if why:
            report.status = "skipped"
            report.sentence = f"would skip: {'; '.join(why)}"
            return report, world
        world = await _PLAN[type(step.action)](session, world, step.action, report)
    except (StepFailed, PlaybookError, SchedulerError) as error:
        report.status, report.sentence = "would-fail", str(error)
    except ControlError as error:
        report.status, report.sentence = "would-fail", refusal(error)
    return report, world


async def _plan_burst(
    session: Session, world: World, action: StepAction, report: StepReport
) -> World:
    assert isinstance(action, Burst)
    live = world.live_in(action.pool)
    adding = max(0, action.ensure - len(live))
    if adding == 0:
        report.sentence = (
            f"pool {action.pool} has {len(live)} live node(s) of {action.ensure}: nothing to add"
        )
        return world
    spec = next((p for p in session.backend.config.pools if p.name == action.pool), None)
    gpus = spec.gpus_per_node if spec is not None else 0
    price = await session.backend.price_per_hour(action.pool)
    after, names = world.with_new(action.pool, adding, gpus, price)
    after.planned_burn += adding * (price or 0.0)
    ends = str(State.ACTIVE) if action.wait is not None else str(State.PROVISIONING)
    report.changes = [NodeChange(name, None, ends, "would launch", price or 0.0) for name in names]
    cost = f", {money(adding * price)}" if price is not None else " (price unknown)"
    report.sentence = (
        f"pool {action.pool} has {len(live)} live node(s) of {action.ensure}: would add "
        f"{adding}{cost}"
    )
    return after


async def _plan_wait(
    session: Session, world: World, action: StepAction, report: StepReport
) -> World:
    assert isinstance(action, Wait)
    limit = f"(at most {_duration(action.timeout)})"
    if action.seconds is not None:
        report.sentence = f"would wait {_duration(action.seconds)}"
    elif action.job is not None:
        found = world.job(action.job)
        now = ", ".join(f"{j.id} {j.state}" for j in found) or "not in the queue now"
        report.sentence = f"would wait until job {action.job} ends {limit}; now: {now}"
    elif action.queue_empty:
        report.sentence = f"would wait until no job is pending {limit}; {len(world.pending)} now"
    else:
        assert action.nodes is not None and action.until is not None
        nodes = world.select(action.nodes, session.playbook)
        listed = fold(n.name for n in nodes if not n.new)
        new = sum(1 for n in nodes if n.new)
        said = ", ".join(x for x in (listed, f"{new} new" if new else "") if x) or "none"
        report.sentence = (
            f"would wait until {len(nodes)} node(s) are {action.until} {limit}: {said}"
        )
        if action.until in ("drained", "terminated"):
            world = world.moved({n.name: State(action.until) for n in nodes})
    return world


async def _plan_run(
    session: Session, world: World, action: StepAction, report: StepReport
) -> World:
    assert isinstance(action, Run)
    nodes = world.select(action.nodes, session.playbook)
    wanted = " or ".join(str(e) for e in action.expect.exit)
    report.sentence = (
        f"would run `{action.command}` on {len(nodes)} node(s), expecting exit {wanted}"
        + (f": {', '.join(n.name for n in nodes)}" if nodes else "")
    )
    return world


async def _plan_drain(
    session: Session, world: World, action: StepAction, report: StepReport
) -> World:
    assert isinstance(action, Drain)
    nodes = world.select(action.nodes, session.playbook)
    todo, draining = drainable(nodes, report)
    after = State.DRAINED if action.wait is not None else State.DRAINING
    for name in todo:
        jobs = world.nodes[name].jobs
        note = f"{len(jobs)} job(s) finish first" if jobs else "no job on it"
        report.changes.append(NodeChange(name, str(world.nodes[name].state), str(after), note))
    order = "one at a time, " if action.one_at_a_time else ""
    report.sentence = (
        f"would drain {len(todo)} node(s), {order}reason {action.reason!r}"
        if todo
        else f"nothing to drain ({action.nodes.describe()}: {len(nodes)} node(s))"
    )
    moved = dict.fromkeys(todo, after)
    if action.wait is not None:
        moved |= dict.fromkeys(draining, State.DRAINED)
    return world.moved(moved)


async def _plan_resume(
    session: Session, world: World, action: StepAction, report: StepReport
) -> World:
    assert isinstance(action, Resume)
    nodes = world.select(action.nodes, session.playbook)
    todo = [n for n in nodes if n.state in (State.DRAINING, State.DRAINED)]
    report.changes = [NodeChange(n.name, str(n.state), str(State.ACTIVE), "resume") for n in todo]
    report.unchanged = [f"{n.name}: {n.state}: nothing to resume" for n in nodes if n not in todo]
    report.sentence = (
        f"would resume {len(todo)} node(s)"
        if todo
        else f"nothing to resume ({action.nodes.describe()}: {len(nodes)} node(s))"
    )
    return world.moved({n.name: State.ACTIVE for n in todo})


async def _plan_terminate(
    session: Session, world: World, action: StepAction, report: StepReport
) -> World:
    assert isinstance(action, Terminate)
    nodes = world.select(action.nodes, session.playbook)
    onprem = [n.name for n in nodes if not n.cloud]
    if onprem:
        raise StepFailed(
            f"on-prem nodes are never terminated (tidectl ends only what it launched): "
            f"{fold(onprem)}; select cloud nodes (pool: or launched: true)"
        )
    after = State.TERMINATED if action.wait is not None else State.TERMINATING
    moved: dict[str, State] = {}
    saved = 0.0
    for node in nodes:
        if node.state in BILLING_ENDED:
            report.unchanged.append(f"{node.name}: already {node.state}")
            continue
        billing = node.state not in (State.REQUESTED,)
        per_hour = -(node.price_per_hour or 0.0) if billing else 0.0
        note = "drained first, then ended" if node.state in SERVING | {State.DRAINING} else "ended"
        if node.jobs:
            note += f" ({len(node.jobs)} job(s) finish first)"
        report.changes.append(NodeChange(node.name, str(node.state), str(after), note, per_hour))
        moved[node.name] = after
        saved += per_hour
    world = world.moved(moved)
    world.planned_burn += saved
    report.sentence = (
        f"would terminate {len(moved)} node(s) ({action.reason}), {money(saved)}"
        if moved
        else f"nothing to terminate ({action.nodes.describe()}: {len(nodes)} node(s))"
    )
    return world


async def _plan_check(
    session: Session, world: World, action: StepAction, report: StepReport
) -> World:
    assert isinstance(action, Check)
    costs = await session.costs() if needs_costs(action.condition) else None
    why = unmet(action.condition, world, session.playbook, costs)
    if why:
        lead = f"{action.message}: " if action.message else ""
        raise StepFailed(f"{lead}{'; '.join(why)}")
    report.sentence = "would hold"
    return world


async def _plan_notify(
    session: Session, world: World, action: StepAction, report: StepReport
) -> World:
    assert isinstance(action, Notify)
    where = [str(x) for x in (action.file, action.webhook) if x is not None]
    report.sentence = f"would say {action.message!r} to {' and '.join(where)}"
    return world


_Planner = Callable[[Session, World, StepAction, StepReport], Awaitable[World]]
_PLAN: dict[type, _Planner] = {
    Burst: _plan_burst,
    Wait: _plan_wait,
    Run: _plan_run,
    Drain: _plan_drain,
    Resume: _plan_resume,
    Terminate: _plan_terminate,
    Check: _plan_check,
    Notify: _plan_notify,
}


def _duration(seconds: float) -> str:
    if seconds >= 3600 and seconds % 3600 == 0:
        return f"{seconds / 3600:g} h"
    if seconds >= 60 and seconds % 60 == 0:
        return f"{seconds / 60:g} min"
    return f"{seconds:g} s"
