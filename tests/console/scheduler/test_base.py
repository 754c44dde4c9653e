"""The scheduler interface's rules: whose drain a reason marks, when automation may resume a
node, when a node may be terminated, and what pending jobs add up to."""

from __future__ import annotations

import dataclasses

import pytest

from tidectl.console.scheduler.base import (
    AUTOMATION_PREFIX,
    MAX_REASON_CHARS,
    Demand,
    DuplicateNodeError,
    InvalidReasonError,
    InvalidRequestError,
    Job,
    JobState,
    NodeBusyError,
    NodeFlag,
    SchedNode,
    SchedState,
    SchedulerError,
    SchedulerUnavailableError,
    UnknownNodeError,
    automation_reason,
    check_node_name,
    check_node_names,
    check_reason,
    demand_of,
    drain_reason,
    is_automation_reason,
    is_drained_and_empty,
    may_resume,
    resume_refusal,
)

S = SchedState


def node(state: SchedState, reason: str | None = None, jobs: tuple[str, ...] = ()) -> SchedNode:
    return SchedNode("gpu7", state, gpus=8, reason=reason, jobs=jobs)


def job(
    state: JobState = JobState.PENDING,
    *,
    nodes: tuple[str, ...] = (),
    partition: str = "gpu",
    node_count: int = 1,
    gpus_per_node: int = 8,
    reason: str | None = "Resources",
    job_id: str = "1",
) -> Job:
    return Job(
        id=job_id,
        name="train",
        user="ana",
        state=state,
        partition=partition,
        node_count=node_count,
        gpus_per_node=gpus_per_node,
        nodes=nodes,
        reason=reason if state is JobState.PENDING else None,
    )


# -- reasons ----------------------------------------------------------------------------------


def test_automation_reasons_carry_the_owned_prefix() -> None:
    reason = automation_reason("idle for 30 minutes")
    assert reason == "tidectl: idle for 30 minutes"
    assert is_automation_reason(reason)
    assert automation_reason(reason) == reason  # wrapping twice is harmless


@pytest.mark.parametrize(
    "reason",
    [
        None,
        "",
        "maintenance: replacing GPU 3",
        " tidectl: leading space is not ours",
        "TIDECTL: another case is not ours",
        "drained by tidectl: not at the start",
    ],
)
def test_anything_without_the_exact_prefix_is_a_persons_reason(reason: str | None) -> None:
    assert not is_automation_reason(reason)


@pytest.mark.parametrize(
    ("reason", "words"),
    [
        ("", "needs a reason"),
        ("   ", "needs a reason"),
        ("two\nlines", "line break"),
        ("x" * (MAX_REASON_CHARS + 1), f"{MAX_REASON_CHARS} or fewer"),
    ],
)
def test_bad_reasons_are_refused_with_a_sentence(reason: str, words: str) -> None:
    with pytest.raises(InvalidReasonError, match=words):
        check_reason(reason)


def test_an_automation_reason_needs_text() -> None:
    with pytest.raises(InvalidReasonError, match="automation drain needs a reason"):
        automation_reason("  ")
    assert check_reason("x" * MAX_REASON_CHARS) == "x" * MAX_REASON_CHARS


# -- may_resume -------------------------------------------------------------------------------


@pytest.mark.parametrize("state", [S.DRAINING, S.DRAINED])
def test_automation_may_resume_only_its_own_drain(state: SchedState) -> None:
    assert may_resume(node(state, automation_reason("idle")))
    assert resume_refusal(node(state, automation_reason("idle"))) is None

    refusal = resume_refusal(node(state, "bad DIMM, ticket 4411"))
    assert refusal is not None
    assert "drained by a person" in refusal
    assert "bad DIMM, ticket 4411" in refusal
    assert not may_resume(node(state, "bad DIMM, ticket 4411"))


def test_a_drain_without_a_reason_is_treated_as_a_persons() -> None:
    refusal = resume_refusal(node(S.DRAINED, None))
    assert refusal is not None and "no reason recorded" in refusal
    assert not may_resume(node(S.DRAINED, None))


def test_automation_never_resumes_a_down_node_even_with_its_own_reason() -> None:
    refusal = resume_refusal(node(S.DOWN, automation_reason("idle")))
    assert refusal is not None and "down" in refusal and "by hand" in refusal
    assert not may_resume(node(S.DOWN, "not responding"))


@pytest.mark.parametrize("state", [S.IDLE, S.MIXED, S.ALLOCATED, S.UNKNOWN])
def test_a_node_that_is_not_drained_has_nothing_to_resume(state: SchedState) -> None:
    refusal = resume_refusal(node(state))
    assert refusal is not None and "not drained" in refusal
    assert not may_resume(node(state))


# -- drain_reason -----------------------------------------------------------------------------


@pytest.mark.parametrize("state", [S.DRAINING, S.DRAINED, S.DOWN])
def test_an_automation_drain_never_overwrites_a_persons_reason(state: SchedState) -> None:
    held = node(state, "maintenance: replacing GPU 3")
    assert drain_reason(held, automation_reason("idle")) == "maintenance: replacing GPU 3"


def test_a_persons_drain_replaces_automations_and_so_becomes_theirs_to_undo() -> None:
    ours = node(S.DRAINING, automation_reason("idle"))
    after = drain_reason(ours, "maintenance: replacing GPU 3")
    assert after == "maintenance: replacing GPU 3"
    assert not may_resume(dataclasses.replace(ours, reason=after))


@pytest.mark.parametrize("state", [S.IDLE, S.MIXED, S.ALLOCATED])
def test_a_fresh_drain_sets_its_own_reason(state: SchedState) -> None:
    assert drain_reason(node(state), automation_reason("idle")) == "tidectl: idle"
    assert drain_reason(node(state), "maintenance") == "maintenance"


def test_automation_may_update_its_own_reason() -> None:
    ours = node(S.DRAINED, automation_reason("idle"))
    assert drain_reason(ours, automation_reason("budget")) == "tidectl: budget"


# -- is_drained_and_empty ---------------------------------------------------------------------


def test_only_a_drained_node_without_jobs_may_be_terminated() -> None:
    assert is_drained_and_empty(node(S.DRAINED, "tidectl: idle"))
    assert not is_drained_and_empty(node(S.DRAINING, "tidectl: idle", jobs=("12",)))
    # A scheduler that calls a node drained while listing a job on it is not believed.
    assert not is_drained_and_empty(node(S.DRAINED, "tidectl: idle", jobs=("12",)))
    for state in (S.IDLE, S.MIXED, S.ALLOCATED, S.DOWN, S.UNKNOWN, S.DRAINING):
        assert not is_drained_and_empty(node(state, "tidectl: idle")), state


def test_a_job_listing_that_names_the_node_keeps_it_from_termination() -> None:
    drained = node(S.DRAINED, "tidectl: idle")
    for state in (JobState.RUNNING, JobState.COMPLETING):
        on_it = job(state, nodes=("gpu6", "gpu7"), node_count=2)
        assert not is_drained_and_empty(drained, [on_it]), state
    elsewhere = job(JobState.RUNNING, nodes=("gpu6",))
    assert is_drained_and_empty(drained, [elsewhere, job(JobState.PENDING)])


# -- demand -----------------------------------------------------------------------------------


def test_demand_counts_pending_jobs_by_partition() -> None:
    jobs = [
        job(node_count=8, gpus_per_node=8, reason="Resources", job_id="1"),
        job(node_count=1, gpus_per_node=2, reason="ReqNodeNotAvail", job_id="2"),
        job(node_count=2, gpus_per_node=8, reason="Resources", job_id="3"),
        job(partition="cpu", node_count=3, gpus_per_node=1, job_id="4"),
        job(JobState.RUNNING, nodes=("gpu1",), job_id="5"),  # has its nodes: not demand
        job(JobState.COMPLETING, nodes=("gpu2",), job_id="6"),
    ]
    demand = demand_of(jobs)
    gpu = demand.of("gpu")
    assert (gpu.jobs, gpu.nodes, gpu.gpus, gpu.largest_job_nodes) == (3, 11, 82, 8)
    assert dict(gpu.reasons) == {"Resources": 2, "ReqNodeNotAvail": 1}
    assert (demand.jobs, demand.nodes, demand.gpus) == (4, 14, 85)
    assert sorted(demand.partitions) == ["cpu", "gpu"]


def test_no_pending_jobs_is_zero_demand() -> None:
    demand = demand_of([job(JobState.RUNNING, nodes=("gpu1",))])
    assert demand == Demand()
    assert (demand.jobs, demand.nodes, demand.gpus) == (0, 0, 0)
    assert demand.of("gpu").jobs == 0


def test_a_job_knows_its_time_left() -> None:
    running = dataclasses.replace(
        job(JobState.RUNNING, nodes=("gpu1",)), started_at=100.0, time_limit_s=3600.0
    )
    assert running.time_left(1000.0) == 2700.0
    assert running.time_left(10_000.0) == 0.0
    assert job().time_left(1000.0) is None  # pending: not started
    assert dataclasses.replace(running, time_limit_s=None).time_left(1000.0) is None


def test_values_are_frozen_and_hold_tuples() -> None:
    sched_node = SchedNode("gpu1", S.IDLE, jobs=["1"], flags={NodeFlag.CLOUD})  # type: ignore[arg-type]
    assert sched_node.jobs == ("1",) and sched_node.flags == frozenset({NodeFlag.CLOUD})
    with pytest.raises(dataclasses.FrozenInstanceError):
        sched_node.state = S.DOWN  # type: ignore[misc]
    with pytest.raises(TypeError):
        demand_of([job()]).of("gpu").reasons["x"] = 1  # type: ignore[index]


# -- names and errors -------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["", "gpu[1-4]", "gpu 1", "gpu1,gpu2", "-gpu", "g" * 64])
def test_names_a_scheduler_cannot_take_are_refused(name: str) -> None:
    with pytest.raises(InvalidRequestError, match="not a node name"):
        check_node_name(name)


def test_node_names_must_be_a_non_empty_list() -> None:
    assert check_node_name("gpu-01.site_a") == "gpu-01.site_a"
    with pytest.raises(InvalidRequestError, match=r"\['gpu1'\]"):
        check_node_names("gpu1")
    with pytest.raises(InvalidRequestError, match="at least one"):
        check_node_names([])


def test_errors_are_one_hierarchy_of_sentences() -> None:
    errors: list[SchedulerError] = [
        UnknownNodeError(["gpu9", "gpu10"]),
        DuplicateNodeError("gpu1"),
        NodeBusyError("gpu1", ["12", "13"]),
        InvalidReasonError("bad"),
        InvalidRequestError("bad"),
        SchedulerUnavailableError("sinfo hung"),
    ]
    titles = {type(e).title for e in errors}
    assert len(titles) == len(errors)  # each kind has its own heading
    assert "gpu9, gpu10" in str(errors[0]) and "nothing was changed" in str(errors[0])
    assert "2 jobs are still on it (12, 13)" in str(errors[2])
    assert "1 job is still on it (7)" in str(NodeBusyError("gpu1", ["7"]))
    assert AUTOMATION_PREFIX == "tidectl:"
