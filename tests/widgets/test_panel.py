"""The panel driven in Python against a real control plane: a real store and audit log, the
sim cloud's instances over real SSH, the sim scheduler. Buttons are clicked with ``click()``;
what the browser would be sent is read with ``get_state()``.

Burst adds nodes that appear in the table; Drain selected lists the jobs first and drains;
Adaptive changes the pool's policy in the plane; denials (role, budget) show as a line in the
panel, never a traceback; closing stops every task.
"""

from __future__ import annotations

import asyncio
import html
import re
import shutil
import tempfile
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from tidectl.console.config.loader import parse_config
from tidectl.console.config.model import ClusterConfig
from tidectl.console.control.assemble import assemble
from tidectl.console.control.caller import Caller, Frontend
from tidectl.console.control.plane import ControlPlane
from tidectl.console.fleet import Fleet
from tidectl.console.lifecycle.states import State
from tidectl.console.server.service import Service
from tidectl.widgets import ClusterPanel
from tidectl.widgets.model import plain_label

HEAD = '[cluster]\nname = "lab"\n[ssh]\nuser = "t"\nknown_hosts = "known_hosts"\n'
NODES = '[[nodes]]\nnames = "gpu1"\n'
LIFECYCLE = (
    '[scheduler]\nkind = "sim"\n[store]\npath = "store.sqlite3"\n'
    '[[pools]]\nname = "burst"\nprovider = "sim"\nmax_nodes = 4\nboot_delay_s = 0\n'
)
ROLES = '[roles]\nadmin = ["ada"]\noperator = ["opal"]\nviewer = ["vic"]\n'


def _config(folder: Path, text: str) -> ClusterConfig:
    (folder / "known_hosts").write_text("")
    return parse_config(HEAD + NODES + text, folder / "cluster.toml")


async def until(what: Callable[[], bool], timeout_s: float, said: str) -> None:
    """Wait (checking every 50 ms) until ``what`` holds; fail with ``said`` if it never does."""
    async with asyncio.timeout(timeout_s):
        while not what():
            await asyncio.sleep(0.05)
    assert what(), said


def text_of(markup: str) -> str:
    """What an HTML widget's value reads as: its text, without tags."""
    return html.unescape(re.sub(r"<[^>]+>", "", markup))


def labels(panel: ClusterPanel) -> list[str]:
    """The table's lines as the browser gets them (``_options_labels``), spaces restored."""
    assert panel.controls is not None
    state = panel.controls.table.get_state()
    return [plain_label(label) for label in state["_options_labels"]]


@pytest.fixture
async def running(tmp_path: Path) -> AsyncIterator[tuple[ControlPlane, Fleet]]:
    config = _config(tmp_path, LIFECYCLE + ROLES)
    fleet = Fleet(config.nodes, config.health)
    plane = await assemble(config, fleet=fleet, in_process_sim=True, interval_s=0.2, policies=True)
    async with plane:
        yield plane, fleet


async def _panel(running: tuple[ControlPlane, Fleet], who: str, **options: float) -> ClusterPanel:
    plane, fleet = running
    panel = ClusterPanel.for_plane(
        plane, fleet, "lab", caller=Caller(who, Frontend.NOTEBOOK), refresh_s=0.1, **options
    )
    await panel.ready(10)
    assert panel.widget is panel.widget  # built once, cached
    await until(
        lambda: panel.controls is not None and not panel.controls.burst.disabled,
        5,
        "the burst button priced",
    )
    return panel


async def test_burst_shows_its_cost_and_its_nodes_appear_in_the_table(
    running: tuple[ControlPlane, Fleet],
) -> None:
    plane, _ = running
    panel = await _panel(running, "opal")
    ws = panel.controls
    assert ws is not None
    assert ws.pool.get_state()["_options_labels"] == ("burst",)
    assert ws.pool.get_state()["index"] == 0  # shown as chosen, not blank
    ws.count.value = 2
    assert ws.burst.get_state()["description"] == "Burst 2 (+$48.00/h)"
    assert "adds $48.00/h (2 nodes at $24.00/h)" in ws.burst_words.value
    assert not any("burst-" in label for label in labels(panel))

    ws.burst.click()
    await panel.settle()
    assert panel.messages[0] == ("info", "Launched 2 of 2 node(s) in pool burst")
    names = [r.name for r in plane.nodes(pool="burst")]
    assert len(names) == 2
    # At once (the store knows them), then as nodes of the fleet once their agents stream.
    await until(lambda: any(names[0][:-2] in label for label in labels(panel)), 5, "new nodes")
    await until(
        lambda: {r.state for r in plane.nodes(pool="burst")} == {State.ACTIVE}, 30, "active"
    )
    await until(lambda: "2 active" in text_of(ws.summary.value), 5, "the summary counts them")
    assert "burn $48.00/h" in text_of(ws.summary.value)
    await panel.aclose()


async def test_drain_selected_lists_the_jobs_then_drains(
    running: tuple[ControlPlane, Fleet],
) -> None:
    plane, _ = running
    panel = await _panel(running, "opal")
    ws = panel.controls
    assert ws is not None
    ws.count.value = 1
    ws.burst.click()
    await panel.settle()
    name = plane.nodes(pool="burst")[0].name
    await until(lambda: plane.nodes(pool="burst")[0].state is State.ACTIVE, 30, "active")
    ws.fold.value = False
    await until(lambda: name in [o[1] for o in ws.table.options], 5, "the node's line")
    assert "Drain" in ws.drain.description and ws.drain.disabled  # nothing selected yet

    ws.table.value = name  # what a click on its line in the browser sets
    await until(
        lambda: (
            "run to completion" in ws.drain_words.value
            or "No job runs on it now" in ws.drain_words.value
        ),
        5,
        "the jobs read",
    )
    assert "GPUs" in ws.detail.value and name in ws.detail.value
    ws.drain.click()
    await panel.settle()
    assert panel.messages[0][0] == "info", panel.messages
    record = plane.nodes(pool="burst")[0]
    assert record.state in (State.DRAINING, State.DRAINED)
    await panel.aclose()


async def test_adaptive_sets_the_pools_policy_in_the_control_plane(
    running: tuple[ControlPlane, Fleet],
) -> None:
    plane, _ = running
    panel = await _panel(running, "ada")
    ws = panel.controls
    assert ws is not None
    assert not ws.adaptive.value and "Adaptive off" in ws.adaptive_words.value
    ws.min_nodes.value = 1
    ws.max_nodes.value = 3
    assert plane.pool("burst").policy.burst_on_pressure is False  # off: nothing sent yet
    ws.adaptive.value = True
    await panel.settle()
    pool = plane.pool("burst")
    assert pool is not None
    assert (pool.policy.min_nodes, pool.max_nodes, pool.policy.burst_on_pressure) == (1, 3, True)
    assert "keeps pool burst between 1 and 3 node(s)" in panel.messages[0][1]
    assert ws.adaptive.get_state()["value"] is True

    ws.max_nodes.value = 9  # above cluster.toml's max_nodes (4): the plane refuses
    await panel.settle()
    level, said = panel.messages[0]
    assert level == "error" and "may have at most 4 nodes" in said and "Traceback" not in said
    assert ws.max_nodes.value == 3  # the panel shows the policy as it still is
    ws.adaptive.value = False
    await panel.settle()
    pool = plane.pool("burst")
    assert pool is not None and pool.policy.burst_on_pressure is False
    assert pool.policy.min_nodes == 0  # the floor it had before Adaptive, given back
    await panel.aclose()


async def test_a_denied_action_is_a_readable_line_in_the_panel(
    running: tuple[ControlPlane, Fleet],
) -> None:
    plane, _ = running
    panel = await _panel(running, "vic")
    ws = panel.controls
    assert ws is not None
    ws.burst.click()
    await panel.settle()
    level, said = panel.messages[0]
    assert level == "error"
    assert said.startswith("Refused (request ")
    assert "vic may not burst: that needs the operator role" in said
    assert "vic may not burst" in ws.message.get_state()["value"]
    assert plane.nodes(pool="burst") == []
    ws.adaptive.value = True  # an operator's or viewer's Adaptive is refused too
    await panel.settle()
    assert "may not set-pool-policy" in panel.messages[0][1]
    assert ws.adaptive.value is False
    await panel.aclose()


async def test_a_burst_past_the_budget_is_refused_with_the_budgets_words(tmp_path: Path) -> None:
    budget = '[[budgets]]\npool = "burst"\nperiod = "day"\nlimit = 10.0\n'
    config = _config(tmp_path, LIFECYCLE + budget)
    fleet = Fleet(config.nodes, config.health)
    plane = await assemble(config, fleet=fleet, in_process_sim=True, interval_s=0.2)
    async with plane:
        panel = await _panel((plane, fleet), "root")
        assert panel.controls is not None
        panel.controls.burst.click()
        await panel.settle()
        level, said = panel.messages[0]
        assert level == "error" and said.startswith("Refused") and "budget" in said
        assert plane.nodes(pool="burst") == []
        await panel.aclose()


async def test_closing_the_panel_stops_its_tasks_and_its_updates(
    running: tuple[ControlPlane, Fleet],
) -> None:
    panel = await _panel(running, "opal")
    runner = panel._runner
    assert runner is not None and not runner.done()
    ws = panel.controls
    assert ws is not None
    ws.close.click()  # the panel's own Close button
    await until(lambda: panel.closed and runner.done(), 5, "the panel's task stopped")
    assert not panel._tasks
    assert ws.root.comm is None  # the widgets are closed: their views leave the notebook
    assert "This panel is closed" in panel._repr_mimebundle_()["text/html"]


async def test_open_runs_the_clusters_control_plane_in_this_kernel(tmp_path: Path) -> None:
    (tmp_path / "known_hosts").write_text("")
    (tmp_path / "cluster.toml").write_text(HEAD + NODES + LIFECYCLE)
    panel = ClusterPanel.open(tmp_path / "cluster.toml", refresh_s=0.1)
    await panel.ready(10)
    assert isinstance(panel.plane, ControlPlane) and panel.status == "live"
    assert [pool.name for pool in panel.plane.pools()] == ["burst"]
    await panel.aclose()
    assert panel.plane is None


async def test_open_without_the_service_it_names_runs_its_own_and_says_so(
    tmp_path: Path,
) -> None:
    (tmp_path / "known_hosts").write_text("")
    (tmp_path / "cluster.toml").write_text(HEAD + NODES + LIFECYCLE)
    socket = tmp_path / "nobody.sock"
    panel = ClusterPanel.open(tmp_path / "cluster.toml", server=socket, refresh_s=0.1)
    await panel.ready(10)
    level, said = panel.messages[-1]
    assert level == "warning"
    assert f"no tidectl service answers on {socket}" in said
    assert said.endswith("This panel runs the control plane itself.")
    assert isinstance(panel.plane, ControlPlane)
    await panel.aclose()


async def test_open_attaches_to_the_service_and_acts_through_it() -> None:
    folder = Path(tempfile.mkdtemp(prefix="tnb-", dir="/tmp"))  # a socket path fits 108 bytes
    try:
        config = _config(folder, LIFECYCLE)
        (folder / "cluster.toml").write_text(HEAD + NODES + LIFECYCLE)
        fleet = Fleet(config.nodes, config.health)
        plane = await assemble(config, fleet=fleet, in_process_sim=True, interval_s=0.2)
        async with plane:
            service = Service(plane, folder / "s.sock")
            await service.start()
            try:
                panel = ClusterPanel.open(folder / "cluster.toml", server=service.path)
                await panel.ready(10)
                assert panel.status == f"live, attached to the tidectl service on {service.path}"
                _ = panel.widget
                ws = panel.controls
                assert ws is not None
                await until(lambda: not ws.burst.disabled, 5, "the burst button priced")
                ws.burst.click()
                await panel.settle()
                assert panel.messages[0] == ("info", "Launched 1 of 1 node(s) in pool burst")
                assert len(plane.nodes(pool="burst")) == 1  # the service's plane did it
                await panel.aclose()
            finally:
                await service.aclose()
    finally:
        shutil.rmtree(folder, ignore_errors=True)
