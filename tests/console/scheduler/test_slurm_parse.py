"""Reading Slurm's output: outputs recorded from a real Slurm 22.05 (tests/fakes/slurm_outputs/),
the 23.02+ shapes, and output that is cut short, missing fields or states nobody knew."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tidectl.console.scheduler.base import JobState, NodeFlag, SchedNode, SchedState
from tidectl.console.scheduler.slurm_parse import (
    SlurmOutputError,
    expand_hostlist,
    gpus_of_gres,
    parse_sinfo_json,
    parse_squeue_json,
    with_jobs,
)

S = SchedState
RECORDED = Path(__file__).parents[2] / "fakes" / "slurm_outputs"


def recorded(name: str) -> str:
    return (RECORDED / name).read_text()


def sinfo_with(**fields: Any) -> str:
    """The recorded idle sinfo output with onprem1's fields replaced."""
    document = json.loads(recorded("sinfo_idle.json"))
    document["nodes"][0].update(fields)
    return json.dumps(document)


def squeue_with(**fields: Any) -> str:
    """The recorded squeue output, cut to its running job (id 3), with fields replaced."""
    document = json.loads(recorded("squeue_running.json"))
    (job,) = [j for j in document["jobs"] if j["job_id"] == 3]
    job.update(fields)
    document["jobs"] = [job]
    return json.dumps(document)


# -- recorded from a real Slurm ---------------------------------------------------------------


def test_idle_nodes() -> None:
    nodes = parse_sinfo_json(recorded("sinfo_idle.json"))

    assert nodes == [
        SchedNode("onprem1", S.IDLE, partitions=("gpu",)),
        SchedNode("onprem2", S.IDLE, partitions=("gpu",)),
    ]


def test_drain_on_busy_nodes_is_draining_with_reason_user_and_time() -> None:
    onprem1, onprem2 = parse_sinfo_json(recorded("sinfo_draining.json"))

    # Recorded: onprem1 mixed+DRAIN (1 of 2 CPUs taken), onprem2 allocated+DRAIN.
    assert (onprem1.state, onprem1.reason) == (S.DRAINING, "tidectl: idle for 30 minutes")
    assert (onprem2.state, onprem2.reason) == (S.DRAINING, "maintenance: GPU 3")
    assert (onprem1.reason_by, onprem1.reason_at) == ("root", 1795923952.0)


def test_drain_on_idle_nodes_is_drained() -> None:
    nodes = parse_sinfo_json(recorded("sinfo_drained.json"))

    assert [(n.state, n.reason) for n in nodes] == [
        (S.DRAINED, "tidectl: idle for 30 minutes"),
        (S.DRAINED, "maintenance: GPU 3"),
    ]


def test_just_resumed_nodes_are_idle_and_not_responding() -> None:
    nodes = parse_sinfo_json(recorded("sinfo_resumed.json"))

    assert [(n.state, n.flags, n.reason) for n in nodes] == [
        (S.IDLE, frozenset({NodeFlag.NOT_RESPONDING}), None),
        (S.IDLE, frozenset({NodeFlag.NOT_RESPONDING}), None),
    ]


def test_running_and_pending_jobs() -> None:
    jobs = parse_squeue_json(recorded("squeue_running.json"))

    # Recorded: jobs 1 and 2 cancelled (left out), 3 and 5 running, 4 pending (3 of 2 nodes).
    assert [(j.id, j.state, j.nodes) for j in jobs] == [
        ("3", JobState.RUNNING, ("onprem1",)),
        ("4", JobState.PENDING, ()),
        ("5", JobState.RUNNING, ("onprem2",)),
    ]
    running, pending = jobs[0], jobs[1]
    assert (running.name, running.user, running.partition) == ("hold", "root", "gpu")
    assert (running.submitted_at, running.started_at, running.time_limit_s) == (
        1795923948.0,
        1795923951.0,
        None,
    )
    assert (pending.node_count, pending.started_at, pending.reason) == (
        3,
        None,
        "PartitionNodeLimit",
    )


def test_finished_jobs_are_left_out_and_a_time_limit_is_read_in_seconds() -> None:
    jobs = parse_squeue_json(recorded("squeue_done.json"))

    assert [(j.id, j.state, j.time_limit_s, j.reason) for j in jobs] == [
        ("4", JobState.PENDING, None, "PartitionNodeLimit"),
        ("6", JobState.PENDING, 600.0, "ReqNodeNotAvail"),
    ]


def test_with_jobs_fills_each_node_and_reads_a_drain_with_jobs_as_draining() -> None:
    nodes = parse_sinfo_json(recorded("sinfo_drained.json"))
    jobs = parse_squeue_json(recorded("squeue_running.json"))

    onprem1, onprem2 = with_jobs(nodes, jobs)

    # Slurm said drained, squeue says a job is on it: the safe reading waits.
    assert (onprem1.state, onprem1.jobs) == (S.DRAINING, ("3",))
    assert (onprem2.state, onprem2.jobs) == (S.DRAINING, ("5",))
    assert onprem1.reason == "tidectl: idle for 30 minutes"


# -- states, flags and the 23.02+ shapes ------------------------------------------------------


@pytest.mark.parametrize(
    ("state", "flags", "expected"),
    [
        ("idle", ["DRAIN"], S.DRAINED),
        ("idle", ["DRAIN", "COMPLETING"], S.DRAINING),
        ("allocated", [], S.ALLOCATED),
        ("down", ["DRAIN"], S.DOWN),  # DOWN wins over a drain
        ("future", [], S.DOWN),
        ("rebooting_into_space", [], S.UNKNOWN),  # a state nobody knew: unknown, not a crash
    ],
)
def test_base_state_and_flags(state: str, flags: list[str], expected: SchedState) -> None:
    (node, _) = parse_sinfo_json(sinfo_with(state=state, state_flags=flags))

    assert node.state is expected


def test_cloud_and_power_flags_are_kept_and_unknown_flags_ignored() -> None:
    text = sinfo_with(state="idle", state_flags=["CLOUD", "POWERED_DOWN", "NEW_IN_25_11"])

    (node, _) = parse_sinfo_json(text)

    assert (node.state, node.flags) == (S.IDLE, frozenset({NodeFlag.CLOUD, NodeFlag.POWERED_DOWN}))


def test_slurm_23_shapes_state_lists_and_number_objects() -> None:
    nodes_text = sinfo_with(state=["MIXED", "DRAIN", "POWERING_UP"], state_flags=None)
    jobs_text = squeue_with(
        job_state=["RUNNING"],
        start_time={"set": True, "infinite": False, "number": 1795923951},
        time_limit={"set": True, "infinite": False, "number": 30},
        node_count={"set": True, "infinite": False, "number": 1},
        tres_per_node="gres/gpu:4",
    )

    (node, _) = parse_sinfo_json(nodes_text)
    (job,) = parse_squeue_json(jobs_text)

    assert (node.state, node.flags) == (S.DRAINING, frozenset({NodeFlag.POWERING_UP}))
    assert (job.state, job.started_at, job.time_limit_s, job.gpus_per_node) == (
        JobState.RUNNING,
        1795923951.0,
        1800.0,
        4,
    )


def test_an_infinite_time_limit_is_no_limit() -> None:
    (job,) = parse_squeue_json(squeue_with(time_limit={"set": True, "infinite": True}))

    assert job.time_limit_s is None


def test_a_job_in_an_unknown_state_on_a_node_counts_as_running_there() -> None:
    (job,) = parse_squeue_json(squeue_with(job_state="WARPING"))

    assert (job.state, job.nodes) == (JobState.RUNNING, ("onprem1",))


def test_a_node_in_two_partitions_is_listed_once() -> None:
    document = json.loads(recorded("sinfo_idle.json"))
    twice = dict(document["nodes"][0], partitions=["debug"])
    document["nodes"].append(twice)

    nodes = parse_sinfo_json(json.dumps(document))

    assert [(n.name, n.partitions) for n in nodes] == [
        ("onprem1", ("gpu", "debug")),
        ("onprem2", ("gpu",)),
    ]


@pytest.mark.parametrize(
    ("gres", "gpus"),
    [("", 0), ("gpu:8", 8), ("gpu:a100:4(S:0-1),gpu:v100:2", 6), ("gres/gpu:2", 2), ("mps:100", 0)],
)
def test_gpus_of_gres(gres: str, gpus: int) -> None:
    assert gpus_of_gres(gres) == gpus


def test_hostlists_are_expanded() -> None:
    assert expand_hostlist("gpu[1-3],cpu1") == ("cpu1", "gpu1", "gpu2", "gpu3")
    assert expand_hostlist("") == ()
    with pytest.raises(SlurmOutputError, match=r"gpu\[1-"):
        expand_hostlist("gpu[1-")


# -- output that cannot be read: a clear error, never a crash ----------------------------------


@pytest.mark.parametrize(
    ("text", "says"),
    [
        (recorded("sinfo_idle.json")[:1500], "not JSON"),  # cut short
        ("", "not JSON"),
        ("[]", "not an object"),
        ('{"meta": {}}', "no 'nodes' field"),
        ('{"nodes": {"onprem1": {}}}', "'nodes' is dict"),
        ('{"nodes": [42]}', r"nodes\[0\] is not an object"),
        ('{"nodes": [{"state": "idle"}]}', "no 'name' field"),
        ('{"nodes": [{"name": "a", "state": 3}]}', "'state' is int"),
        ('{"errors": [{"error": "Unable to contact slurm controller"}], "nodes": []}', "contact"),
    ],
)
def test_unreadable_sinfo_output_raises_a_sentence(text: str, says: str) -> None:
    with pytest.raises(SlurmOutputError, match=says) as caught:
        parse_sinfo_json(text)

    assert str(caught.value).startswith("sinfo --json")


@pytest.mark.parametrize(
    ("text", "says"),
    [
        (recorded("squeue_running.json")[:4000], "not JSON"),
        ('{"jobs": [{"job_state": "RUNNING"}]}', "no 'job_id' field"),
        (squeue_with(start_time="yesterday"), "'start_time' is 'yesterday'"),
        (squeue_with(nodes="onprem[1-"), "cannot be read"),
    ],
)
def test_unreadable_squeue_output_raises_a_sentence(text: str, says: str) -> None:
    with pytest.raises(SlurmOutputError, match=says):
        parse_squeue_json(text)
