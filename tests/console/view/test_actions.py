"""What the console's lifecycle keys allow and say, without a screen: which states each action
is offered in (and the sentence when not), the burst form's count and cost, the drain and
terminate dialogs' words."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tidectl.console.config.model import PoolSpec
from tidectl.console.lifecycle.records import NodeRecord
from tidectl.console.lifecycle.states import NodeKind, State
from tidectl.console.scheduler.base import Job, JobState
from tidectl.console.view.actions import (
    burst_form,
    default_drain_reason,
    drain_heading,
    drain_refusal,
    job_line,
    live_in,
    no_plane,
    resume_refusal,
    terminate_question,
    terminate_refusal,
)

S = State
POOL = PoolSpec(
    name="burst",
    provider="sim",
    region="sim-local",
    site="sim-local",
    instance_types=("sim.gpu8",),
    zones=(),
    gpus_per_node=8,
    max_nodes=4,
    price_per_hour=None,
)


def record(
    state: State, kind: NodeKind = NodeKind.CLOUD, name: str = "burst-0001", pool: str = "burst"
) -> NodeRecord:
    return NodeRecord(
        name=name,
        kind=kind,
        pool=pool if kind is NodeKind.CLOUD else None,
        state=state,
        state_since=0.0,
        instance_id="i-0abc" if kind is NodeKind.CLOUD else None,
        intent_id=None,
        created_at=0.0,
        updated_at=0.0,
        price_per_hour=24.0 if kind is NodeKind.CLOUD else None,
    )


# --- which states allow what --------------------------------------------------------------------


Refusal = Callable[[str, NodeRecord | None], str | None]


def allowed(refusal: Refusal, states: list[State], kind: NodeKind) -> list[State]:
    return [s for s in states if refusal("n", record(s, kind)) is None]


def test_drain_is_offered_on_active_and_joining_nodes_and_on_nodes_the_store_does_not_know() -> (
    None
):
    assert allowed(drain_refusal, list(State), NodeKind.CLOUD) == [S.JOINING, S.ACTIVE]
    assert allowed(drain_refusal, list(State), NodeKind.ONPREM) == [S.JOINING, S.ACTIVE]
    assert drain_refusal("gpu1", None) is None  # an on-prem node never drained


def test_resume_is_offered_on_draining_and_drained_nodes() -> None:
    assert allowed(resume_refusal, list(State), NodeKind.CLOUD) == [S.DRAINING, S.DRAINED]
    assert resume_refusal("gpu1", None) == (
        "gpu1 is not drained or draining: it takes jobs already, nothing to resume."
    )


def test_terminate_is_offered_only_on_cloud_nodes_that_run_no_job() -> None:
    assert allowed(terminate_refusal, list(State), NodeKind.CLOUD) == [
        S.PROVISIONING,
        S.BOOTSTRAPPING,
        S.DRAINED,
        S.FAILED,
    ]
    assert allowed(terminate_refusal, list(State), NodeKind.ONPREM) == []
    assert "never terminates a machine it did not launch" in str(terminate_refusal("gpu1", None))


@pytest.mark.parametrize(
    ("refusal", "state", "sentence"),
    [
        (
            terminate_refusal,
            S.ACTIVE,
            "Cannot terminate burst-0001: it is active; drain it first (d) and terminate it "
            "once it is drained; a terminate never kills a job.",
        ),
        (
            terminate_refusal,
            S.DRAINING,
            "Cannot terminate burst-0001: it is draining; its drain is not finished (jobs still "
            "run on it); terminate it once it is drained.",
        ),
        (
            drain_refusal,
            S.DRAINED,
            "Cannot drain burst-0001: it is drained; it is drained already; r resumes it, t "
            "terminates a cloud node.",
        ),
        (
            drain_refusal,
            S.BOOTSTRAPPING,
            "Cannot drain burst-0001: it is bootstrapping; it is not in the scheduler yet and "
            "runs no job: t terminates it.",
        ),
        (
            resume_refusal,
            S.FAILED,
            "Cannot resume burst-0001: it is failed; only a drained node can be resumed.",
        ),
    ],
)
def test_refusals_say_what_to_do_instead(refusal: Refusal, state: State, sentence: str) -> None:
    assert refusal("burst-0001", record(state)) == sentence


def test_without_a_plane_the_keys_say_why() -> None:
    assert no_plane(None) == "The control plane is still starting; try again in a moment."
    assert no_plane("the store is in use by tidectl serve (pid 7)") == (
        "Lifecycle actions are off in this console: the store is in use by tidectl serve (pid 7)."
    )


# --- burst --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "live", "count", "problem", "cost"),
    [
        ("1", 0, 1, None, "adds $24.00/h"),
        (" 3 ", 1, 3, None, "adds $72.00/h (3 nodes at $24.00/h)"),
        ("", 0, None, "type how many nodes to add (1 to 4)", "$24.00/h a node"),
        ("x2", 0, None, "'x2' is not a whole number: type how many nodes to add (1 to 4)", None),
        ("-1", 0, None, "'-1' is not a whole number: type how many nodes to add (1 to 4)", None),
        ("0", 0, None, "pool burst has 0 of its 4 nodes: add 1 to 4, not 0", None),
        ("3", 2, None, "pool burst has 2 of its 4 nodes: add 1 to 2, not 3", None),
        (
            "1",
            4,
            None,
            "pool burst has 4 node(s), its max_nodes: raise max_nodes in cluster.toml to burst "
            "more",
            None,
        ),
    ],
)
def test_the_burst_form_checks_the_count_against_the_pool_and_prices_it(
    text: str, live: int, count: int | None, problem: str | None, cost: str | None
) -> None:
    form = burst_form(POOL, text, live=live, price=24.0, priced=True)
    assert (form.pool, form.count, form.problem, form.ready) == (
        "burst",
        count,
        problem,
        count is not None,
    )
    if cost is not None:
        assert form.cost == cost


def test_the_burst_cost_before_and_without_a_price() -> None:
    assert burst_form(POOL, "2", live=0, price=None, priced=False).cost == "asking the price…"
    unknown = burst_form(POOL, "2", live=0, price=None, priced=True)
    assert unknown.ready and unknown.cost.startswith("price not known: set price_per_hour")
    assert burst_form(POOL, "1000", live=0, price=3000.0, priced=True).count is None
    big = burst_form(POOL, "4", live=0, price=3000.5, priced=True)
    assert big.cost == "adds $12,002.00/h (4 nodes at $3,000.50/h)"


def test_live_nodes_are_the_pools_nodes_not_ended() -> None:
    records = [
        record(S.ACTIVE, name="b1"),
        record(S.DRAINED, name="b2"),
        record(S.FAILED, name="b3"),
        record(S.TERMINATED, name="b4"),
        record(S.ACTIVE, name="o1", pool="other"),
        record(S.ACTIVE, NodeKind.ONPREM, name="gpu1"),
    ]
    assert live_in("burst", records) == 2


# --- drain and terminate dialogs ----------------------------------------------------------------

JOB = Job(
    id="1001",
    name="llm-pretrain",
    user="ana",
    state=JobState.RUNNING,
    partition="gpu",
    node_count=2,
    gpus_per_node=8,
    nodes=("burst-0001", "burst-0002"),
)


def test_the_drain_dialog_lists_the_jobs_that_run_to_completion() -> None:
    assert job_line(JOB) == "1001  llm-pretrain  (ana, 8 GPUs on each of 2 nodes)"
    single = Job("7", "eval", "bo", JobState.RUNNING, "gpu", 1, 4, ("burst-0001",))
    assert job_line(single) == "7  eval  (bo, 4 GPUs)"
    assert drain_heading("burst-0001", [JOB, single]) == (
        "Drain burst-0001: no new job starts on it; the 2 job(s) on it run to completion first:"
    )
    assert "No job runs on it now" in drain_heading("burst-0001", [])
    assert default_drain_reason("ana") == "drained by ana via tidectl console"


def test_the_terminate_question_names_the_instance_and_what_it_costs() -> None:
    lines = terminate_question(record(S.DRAINED))
    assert lines[0] == "Terminate burst-0001 (instance i-0abc), drained?"
    assert "which costs $24.00/h" in lines[1] and "cannot be undone" in lines[1]
