"""``W`` in the console: the session's actions saved as a playbook, driven by Pilot on the demo
cluster — a burst through the dialog and an on-prem drain are written in order (the burst as
the pool size it reached), and ``tidectl play FILE --demo --check`` plans the same steps again
on a demo cluster of its own."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

from tests.console.tui.helpers import wait_for
from tests.console.tui.test_lifecycle_pilot import SIZE, Said, _select
from tidectl.console.demo import BURST_POOL, DEMO_WORKLOAD, DemoCluster
from tidectl.console.lifecycle.states import State
from tidectl.console.tui.action_dialogs import BurstDialog, DrainDialog
from tidectl.console.tui.app import console_app


async def test_w_saves_what_the_session_did_as_a_playbook_that_plans_again(
    tmp_path: Path,
) -> None:
    said = Said()
    with DemoCluster(2, seed=1, out=tmp_path / "demo") as cluster:
        app = console_app(cluster.config, workload=DEMO_WORKLOAD)
        app.save_folder = tmp_path
        async with app.run_test(size=SIZE, message_hook=said) as pilot:
            await wait_for(pilot, lambda: app.plane is not None, 10, "the control plane")
            plane = app.plane
            assert plane is not None
            await pilot.press("W")  # nothing done yet: nothing to save
            await wait_for(pilot, lambda: bool(said.all), 5, "the warning")
            assert "Nothing to save yet" in said.all[-1][2]

            await pilot.press("b")
            await wait_for(pilot, lambda: isinstance(app.screen, BurstDialog), 5, "the dialog")
            await pilot.press("enter")  # one node, the default
            await wait_for(pilot, lambda: len(plane.nodes(pool=BURST_POOL)) == 1, 10, "burst")

            onprem = cluster.config.nodes[0].name
            await wait_for(
                pilot, lambda: onprem in app.fleet_screen.model.rows, 10, "the on-prem node"
            )
            await _select(pilot, app, onprem)
            await pilot.press("d")
            await wait_for(pilot, lambda: isinstance(app.screen, DrainDialog), 5, "the drain")
            await pilot.press("enter")
            await wait_for(
                pilot,
                lambda: (
                    (r := app.life.record(onprem)) is not None
                    and r.state in (State.DRAINING, State.DRAINED)
                ),
                10,
                "the drain",
            )
            mark = len(said.all)
            await pilot.press("W")
            await wait_for(pilot, lambda: len(said.all) > mark, 5, "the save")
            saved = sorted(tmp_path.glob("tidectl-session-*.yaml"))
            assert len(saved) == 1
            assert f"Saved 2 step(s) as {saved[0]}" in said.all[-1][2]

    book = yaml.safe_load(saved[0].read_text())
    assert book["cluster"] == str(cluster.config.path.resolve())
    reason = book["steps"][1]["drain"]["reason"]
    assert book["steps"] == [
        {"name": f"ensure 1 node(s) in {BURST_POOL}", "burst": {"pool": BURST_POOL, "ensure": 1}},
        {"name": f"drain {onprem}", "drain": {"nodes": onprem, "reason": reason}},
    ]
    checked = subprocess.run(
        [sys.executable, "-m", "tidectl.console", "play", str(saved[0]), "--demo", "--check"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    plan = checked.stdout
    assert f"pool {BURST_POOL} has 0 live node(s) of 1: would add 1, +$24.00/h" in plan
    assert f"would drain 1 node(s), reason {reason!r}" in plan
