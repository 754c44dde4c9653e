"""Drain never kills a job: random arrivals, submissions, drains (a person's and automation's),
resumes, nodes joining, leaving and being lost, with the clock moving in random steps.

Invariants, checked after every step:
* every job that ended completed its full duration, unless a node under it was lost at that
  very moment (the one way a job may end early, and never a drain);
* no job runs forever (each is gone within its longest possible duration plus the epilog);
* a drained node has no job, and no job starts on a node after it was drained;
* the nodes' job lists and the job list agree, and no node holds more GPUs than it has;
* a person's drain reason is never replaced by automation's.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Coroutine
from typing import Any, TypeVar

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from tidectl.console.scheduler.base import (
    JobState,
    NodeBusyError,
    SchedState,
    automation_reason,
    is_automation_reason,
)
from tidectl.console.scheduler.sim import Outcome, SimScheduler
from tidectl.console.scheduler.workload import JobSpec, Workload

T = TypeVar("T")
EPILOG_S = 5.0
LONGEST_S = 6 * 3600.0  # the workload's longest job; submitted ones are shorter
PERSON_REASON = "bad DIMM, ticket 4411"


def call(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


class DrainNeverKills(RuleBasedStateMachine):
    sim: SimScheduler

    def __init__(self) -> None:
        super().__init__()
        self.on_drain: dict[str, set[str]] = {}  # drained node → the jobs on it at the drain
        self.persons_drain: set[str] = set()  # nodes a person drained, until resumed
        self.losses: set[tuple[str, float]] = set()  # (node, when it was lost)
        self.next_burst = 1

    @initialize(
        seed=st.integers(0, 2**16),
        gpus=st.lists(st.sampled_from([4, 8]), min_size=1, max_size=6),
        mean_gap_s=st.sampled_from([120.0, 600.0, 1800.0]),
    )
    def start(self, seed: int, gpus: list[int], mean_gap_s: float) -> None:
        nodes = {f"gpu{i}": count for i, count in enumerate(gpus, start=1)}
        workload = Workload(mean_gap_s=mean_gap_s, max_queue=20)
        self.sim = SimScheduler(nodes, seed=seed, workload=workload, epilog_s=EPILOG_S)

    # -- what happens -------------------------------------------------------------------------

    def names(self) -> list[str]:
        return [n.name for n in call(self.sim.nodes())]

    def pick(self, picks: list[int]) -> list[str]:
        names = self.names()
        return sorted({names[i % len(names)] for i in picks})

    def has_nodes(self) -> bool:
        return bool(self.names())

    @rule(seconds=st.one_of(st.floats(0.0, 600.0), st.floats(600.0, 4 * 3600.0)))
    def advance(self, seconds: float) -> None:
        self.sim.advance(seconds)

    @rule(
        nodes=st.integers(1, 4),
        gpus=st.sampled_from([1, 2, 4, 8]),
        duration=st.floats(1.0, 3 * 3600.0),
    )
    def submit(self, nodes: int, gpus: int, duration: float) -> None:
        self.sim.submit(JobSpec("probe", "test", nodes, gpus, duration))

    @precondition(has_nodes)
    @rule(picks=st.lists(st.integers(0, 31), min_size=1, max_size=3), by_person=st.booleans())
    def drain(self, picks: list[int], by_person: bool) -> None:
        names = self.pick(picks)
        before = {n.name: n for n in call(self.sim.nodes())}
        reason = PERSON_REASON if by_person else automation_reason("scale in")
        call(self.sim.drain(names, reason))
        for name in names:
            if not (before[name].drain_set or before[name].state is SchedState.DOWN):
                self.on_drain[name] = set(before[name].jobs)
            if by_person:
                self.persons_drain.add(name)

    @precondition(has_nodes)
    @rule(picks=st.lists(st.integers(0, 31), min_size=1, max_size=3))
    def resume(self, picks: list[int]) -> None:
        names = self.pick(picks)
        call(self.sim.resume(names))
        for name in names:
            self.on_drain.pop(name, None)
            self.persons_drain.discard(name)

    @rule(gpus=st.sampled_from([4, 8]))
    def add_node(self, gpus: int) -> None:
        call(self.sim.add_node(f"burst{self.next_burst}", gpus))
        self.next_burst += 1

    @precondition(has_nodes)
    @rule(pick=st.integers(0, 31))
    def remove_node(self, pick: int) -> None:
        (name,) = self.pick([pick])
        jobs = call(self.sim.jobs(name))
        try:
            call(self.sim.remove_node(name))
        except NodeBusyError as refused:
            assert jobs, "a node without jobs was refused"
            assert set(refused.job_ids) == {j.id for j in jobs}
            assert name in self.names()  # refused: still there, jobs untouched
            assert call(self.sim.jobs(name)) == jobs
            return
        assert not jobs, "a node with jobs was removed"
        self.on_drain.pop(name, None)
        self.persons_drain.discard(name)

    @precondition(has_nodes)
    @rule(pick=st.integers(0, 31))
    def lose_node(self, pick: int) -> None:
        (name,) = self.pick([pick])
        self.sim.node_lost(name, "instance vanished")
        self.losses.add((name, self.sim.now))

    # -- what must always hold ----------------------------------------------------------------

    @invariant()
    def jobs_end_only_by_completing_or_a_lost_node(self) -> None:
        for done in self.sim.finished:
            if done.outcome is Outcome.COMPLETED:
                assert math.isclose(done.ran_s, done.spec.duration_s), done
                assert done.ended_at + EPILOG_S <= self.sim.now + 1e-6, done
            else:
                assert done.outcome is Outcome.NODE_FAILED
                assert any((n, done.ended_at) in self.losses for n in done.nodes), done

    @invariant()
    def no_job_runs_forever(self) -> None:
        for job in call(self.sim.jobs()):
            if job.state is not JobState.PENDING:
                assert job.started_at is not None
                assert self.sim.now - job.started_at <= LONGEST_S + EPILOG_S + 1e-6, job

    @invariant()
    def drained_nodes_are_empty_and_drains_admit_no_new_job(self) -> None:
        jobs = call(self.sim.jobs())
        by_id = {j.id: j for j in jobs}
        for node in call(self.sim.nodes()):
            on_node = {j.id for j in jobs if node.name in j.nodes}
            assert set(node.jobs) == on_node, node
            assert sum(by_id[j].gpus_per_node for j in node.jobs) <= node.gpus, node
            if node.state is SchedState.DRAINED:
                assert node.jobs == (), node
            if node.drain_set and node.name in self.on_drain:
                assert set(node.jobs) <= self.on_drain[node.name], node
            if node.name in self.persons_drain and node.drain_set:
                assert not is_automation_reason(node.reason), node


DrainNeverKills.TestCase.settings = settings(max_examples=60, stateful_step_count=30, deadline=None)
TestDrainNeverKills = DrainNeverKills.TestCase
