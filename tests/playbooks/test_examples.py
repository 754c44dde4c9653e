"""Every example playbook runs green on the demo cluster, through the control plane (the audit
log names the playbook's file and hash on every action), and a second run of each changes
nothing."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from pathlib import Path

from tests.playbooks.conftest import EXAMPLES, opened, scheduler_of
from tidectl.console.audit import read, verify
from tidectl.console.demo import DemoCluster
from tidectl.console.lifecycle.states import State
from tidectl.console.model import Severity
from tidectl.console.scheduler.workload import JobSpec
from tidectl.playbooks import load
from tidectl.playbooks.backend import LocalBackend
from tidectl.playbooks.session import Session
from tidectl.playbooks.world import World

FAULT = "ib_down port=mlx5_0/1"


def _plane(session: Session):  # type: ignore[no-untyped-def]
    backend = session.backend
    assert isinstance(backend, LocalBackend)
    return backend.plane


def _again(session: Session) -> Session:
    """A second run of the playbook on the same cluster: a new session, nothing remembered."""
    return Session(session.backend, session.caller, playbook=session.playbook)


async def _until(session: Session, ok: Callable[[World], bool], what: str) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if ok(await session.world()):
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"not {what} within 20 s")


async def test_burst_for_training_runs_green_and_again_changes_nothing(
    demo: DemoCluster, tmp_path: Path
) -> None:
    book = load(EXAMPLES / "burst-for-training.yaml")  # job: llm-pretrain, by its name
    async with opened(demo, tmp_path / "store.sqlite3", book) as session:
        plane = _plane(session)
        scheduler_of(session).submit(JobSpec("llm-pretrain", "ana", 1, 8, duration_s=3.0))
        first = await session.play(book)
        assert first.ok, first.text()
        launched = first.steps[0].changes
        assert [(c.before, c.after, c.per_hour) for c in launched] == [
            (None, "provisioning", 24.0)
        ] * 2
        names = [c.node for c in launched]
        smoke = first.steps[2].details
        assert [d["node"] for d in smoke] == names
        assert all(d["ok"] and d["stdout"].startswith("GPU 0: NVIDIA H100") for d in smoke)
        assert [c.after for c in first.steps[5].changes] == ["terminated"] * 2
        assert {r.name: r.state for r in plane.nodes(pool="burst")} == dict.fromkeys(
            names, State.TERMINATED
        )
        assert plane.burn_rate() == 0.0

        # Every action went through the control plane, recorded with the playbook's origin.
        assert plane.audit is not None
        records = [r for r in read(plane.audit.path) if r.frontend == "playbook"]
        assert {r.action for r in records} == {"burst", "run", "drain", "terminate"}
        assert all(r.params["origin"] == book.origin for r in records)
        assert book.origin == f"playbook:{book.path} sha256:{book.sha256}"
        assert verify(plane.audit.path).ok

        mark, audited = plane.last_transition_id(), len(list(read(plane.audit.path)))
        second = await _again(session).play(book)
        assert second.ok, second.text()
        assert second.changed == [] and second.summary() == "done: 6 step(s); changed nothing"
        assert second.steps[0].status == "skipped"
        assert plane.last_transition_id() == mark
        assert len(list(read(plane.audit.path))) == audited  # nothing was even asked


async def test_rolling_health_check_drains_one_at_a_time_and_resumes_its_own(
    demo: DemoCluster, tmp_path: Path
) -> None:
    book = load(EXAMPLES / "rolling-health-check.yaml")
    try:
        async with opened(demo, tmp_path / "store.sqlite3", book) as session:
            plane = _plane(session)
            for node in ("sim0001", "sim0002"):
                demo.faults.inject(node, FAULT)
            await _until(
                session,
                lambda w: (
                    {n.name for n in w.nodes.values() if n.health is Severity.CRITICAL}
                    == {"sim0001", "sim0002"}
                ),
                "sim0001 and sim0002 critical",
            )
            first = await session.play(book)
            assert first.ok, first.text()
            drained = first.steps[1].changes
            assert [(c.node, c.before, c.after) for c in drained] == [
                ("sim0001", "active", "drained"),
                ("sim0002", "active", "drained"),
            ]
            # One at a time: the second drain was asked only once the first was drained.
            moves = {
                (t.node, t.after): t.at
                for _, t in plane.transitions()
                if t.node in ("sim0001", "sim0002")
            }
            assert moves[("sim0001", State.DRAINED)] <= moves[("sim0002", State.DRAINING)]
            assert plane.store.node("sim0003") is None  # healthy: never touched
            seen = await plane.scheduler_now()
            assert seen is not None
            reason = seen.node("sim0001")
            assert reason is not None and reason.reason == (
                "tidectl: playbook rolling-health-check: unhealthy"
            )

            mark = plane.last_transition_id()
            second = await _again(session).play(book)
            assert second.ok and second.changed == [], second.text()
            assert plane.last_transition_id() == mark

            # sim0002 heals: the next run puts it back; sim0001, still sick, stays drained.
            demo.faults.clear("sim0002")
            await _until(session, lambda w: w.nodes["sim0002"].healthy, "sim0002 healthy")
            third = await _again(session).play(book)
            assert third.ok, third.text()
            assert [(c.node, c.before, c.after) for c in third.changed] == [
                ("sim0002", "drained", "active")
            ]
            assert plane.store.node("sim0001").state is State.DRAINED  # type: ignore[union-attr]
    finally:
        demo.faults.clear_all()


async def test_nightly_cleanup_ends_idle_cloud_nodes_and_reports_the_spend(
    demo: DemoCluster, tmp_path: Path
) -> None:
    report = tmp_path / "nightly.jsonl"
    book = load(EXAMPLES / "nightly-cleanup.yaml", {"report": str(report)})
    async with opened(demo, tmp_path / "store.sqlite3", book) as session:
        plane = _plane(session)
        scheduler = scheduler_of(session)
        # Busy on-prem nodes, so the job that follows lands on a cloud node.
        for _ in range(3):
            scheduler.submit(JobSpec("onprem", "ana", 1, 8, duration_s=3600.0))
        await session.burst("burst", ensure=2, wait="30s")
        job = scheduler.submit(JobSpec("eval", "bo", 1, 8, duration_s=3600.0))
        await _until(session, lambda w: bool(w.job(job)) and bool(w.job(job)[0].nodes), "placed")
        (busy,) = (await session.world()).job(job)[0].nodes
        (idle,) = [n for n in session.launched if n != busy]

        first = await _again(session).play(book)
        assert first.ok, first.text()
        assert [(c.node, c.before, c.after) for c in first.steps[0].changes] == [
            (idle, "active", "terminated")
        ]
        assert first.steps[0].changes[0].per_hour == -24.0
        assert plane.store.node(busy).state is State.ACTIVE  # type: ignore[union-attr]
        (line,) = report.read_text().splitlines()
        said = json.loads(line)
        assert said["message"].startswith("nightly cleanup: burning $24.00/h, spent $")
        assert f"{idle}: active -> terminated" in said["message"]
        assert said["burn_per_hour"] == 24.0 and said["origin"] == book.origin

        mark = plane.last_transition_id()
        second = await _again(session).play(book)
        assert second.ok and second.changed == [], second.text()
        assert plane.last_transition_id() == mark
        assert len(report.read_text().splitlines()) == 2  # the report is said each night
