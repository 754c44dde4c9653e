"""``--check``: the plan of each example on the demo cluster, node by node with what it costs,
compared with golden files — and nothing changed by making it (the store and the audit log's
records are as they were).

Set ``TIDECTL_UPDATE_GOLDEN=1`` to rewrite the golden files after a deliberate change, then
read the diff.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import time
from pathlib import Path
from typing import Any

from tests.playbooks.conftest import EXAMPLES, opened, scheduler_of
from tidectl.console.audit import read
from tidectl.console.demo import DemoCluster
from tidectl.console.model import Severity
from tidectl.console.scheduler.workload import JobSpec
from tidectl.playbooks import Playbook, RunReport, load
from tidectl.playbooks.backend import LocalBackend
from tidectl.playbooks.session import Session

GOLDEN = Path(__file__).parent / "golden"


def _normal(text: str, book: Playbook) -> str:
    """What changes from run to run, replaced: paths, the content hash, burst node names."""
    text = text.replace(str(book.path), "PLAYBOOK").replace(book.sha256, "SHA256")
    text = text.replace(book.sha256[:12], "SHA")
    return re.sub(r"burst-[0-9a-f]{8}-", "burst-XXXXXXXX-", text)


def _golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("TIDECTL_UPDATE_GOLDEN"):
        path.write_text(text)
    assert text == path.read_text(), f"{name} differs from the golden file"


def _golden_json(name: str, report: RunReport) -> None:
    value: dict[str, Any] = json.loads(_normal(json.dumps(report.as_json()), report.playbook))
    _golden(name, json.dumps(value, indent=2, sort_keys=True) + "\n")


def _unchanged(session: Session) -> tuple[object, ...]:
    """The store's nodes and moves, and the audit log's records: what a plan must not touch."""
    backend = session.backend
    assert isinstance(backend, LocalBackend)
    plane = backend.plane
    assert plane.audit is not None
    return (
        plane.nodes(),
        plane.last_transition_id(),
        [r.seq for r in read(plane.audit.path)],
    )


async def test_the_plan_of_burst_for_training_on_a_fresh_cluster(
    demo: DemoCluster, tmp_path: Path
) -> None:
    book = load(EXAMPLES / "burst-for-training.yaml")
    async with opened(demo, tmp_path / "store.sqlite3", book, check=True) as session:
        scheduler_of(session).submit(JobSpec("llm-pretrain", "ana", 1, 8, duration_s=60.0))
        before = _unchanged(session)
        plan = await session.play(book, check=True)
        assert _unchanged(session) == before
    assert plan.ok and plan.check
    _golden("burst-for-training.plan.txt", _normal(plan.text(), book))
    _golden_json("burst-for-training.plan.json", plan)


async def test_the_plan_of_a_rolling_health_check_names_the_sick_node(
    demo: DemoCluster, tmp_path: Path
) -> None:
    book = load(EXAMPLES / "rolling-health-check.yaml")
    demo.faults.inject("sim0002", "ib_down port=mlx5_0/1")
    try:
        async with opened(demo, tmp_path / "store.sqlite3", book, check=True) as session:
            deadline = time.monotonic() + 20
            while (await session.world()).nodes["sim0002"].health is not Severity.CRITICAL:
                assert time.monotonic() < deadline, "sim0002 never turned critical"
                await asyncio.sleep(0.2)
            before = _unchanged(session)
            plan = await session.play(book, check=True)
            assert _unchanged(session) == before
    finally:
        demo.faults.clear_all()
    _golden("rolling-health-check.plan.txt", _normal(plan.text(), book))


async def test_the_plan_of_nightly_cleanup_prices_what_it_ends_and_changes_nothing(
    demo: DemoCluster, tmp_path: Path
) -> None:
    book = load(EXAMPLES / "nightly-cleanup.yaml", {"report": "/var/log/nightly.jsonl"})
    async with opened(demo, tmp_path / "store.sqlite3", book) as session:
        scheduler = scheduler_of(session)
        for _ in range(3):  # the on-prem nodes busy, so the next job lands on a cloud node
            scheduler.submit(JobSpec("onprem", "ana", 1, 8, duration_s=3600.0))
        await session.burst("burst", ensure=2, wait="30s")
        scheduler.submit(JobSpec("eval", "bo", 1, 8, duration_s=3600.0))
        deadline = time.monotonic() + 20
        while not any(n.jobs for n in (await session.world()).nodes.values() if n.cloud):
            assert time.monotonic() < deadline, "the job never started on a cloud node"
            await asyncio.sleep(0.2)
        planner = Session(session.backend, session.caller, playbook=book.name)
        before = _unchanged(session)
        plan = await planner.play(book, check=True)
        assert _unchanged(session) == before
    # Which of the two nodes took the job is the scheduler's choice: name them by role.
    (busy,) = [n for n in session.launched if n not in plan.text()]
    text = _normal(plan.text(), book).replace(_normal(busy, book), "BUSY")
    (idle,) = [n for n in session.launched if n != busy]
    _golden("nightly-cleanup.plan.txt", text.replace(_normal(idle, book), "IDLE"))
    assert plan.as_json()["per_hour"] == -24.0
