"""When a step fails: the run stops there, every ``on_failure`` step runs (each even when one
before it fails too), what the run launched is drained and terminated, and nothing is left
billing — in the store, and in the cloud itself."""

from __future__ import annotations

import json
from pathlib import Path

from tests.playbooks.conftest import opened, scheduler_of
from tidectl.console.audit import read
from tidectl.console.control.caller import Caller, Frontend
from tidectl.console.demo import DemoCluster
from tidectl.console.providers.base import CLUSTER_TAG, InstanceState
from tidectl.console.scheduler.workload import JobSpec
from tidectl.playbooks import StepFailed, parse
from tidectl.playbooks.backend import LocalBackend
from tidectl.playbooks.session import Session

FAILING = """\
name: smoke-then-fail
vars: {log: ""}
steps:
  - burst: {pool: burst, ensure: 2, wait: 30s}
  - name: a smoke check that finds a broken node
    run:
      nodes: {launched: true}
      command: nvidia-smi -L
      expect: {stdout: "GPU 8:"}
  - notify: {file: "{{ log }}", message: never said}
on_failure:
  - name: a check that fails in the cleanup too
    check: {nodes: {launched: true}, max_nodes: 0}
  - name: end what was launched
    terminate: {nodes: {launched: true}, reason: smoke check failed, wait: 30s}
  - notify: {file: "{{ log }}", message: "failed at {{ failed_step }}; launched {{ launched }}"}
"""


async def test_a_failed_step_runs_on_failure_and_nothing_is_left_billing(
    demo: DemoCluster, tmp_path: Path
) -> None:
    log = tmp_path / "said.jsonl"
    book = parse(FAILING, tmp_path / "book.yaml", {"log": str(log)})
    async with opened(demo, tmp_path / "store.sqlite3", book) as session:
        backend = session.backend
        assert isinstance(backend, LocalBackend)
        plane = backend.plane
        report = await session.play(book)

        assert not report.ok and report.failed is not None and report.failed.index == 2
        assert report.failed.sentence.startswith(
            "`nvidia-smi -L` was not as expected on 2 of 2 node(s): "
        )
        assert "does not contain 'GPU 8:'" in report.failed.sentence
        assert len(report.steps) == 2  # the notify after it never ran
        assert [s.status for s in report.on_failure] == ["failed", "done", "done"]
        launched = session.launched
        assert len(launched) == 2
        ended = report.on_failure[1].changes
        assert [(c.node, c.before, c.after) for c in ended] == [
            (name, "active", "terminated") for name in launched
        ]
        assert report.summary().startswith(
            "FAILED at step 2 (a smoke check that finds a broken node): "
        )

        # Nothing leaks: every instance confirmed gone, nothing billing, none running.
        assert plane.store.open_instance_ids() == set()
        assert plane.burn_rate() == 0.0
        provider = plane.engine._providers["burst"]
        found = await provider.describe({CLUSTER_TAG: plane.config.name})
        states = {i.state for i in found}
        assert len(found) == 2
        assert states <= {InstanceState.TERMINATED}, states
        (said,) = [json.loads(line) for line in log.read_text().splitlines()]
        assert said["message"].startswith("failed at 2 (a smoke check that finds a broken node)")
        assert said["failed_step"].startswith("2 (a smoke check")


async def test_a_refused_burst_fails_with_the_planes_sentence_and_cleans_up_nothing(
    demo: DemoCluster, tmp_path: Path
) -> None:
    book = parse(
        "name: too-big\nsteps:\n  - burst: {pool: burst, ensure: 40}\n"
        "on_failure:\n  - terminate: {nodes: {launched: true}, reason: cleanup}\n",
        tmp_path / "book.yaml",
    )
    async with opened(demo, tmp_path / "store.sqlite3", book) as session:
        report = await session.play(book)
    assert report.failed is not None
    assert "allows at most 32 nodes, not 40" in report.failed.sentence
    assert "(request " in report.failed.sentence  # the plane's request id, for the audit log
    assert [s.sentence for s in report.on_failure] == [
        "nothing to terminate (nodes this run launched: 0 node(s))"
    ]


async def test_a_wait_that_runs_out_of_time_fails_and_the_api_raises_with_its_report(
    demo: DemoCluster, tmp_path: Path
) -> None:
    async with opened(demo, tmp_path / "store.sqlite3") as session:
        job = scheduler_of(session).submit(JobSpec("long", "ana", 1, 8, duration_s=3600.0))
        try:
            await session.wait(job=job, timeout="1s")
        except StepFailed as failed:
            assert str(failed).startswith(f"job {job} still pending or running after 1 s: ")
            assert failed.report is not None and failed.report.status == "failed"
        else:
            raise AssertionError("the wait should have failed")
        again = Session(session.backend, session.caller)
        report = await again.check(job_active=job)
        assert report.sentence == "holds"


async def test_a_caller_without_a_role_is_refused_by_the_control_plane_and_it_is_audited(
    demo: DemoCluster, tmp_path: Path
) -> None:
    book = parse(
        "name: denied\nsteps:\n  - burst: {pool: burst, ensure: 1}\n", tmp_path / "book.yaml"
    )
    async with opened(demo, tmp_path / "store.sqlite3", book) as session:
        stranger = Caller("nobody", Frontend.PLAYBOOK, book.origin)
        report = await Session(session.backend, stranger, playbook=book.name).play(book)
        backend = session.backend
        assert isinstance(backend, LocalBackend) and backend.plane.audit is not None
        records = list(read(backend.plane.audit.path))
    assert report.failed is not None and "nobody" in report.failed.sentence
    ((record,),) = [[r for r in records if r.actor == "nobody"]]
    assert (record.action, record.decision, record.frontend) == ("burst", "denied", "playbook")
    assert record.params["origin"] == book.origin
