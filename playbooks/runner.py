"""Running a playbook: its steps in order, and ``on_failure`` when one fails; or, with
``check``, its plan.

A run stops at the first step that fails, then runs every ``on_failure`` step — each one even
when an earlier one fails too, since they are the cleanup (typically: terminate what this run
launched) — and reports the failure. A plan reads the cluster once and walks the steps over
what each would leave behind (a burst's new nodes are there for the wait, the run and the
terminate after it), so the plan is node by node and priced; ``on_failure`` is planned as it
would run after the playbook's last burst, when the most is at stake. Nothing is changed by a
plan: it only reads.
"""

from __future__ import annotations

from tidectl.playbooks.model import Burst, Playbook
from tidectl.playbooks.plan import plan_step
from tidectl.playbooks.report import RunReport
from tidectl.playbooks.session import Session
from tidectl.playbooks.steps import execute

__all__ = ["play"]


async def play(session: Session, playbook: Playbook, *, check: bool = False) -> RunReport:
    """Run ``playbook`` on the session's cluster (``check``: plan it); the report says how
    it went. Only a bug raises: a step that fails is in the report."""
    if check:
        return await _plan(session, playbook)
    report = RunReport(playbook, check=False)
    total = len(playbook.steps)
    for index, step in enumerate(playbook.steps, start=1):
        done = await execute(session, step, index, total)
        report.steps.append(done)
        if done.status != "failed":
            continue
        session.failed_step = f"{index} ({step.title}): {done.sentence}"
        if playbook.on_failure:
            session.reporter.note(
                f"step {index} ({step.title}) failed; running on_failure "
                f"({len(playbook.on_failure)} step(s))"
            )
        cleanup = len(playbook.on_failure)
        for number, undo in enumerate(playbook.on_failure, start=1):
            report.on_failure.append(await execute(session, undo, number, cleanup))
        break
    return report


async def _plan(session: Session, playbook: Playbook) -> RunReport:
    report = RunReport(playbook, check=True)
    world = await session.world()
    exposed = world
    for index, step in enumerate(playbook.steps, start=1):
        planned, world = await plan_step(session, world, step, index)
        report.steps.append(planned)
        if isinstance(step.action, Burst):
            exposed = world
    for number, undo in enumerate(playbook.on_failure, start=1):
        planned, exposed = await plan_step(session, exposed, undo, number)
        report.on_failure.append(planned)
    return report
