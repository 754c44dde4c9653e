"""The Python API: the same steps as plain functions and, for scripts and notebooks, a
synchronous session (``with tidectl.playbooks.connect(...) as cp: cp.burst(...)``) that runs
the control plane on a loop of its own."""

from __future__ import annotations

from pathlib import Path

import pytest

import tidectl.playbooks as pb
from tests.playbooks.conftest import demo_config
from tidectl.console.demo import DemoCluster
from tidectl.console.lifecycle.states import State


def test_a_script_bursts_runs_checks_and_terminates_without_an_event_loop(
    demo: DemoCluster, tmp_path: Path
) -> None:
    options = {"store": tmp_path / "store.sqlite3", "in_process_sim": True}
    with pb.connect(demo_config(demo), **options) as cp:
        burst = cp.burst("burst", ensure=1, wait="30s")
        ((name, before, after),) = [(c.node, c.before, c.after) for c in burst.changes]
        assert (before, after) == (None, "active")
        assert cp.burst("burst", ensure=1).changes == []  # ensure: asking again adds none

        ran = cp.run({"launched": True}, "nvidia-smi -L", expect={"stdout": "GPU 7: "})
        assert [(d["node"], d["exit_status"]) for d in ran.details] == [(name, 0)]
        with pytest.raises(pb.StepFailed, match=r"exit 1, not 0"):
            cp.run({"launched": True}, "false")
        assert [n.name for n in cp.nodes({"pool": "burst", "gpus": True})] == [name]

        with pytest.raises(pb.StepFailed, match=r"1 node\(s\) \(pool burst\), more than 0"):
            cp.check(nodes={"pool": "burst"}, max_nodes=0)

        ended = cp.terminate({"launched": True}, reason="script done", wait="30s")
        assert [(c.node, c.after, c.per_hour) for c in ended.changes] == [
            (name, "terminated", -24.0)
        ]
        gone = cp.nodes({"pool": "burst", "state": "terminated"})
        assert [(n.name, n.state) for n in gone] == [(name, State.TERMINATED)]


def test_a_loaded_playbook_plays_through_the_synchronous_session(
    demo: DemoCluster, tmp_path: Path
) -> None:
    book = pb.parse(
        "name: noop\nsteps:\n  - check: {nodes: {onprem: true}, min_nodes: 3}\n",
        tmp_path / "noop.yaml",
    )
    with pb.connect(demo_config(demo), store=tmp_path / "s.sqlite3", in_process_sim=True) as cp:
        assert cp.play(book, check=True).summary() == "would change nothing"
        report = cp.play(book)
    assert report.ok and report.summary() == "done: 1 step(s); changed nothing"
