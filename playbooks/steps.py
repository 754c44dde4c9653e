"""Running one step: ``execute`` (``when``, then the action, its failure caught into the
report), and the actions that change the cluster — burst, run, drain, resume, terminate —
plus check. ``wait`` is in ``waiting.py``, ``notify`` in ``notify.py``, the plans of them all in
``plan.py``.

Each action looks before it acts and asks the control plane only for what is not so yet: a
burst asks for the nodes ``ensure`` still lacks (none: nothing is asked), a drain skips nodes
draining already, a terminate skips nodes ended already. That is what makes a playbook safe to
run twice: the second run finds everything where the first left it, and changes nothing.

Every action goes through the control plane (the session's backend): roles, the audit log and
the engine's rules apply there. A step fails with :class:`StepFailed` and a sentence; what it
changed before failing stays in its report.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Awaitable, Callable, Sequence

from tidectl.console.control.errors import ControlError
from tidectl.console.control.plane import Progress, refusal
from tidectl.console.lifecycle.operate import ActionResult
from tidectl.console.lifecycle.states import State
from tidectl.console.nodesets import fold
from tidectl.console.scheduler.base import SchedulerError
from tidectl.playbooks.conditions import needs_costs, unmet
from tidectl.playbooks.errors import PlaybookError, StepFailed
from tidectl.playbooks.model import (
    Burst,
    Check,
    Condition,
    Drain,
    Expect,
    Notify,
    Resume,
    Run,
    Step,
    StepAction,
    Terminate,
    Wait,
)
from tidectl.playbooks.notify import notify_step
from tidectl.playbooks.report import NodeChange, StepReport
from tidectl.playbooks.session import Session
from tidectl.playbooks.waiting import require, wait_states, wait_step
from tidectl.playbooks.world import NOT_JOINED, SERVING, NodeFacts, World, drain_reason

__all__ = ["BILLING_ENDED", "drainable", "execute", "unmet_when"]

_log = logging.getLogger(__name__)

#: States in which a cloud node no longer needs ending.
BILLING_ENDED = frozenset({State.TERMINATED, State.TERMINATING})


# -- running -------------------------------------------------------------------------------


async def execute(session: Session, step: Step, index: int = 1, total: int = 1) -> StepReport:
    """Run ``step``; its report says how it ended (``failed`` with the sentence when it did:
    this never raises for a step's failure, so a runner can go on to ``on_failure``)."""
    report = StepReport(index, step.title, step.action.kind, step.line, "done", "")
    session.reporter.starting(index, total, step.title, step.action.kind)
    started = time.monotonic()
    try:
        why = await unmet_when(session, step.when, await session.world() if step.when else None)
        if why:
            report.status = "skipped"
            report.sentence = f"skipped: {'; '.join(why)}"
        else:
            await _RUN[type(step.action)](session, step.action, report)
    except StepFailed as error:
        report.status, report.sentence = "failed", str(error)
    except ControlError as error:
        report.status, report.sentence = "failed", refusal(error)
        if error.request_id:
            report.request_ids.append(error.request_id)
    except (PlaybookError, SchedulerError) as error:  # SchedulerError: a reason too long
        report.status, report.sentence = "failed", str(error)
    except Exception as error:  # a bug must not skip the cleanup of what was launched
        _log.exception("step %d (%s) crashed", index, step.title)
        report.status = "failed"
        report.sentence = (
            f"the step crashed ({type(error).__name__}: {error}); this is a bug in tidectl: "
            "please report it"
        )
    report.elapsed_s = time.monotonic() - started
    session.changed.extend(report.changes)
    session.reporter.finished(report)
    return report


async def unmet_when(session: Session, when: Condition | None, world: World | None) -> list[str]:
    if when is None or world is None:
        return []
    costs = await session.costs() if needs_costs(when) else None
    return unmet(when, world, session.playbook, costs)


async def _burst(session: Session, action: StepAction, report: StepReport) -> None:
    assert isinstance(action, Burst)
    world = await session.world()
    live = world.live_in(action.pool)
    adding = max(0, action.ensure - len(live))
    if adding == 0:
        report.sentence = (
            f"pool {action.pool} has {len(live)} live node(s) of {action.ensure}: nothing to add"
        )
        coming = [n.name for n in live if n.state in NOT_JOINED | {State.JOINING}]
        if action.wait is not None and coming:
            progress = await wait_states(session, coming, {State.ACTIVE}, action.wait)
            require(progress, coming, {State.ACTIVE}, "active", session)
        return
    price = await session.backend.price_per_hour(action.pool)
    result = await session.backend.burst(
        session.caller, action.pool, ensure=action.ensure, data_class=action.data_class
    )
    session.launched.extend(n for n in result.nodes if n not in session.launched)
    report.sentence = result.sentence
    report.changes = [
        NodeChange(name, None, str(State.PROVISIONING), "launched", price or 0.0)
        for name in result.nodes
    ]
    if result.rolled_back or result.launched < result.wanted:
        raise StepFailed(f"{result.sentence} (pool {action.pool} wanted {result.wanted})")
    if action.wait is not None and result.nodes:
        progress = await wait_states(session, result.nodes, {State.ACTIVE}, action.wait)
        _settle(report, progress)
        require(progress, result.nodes, {State.ACTIVE}, "active", session)


async def _run(session: Session, action: StepAction, report: StepReport) -> None:
    assert isinstance(action, Run)
    world = await session.world()
    nodes = world.select(action.nodes, session.playbook)
    if not nodes:
        report.sentence = f"no node selected ({action.nodes.describe()}): nothing run"
        return
    names = [n.name for n in nodes]
    session.reporter.update(f"running on {len(names)} node(s): {action.command}", 0.0)
    results = await session.backend.run_command(
        session.caller, names, action.command, timeout_s=action.timeout
    )
    wrong: list[str] = []
    for result in results:
        problem = _unexpected(result.exit_status, result.stdout, result.stderr, action.expect)
        if result.error is not None:
            problem = f"could not run it: {result.error}"
        report.details.append(
            {
                "node": result.node,
                "exit_status": result.exit_status,
                "stdout": result.stdout,
                "stderr": result.stderr,
                "error": result.error,
                "ok": problem is None,
            }
        )
        if problem is not None:
            wrong.append(f"{result.node}: {problem}")
    if wrong:
        raise StepFailed(
            f"`{action.command}` was not as expected on {len(wrong)} of {len(results)} "
            f"node(s): {'; '.join(wrong[:5])}"
        )
    report.sentence = f"`{action.command}` ran as expected on {len(results)} node(s): {fold(names)}"


def _unexpected(exit_status: int | None, stdout: str, stderr: str, expect: Expect) -> str | None:
    if exit_status not in expect.exit:
        wanted = " or ".join(str(e) for e in expect.exit)
        said = (stderr or stdout).strip().splitlines()
        tail = f" ({said[-1][:120]})" if said else ""
        return f"exit {exit_status}, not {wanted}{tail}"
    for name, text, contains, pattern in (
        ("stdout", stdout, expect.stdout, expect.stdout_matches),
        ("stderr", stderr, expect.stderr, expect.stderr_matches),
    ):
        if contains is not None and contains not in text:
            return f"its {name} does not contain {contains!r}"
        if pattern is not None and re.search(pattern, text, re.MULTILINE) is None:
            return f"its {name} does not match {pattern!r}"
    return None


async def _drain(session: Session, action: StepAction, report: StepReport) -> None:
    assert isinstance(action, Drain)
    world = await session.world()
    nodes = world.select(action.nodes, session.playbook)
    todo, draining = drainable(nodes, report)
    reason = drain_reason(session.playbook, action.reason)
    if not todo and not (draining and action.wait is not None):
        report.sentence = f"nothing to drain ({action.nodes.describe()}: {len(nodes)} node(s))"
        return
    if action.one_at_a_time:
        assert action.wait is not None
        for name in todo:
            session.reporter.update(f"draining {name}", 0.0)
            result = await session.backend.drain(session.caller, [name], reason=reason)
            _take(report, result)
            progress = await wait_states(session, [name], {State.DRAINED}, action.wait)
            _settle(report, progress)
            require(progress, [name], {State.DRAINED}, "drained", session)
    else:
        if todo:
            result = await session.backend.drain(session.caller, todo, reason=reason)
            _take(report, result)
        if action.wait is not None:
            waiting = [*todo, *draining]
            progress = await wait_states(session, waiting, {State.DRAINED}, action.wait)
            _settle(report, progress)
            require(progress, waiting, {State.DRAINED}, "drained", session)
    said = "drained" if action.wait is not None else "draining"
    report.sentence = (
        f"{len(todo)} node(s) {said} ({action.reason})"
        if todo
        else (f"{len(draining)} node(s) already draining are drained now")
    )


def drainable(nodes: Sequence[NodeFacts], report: StepReport) -> tuple[list[str], list[str]]:
    """The nodes a drain asks for, and those draining already; the others noted as left."""
    todo: list[str] = []
    draining: list[str] = []
    for node in nodes:
        if node.state in SERVING:
            todo.append(node.name)
        elif node.state is State.DRAINING:
            draining.append(node.name)
            report.unchanged.append(f"{node.name}: already draining")
        elif node.state is State.DRAINED:
            report.unchanged.append(f"{node.name}: already drained")
        elif node.state in NOT_JOINED:
            report.unchanged.append(f"{node.name}: {node.state}, not joined: no job to drain")
        else:
            report.unchanged.append(f"{node.name}: {node.state}: nothing to drain")
    return todo, draining


async def _resume(session: Session, action: StepAction, report: StepReport) -> None:
    assert isinstance(action, Resume)
    world = await session.world()
    nodes = world.select(action.nodes, session.playbook)
    todo = [n.name for n in nodes if n.state in (State.DRAINING, State.DRAINED)]
    report.unchanged = [
        f"{n.name}: {n.state}: nothing to resume" for n in nodes if n.name not in todo
    ]
    if not todo:
        report.sentence = f"nothing to resume ({action.nodes.describe()}: {len(nodes)} node(s))"
        return
    result = await session.backend.resume(session.caller, todo)
    _take(report, result)
    report.sentence = f"{len(todo)} node(s) take jobs again: {fold(todo)}"


async def _terminate(session: Session, action: StepAction, report: StepReport) -> None:
    assert isinstance(action, Terminate)
    world = await session.world()
    nodes = world.select(action.nodes, session.playbook)
    onprem = [n.name for n in nodes if not n.cloud]
    if onprem:
        raise StepFailed(
            f"on-prem nodes are never terminated (tidectl ends only what it launched): "
            f"{fold(onprem)}; select cloud nodes (pool: or launched: true)"
        )
    serving = [n.name for n in nodes if n.state in SERVING]
    draining = [n.name for n in nodes if n.state is State.DRAINING]
    ready = [n.name for n in nodes if n.state not in SERVING | BILLING_ENDED | {State.DRAINING}]
    report.unchanged = [f"{n.name}: already {n.state}" for n in nodes if n.state in BILLING_ENDED]
    price = {n.name: n.price_per_hour or 0.0 for n in nodes}
    if serving:  # terminate only ever follows a finished drain: jobs end on their own
        reason = drain_reason(session.playbook, action.reason)
        _take(report, await session.backend.drain(session.caller, serving, reason=reason))
    if serving or draining:
        waiting = [*serving, *draining]
        progress = await wait_states(
            session, waiting, {State.DRAINED, State.FAILED}, action.drain_timeout
        )
        _settle(report, progress)
        require(progress, waiting, {State.DRAINED, State.FAILED}, "drained", session)
        ready += waiting
    if not ready:
        report.sentence = f"nothing to terminate ({action.nodes.describe()}: {len(nodes)} node(s))"
        return
    result = await session.backend.terminate(session.caller, ready, reason=action.reason)
    _take(report, result, saves=price)
    if action.wait is not None:
        progress = await wait_states(session, ready, {State.TERMINATED}, action.wait)
        _settle(report, progress)
        require(progress, ready, {State.TERMINATED}, "terminated", session)
    report.sentence = f"{len(ready)} node(s) terminated ({action.reason}): {fold(ready)}"


async def _check(session: Session, action: StepAction, report: StepReport) -> None:
    assert isinstance(action, Check)
    world = await session.world()
    costs = await session.costs() if needs_costs(action.condition) else None
    why = unmet(action.condition, world, session.playbook, costs)
    if why:
        lead = f"{action.message}: " if action.message else "check failed: "
        raise StepFailed(lead + "; ".join(why))
    report.sentence = "holds"


# -- recording changes ---------------------------------------------------------------------


def _take(report: StepReport, result: ActionResult, saves: dict[str, float] | None = None) -> None:
    """An action's outcomes into the report, one change per node (a node moved twice in one
    step keeps its first ``before`` and its last ``after``)."""
    if result.intent_id:
        report.request_ids.append(result.intent_id)
    for outcome in result.nodes:
        if outcome.before == outcome.after:
            report.unchanged.append(f"{outcome.node}: {outcome.note}")
            continue
        per_hour = -saves.get(outcome.node, 0.0) if saves is not None else 0.0
        _record(
            report,
            outcome.node,
            before=outcome.before,
            after=outcome.after,
            note=outcome.note,
            per_hour=per_hour,
        )


def _settle(report: StepReport, progress: Progress) -> None:
    """After a wait: each changed node's ``after`` is where the wait left it."""
    for index, change in enumerate(report.changes):
        now = progress.states.get(change.node)
        if now is not None and str(now) != change.after:
            report.changes[index] = NodeChange(
                change.node, change.before, str(now), change.note, change.per_hour
            )


def _record(
    report: StepReport,
    node: str,
    *,
    before: State | None,
    after: State,
    note: str,
    per_hour: float = 0.0,
) -> None:
    for index, change in enumerate(report.changes):
        if change.node == node:
            report.changes[index] = NodeChange(
                node, change.before, str(after), note, change.per_hour + per_hour
            )
            return
    report.changes.append(
        NodeChange(node, None if before is None else str(before), str(after), note, per_hour)
    )


_Runner = Callable[[Session, StepAction, StepReport], Awaitable[None]]
_RUN: dict[type, _Runner] = {
    Burst: _burst,
    Wait: wait_step,
    Run: _run,
    Drain: _drain,
    Resume: _resume,
    Terminate: _terminate,
    Check: _check,
    Notify: notify_step,
}
