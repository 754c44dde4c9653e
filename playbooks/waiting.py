"""The ``wait`` step, and the waiting every step does: on lifecycle states through the
control plane's own wait (which follows the reconcile loop), on health, jobs and the queue by
looking at the world again every second, each bounded by its timeout and failing with where
each node stands.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Collection, Sequence

from tidectl.console.control.plane import Progress
from tidectl.console.lifecycle.states import State
from tidectl.console.nodesets import fold
from tidectl.playbooks.errors import StepFailed
from tidectl.playbooks.model import StepAction, Wait
from tidectl.playbooks.report import StepReport
from tidectl.playbooks.session import Session
from tidectl.playbooks.world import NodeFacts, World

__all__ = ["POLL_S", "poll", "require", "wait_states", "wait_step"]

#: How often a wait on health, a job or the queue looks again.
POLL_S = 1.0


async def wait_step(session: Session, action: StepAction, report: StepReport) -> None:
    assert isinstance(action, Wait)
    if action.seconds is not None:
        await _sleep(session, action.seconds)
        report.sentence = f"waited {action.seconds:g} s"
        return
    if action.job is not None:
        job = action.job
        await poll(
            session,
            action.timeout,
            lambda world: not world.job(job),
            lambda world: _job_line(world, job),
            f"job {job} still pending or running",
        )
        report.sentence = f"job {job} is neither pending nor running"
        return
    if action.queue_empty:
        await poll(
            session,
            action.timeout,
            lambda world: not world.pending,
            lambda world: f"{len(world.pending)} job(s) pending",
            "jobs still wait in the scheduler's queue",
        )
        report.sentence = "no job waits in the scheduler's queue"
        return
    assert action.nodes is not None and action.until is not None
    world = await session.world()
    nodes = world.select(action.nodes, session.playbook)
    if not nodes:
        report.sentence = f"no node selected ({action.nodes.describe()}): nothing to wait for"
        return
    names = [n.name for n in nodes]
    if action.until == "healthy":
        await _wait_healthy(session, nodes, action.timeout)
    else:
        until = {State(action.until)}
        await _wait_nodes(session, nodes, until, action.until, action.timeout)
    report.sentence = f"{len(names)} node(s) {action.until}: {fold(names)}"


async def _wait_nodes(
    session: Session, nodes: Sequence[NodeFacts], until: set[State], word: str, timeout: float
) -> None:
    """Recorded nodes through the control plane's wait; the others (on-prem machines the
    store never met) by the world's word."""
    if State.TERMINATED in until:
        onprem = [n.name for n in nodes if not n.cloud]
        if onprem:
            raise StepFailed(
                f"on-prem nodes are never terminated: {fold(onprem)}; wait for cloud nodes"
            )
    recorded = [n.name for n in nodes if n.recorded]
    started = time.monotonic()
    if recorded:
        progress = await wait_states(session, recorded, until, timeout)
        require(progress, recorded, until, word, session)
    others = {n.name for n in nodes if not n.recorded}
    if others:
        left = max(0.0, timeout - (time.monotonic() - started))
        await poll(
            session,
            left,
            lambda world: all(world.nodes[n].state in until for n in others if n in world.nodes),
            lambda world: (
                f"{sum(world.nodes[n].state in until for n in others)} of {len(others)} {word}"
            ),
            f"not all of {fold(others)} {word}",
        )


async def _wait_healthy(session: Session, nodes: Sequence[NodeFacts], timeout: float) -> None:
    started = time.monotonic()
    coming = [n for n in nodes if n.cloud and n.state is not State.ACTIVE]
    if coming:
        await _wait_nodes(session, coming, {State.ACTIVE}, "active", timeout)
    names = {n.name for n in nodes}

    def healthy(world: World) -> bool:
        return all(world.nodes[n].healthy for n in names if n in world.nodes)

    def line(world: World) -> str:
        sick = sorted(
            f"{n} {world.nodes[n].health.word}"
            for n in names
            if n in world.nodes and not world.nodes[n].healthy
        )
        return f"{len(names) - len(sick)} of {len(names)} healthy" + (
            f"; waiting for {', '.join(sick[:4])}" if sick else ""
        )

    left = max(0.0, timeout - (time.monotonic() - started))
    await poll(session, left, healthy, line, "not every node is healthy")


async def wait_states(
    session: Session, names: Collection[str], until: Collection[State], timeout: float
) -> Progress:
    def show(progress: Progress) -> None:
        session.reporter.update(_counts(progress), progress.elapsed_s)

    return await session.backend.wait(names, until, timeout_s=timeout, on_progress=show)


def require(
    progress: Progress,
    names: Collection[str],
    until: Collection[State],
    word: str,
    session: Session,
) -> None:
    """Fail unless every node got to ``until``, saying where each other one stands."""
    behind = {n: progress.states.get(n) for n in names if progress.states.get(n) not in until}
    if not behind:
        return
    where = ", ".join(f"{n} {s or 'unknown'}" for n, s in sorted(behind.items())[:6])
    timed_out = progress.done < progress.total
    how = f"after {progress.elapsed_s:.0f} s" if timed_out else "before getting there"
    last = (
        f"; the control plane's last report: {session.backend.reports[-1]}"
        if (session.backend.reports)
        else ""
    )
    raise StepFailed(f"{len(behind)} of {len(names)} node(s) not {word} {how}: {where}{last}")


def _counts(progress: Progress) -> str:
    counts: dict[str, int] = {}
    for state in progress.states.values():
        counts[str(state)] = counts.get(str(state), 0) + 1
    return ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "waiting"


async def poll(
    session: Session,
    timeout: float,
    done: Callable[[World], bool],
    line: Callable[[World], str],
    failure: str,
) -> None:
    started = time.monotonic()
    while True:
        world = await session.world()
        elapsed = time.monotonic() - started
        if done(world):
            return
        session.reporter.update(line(world), elapsed)
        if elapsed >= timeout:
            raise StepFailed(f"{failure} after {elapsed:.0f} s: {line(world)}")
        await asyncio.sleep(min(POLL_S, max(0.05, timeout - elapsed)))


async def _sleep(session: Session, seconds: float) -> None:
    started = time.monotonic()
    while (left := seconds - (time.monotonic() - started)) > 0:
        session.reporter.update(f"{left:.0f} s to go", time.monotonic() - started)
        await asyncio.sleep(min(POLL_S, left))


def _job_line(world: World, job: str) -> str:
    found = world.job(job)
    return ", ".join(f"job {j.id} ({j.name}) {j.state}" for j in found) or f"job {job} gone"
