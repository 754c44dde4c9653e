"""The console's lifecycle keys, driven by Pilot against a real control plane: a real store, the
sim cloud's instances over real SSH, the real collector and agent, the sim scheduler.

``b`` bursts two nodes (the dialog prices them as the count is typed) and they reach active in
the LIFE column; ``t`` on an active node is refused on the spot; ``d`` on the node that holds a
job lists it and drains; ``r`` resumes; ``t`` on the other, drained, shows what it ends and
terminates only with a typed reason. A config the plane refuses still opens the console;
the demo's opens with its pool, scheduler and store.
"""

from __future__ import annotations

from pathlib import Path

from textual.message import Message
from textual.notifications import Notify
from textual.pilot import Pilot

from tests.console.tui.helpers import screen_text, wait_for
from tidectl.console.config.loader import parse_config
from tidectl.console.config.model import ClusterConfig
from tidectl.console.control.assemble import store_path
from tidectl.console.demo import (
    BURST_POOL,
    BURST_POOL_MAX_NODES,
    DEMO_WORKLOAD,
    STORE_FILE,
    DemoCluster,
)
from tidectl.console.lifecycle.lock import StoreLock
from tidectl.console.lifecycle.states import State
from tidectl.console.scheduler.sim import SimScheduler
from tidectl.console.scheduler.workload import JobSpec
from tidectl.console.tui.action_dialogs import (
    BurstDialog,
    ConfirmDialog,
    DrainDialog,
    TerminateDialog,
)
from tidectl.console.tui.app import ConsoleApp, console_app
from tidectl.console.tui.events_screen import EventsScreen
from tidectl.console.tui.node_screen import NodeScreen

SIZE = (190, 50)
HEAD = '[cluster]\nname = "lab"\n[ssh]\nuser = "t"\nknown_hosts = "known_hosts"\n'
NODES = '[[nodes]]\nnames = "gpu1"\n'
LIFECYCLE = (
    '[scheduler]\nkind = "sim"\n[store]\npath = "store.sqlite3"\n'
    '[[pools]]\nname = "burst"\nprovider = "sim"\nmax_nodes = 4\nboot_delay_s = 0\n'
)


def _config(folder: Path, text: str) -> ClusterConfig:
    (folder / "known_hosts").write_text("")
    return parse_config(HEAD + NODES + text, folder / "cluster.toml")


class Said:
    """The app's notifications, as (severity, title, message)."""

    def __init__(self) -> None:
        self.all: list[tuple[str, str, str]] = []

    def __call__(self, message: Message) -> None:
        if isinstance(message, Notify):
            n = message.notification
            self.all.append((n.severity, n.title, n.message))

    def after(self, mark: int) -> list[tuple[str, str, str]]:
        return self.all[mark:]


def _life(app: ConsoleApp, name: str) -> State | None:
    rows = app.fleet_screen.model.rows
    return rows[name].life if name in rows else None


async def _select(pilot: Pilot[object], app: ConsoleApp, name: str) -> None:
    """Filter the table to ``name`` alone, so the cursor is on it (typing the filter is
    tested elsewhere; a key at a time it costs a second here)."""
    app.set_filter(name)
    app.fleet_screen.table.focus()
    table = app.fleet_screen.table
    await wait_for(pilot, lambda: [line.key for line in table.lines] == [name], 5, f"{name} alone")
    assert table.current is not None and table.current.key == name


async def test_burst_drain_resume_and_a_refused_terminate_through_the_console(
    tmp_path: Path,
) -> None:
    said = Said()
    app = console_app(_config(tmp_path, LIFECYCLE), interval_s=0.2)
    async with app.run_test(size=SIZE, message_hook=said) as pilot:
        await wait_for(pilot, lambda: app.plane is not None, 10, "the control plane")
        plane = app.plane
        assert plane is not None

        # b: the dialog prices what the count adds, as it is typed.
        await pilot.press("b")
        await wait_for(pilot, lambda: isinstance(app.screen, BurstDialog), 5, "the burst dialog")
        await wait_for(pilot, lambda: "adds $24.00/h" in screen_text(app), 5, "one node's cost")
        await pilot.press("backspace", "x")
        await wait_for(pilot, lambda: "is not a whole number" in screen_text(app), 5, "refusal")
        await pilot.press("enter")  # refused by the form: the dialog stays
        assert isinstance(app.screen, BurstDialog)
        await pilot.press("backspace", "2")
        await wait_for(
            pilot,
            lambda: "adds $48.00/h (2 nodes at $24.00/h)" in screen_text(app),
            5,
            "two nodes' cost",
        )
        mark = len(said.all)
        await pilot.press("enter")
        await wait_for(pilot, lambda: bool(said.after(mark)), 10, "the burst's sentence")
        assert said.after(mark)[0] == ("information", "", "Launched 2 of 2 node(s) in pool burst")
        names = [r.name for r in plane.nodes(pool="burst")]
        assert len(names) == 2
        await wait_for(
            pilot,
            lambda: all(_life(app, n) is State.ACTIVE for n in names),
            30,
            f"both burst nodes active in the table ({plane.reports})",
        )
        assert [s for s in said.after(mark) if s[0] == "error"] == []
        text = screen_text(app)
        assert "cloud 2 (2 active)" in text and "burn $48.00/h" in text
        assert sum(line.count(" active ") for line in text.splitlines()) >= 2

        # t on an active node: refused with the sentence, nothing called, nothing moves.
        first = names[0]
        await _select(pilot, app, first)
        mark = len(said.all)
        await pilot.press("t")
        await wait_for(pilot, lambda: bool(said.after(mark)), 5, "the refusal")
        severity, title, sentence = said.after(mark)[0]
        assert (severity, title) == ("error", "Refused")
        assert sentence.startswith(f"Cannot terminate {first}: it is active; drain it first")
        assert not isinstance(app.screen, ConfirmDialog)
        await plane.reconcile_now()
        assert {r.name: r.state for r in plane.nodes()}[first] is State.ACTIVE

        # d on the node a job runs on: the dialog lists the job; the drain lets it finish.
        scheduler = plane._scheduler
        assert isinstance(scheduler, SimScheduler)
        spec = JobSpec("llm-pretrain", "ana", 1, 8, duration_s=3600.0, time_limit_s=7200.0)
        job_id = scheduler.submit(spec)
        (job,) = [j for j in await scheduler.jobs() if j.id == job_id]
        (node,) = job.nodes
        await _select(pilot, app, node)
        await pilot.press("d")
        await wait_for(pilot, lambda: isinstance(app.screen, DrainDialog), 5, "the drain dialog")
        text = screen_text(app)
        assert f"{job_id}  llm-pretrain  (ana, 8 GPUs, 1 h 59 min left)" in text
        assert "1 job(s) on it run to" in text and "via tidectl console" in text
        mark = len(said.all)
        await pilot.press("enter")
        await wait_for(pilot, lambda: _life(app, node) is State.DRAINING, 10, f"{node} draining")
        assert said.after(mark)[-1][0] == "information"
        assert "drain set on 1 node(s)" in said.after(mark)[-1][2].lower()
        await pilot.pause(0.5)  # a reconcile pass or two: the job still runs, so it stays
        assert _life(app, node) is State.DRAINING

        # r resumes it.
        await pilot.press("r")
        await wait_for(pilot, lambda: _life(app, node) is State.ACTIVE, 10, f"{node} resumed")

        # Enter: the node in full, with its scheduler state and the job there.
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, NodeScreen), 5, "the node screen")
        await wait_for(pilot, lambda: "Scheduler alloc" in screen_text(app), 5, "its state")
        row = [line for line in screen_text(app).splitlines() if line.lstrip().startswith(job_id)]
        assert row and row[0].split() == f"{job_id} ana llm-pretrain 8 1 h 59 min left".split()
        await pilot.press("escape")

        # The other node: drained (no job), then t shows what it ends and needs a reason.
        (other,) = [n for n in names if n != node]
        await _select(pilot, app, other)
        await pilot.press("d")
        await wait_for(pilot, lambda: isinstance(app.screen, DrainDialog), 5, "the drain dialog")
        await pilot.press("enter")
        await wait_for(pilot, lambda: _life(app, other) is State.DRAINED, 15, f"{other} drained")
        await pilot.press("t")
        await wait_for(pilot, lambda: isinstance(app.screen, TerminateDialog), 5, "the dialog")
        assert f"Terminate {other} (instance " in screen_text(app)
        await pilot.press("enter")  # no reason: refused by the dialog, which stays
        await wait_for(pilot, lambda: "Give a reason" in screen_text(app), 5, "the refusal")
        assert isinstance(app.screen, TerminateDialog)
        for key in "no longer needed":
            await pilot.press("space" if key == " " else key)
        await pilot.press("enter")
        await wait_for(
            pilot,
            lambda: _life(app, other) in (State.TERMINATING, State.TERMINATED, None),
            15,
            f"{other} terminating",
        )
        ended = [t for t in plane.store.history(other) if t.after is State.TERMINATING]
        assert len(ended) == 1 and ended[0].reason.endswith(": no longer needed")

        # The events view has the moves, with why and who.
        await pilot.press("e")
        await wait_for(pilot, lambda: isinstance(app.screen, EventsScreen), 5, "the events")
        await pilot.pause()
        moves = [line for line in screen_text(app).splitlines() if f"{node}" in line]
        assert any("active → draining" in line and "drain asked by" in line for line in moves)
        assert any("draining → active" in line for line in moves)
        assert any("joining → active" in line for line in moves)


async def test_a_config_the_plane_refuses_still_shows_the_fleet_and_says_why(
    tmp_path: Path,
) -> None:
    said = Said()
    config = _config(tmp_path, "")
    # Another control plane (a running tidectl serve) holds the cluster's store.
    store_path(config).parent.mkdir(parents=True)
    held = StoreLock(store_path(config), "tidectl serve").acquire()
    app = console_app(config)
    async with app.run_test(size=SIZE, message_hook=said) as pilot:
        await wait_for(pilot, lambda: app.plane_problem is not None, 10, "the refusal")
        assert "in use by tidectl serve" in said.all[0][2] and said.all[0][0] == "warning"
        assert [line.key for line in app.fleet_screen.table.lines] == ["gpu1"]
        await pilot.press("b")
        await wait_for(pilot, lambda: len(said.all) > 1, 5, "the key's answer")
        assert said.all[1][2].startswith("Lifecycle actions are off in this console: the store")
        assert not isinstance(app.screen, BurstDialog)
        assert app.plane is None and "cloud" not in screen_text(app)
    held.release()


async def test_the_demos_console_opens_with_its_pool_scheduler_and_store() -> None:
    with DemoCluster(2, seed=1) as cluster:
        app = console_app(cluster.config, workload=DEMO_WORKLOAD)
        async with app.run_test(size=SIZE) as pilot:
            await wait_for(pilot, lambda: app.plane is not None, 10, "the control plane")
            plane = app.plane
            assert plane is not None
            assert [pool.name for pool in plane.pools()] == [BURST_POOL]
            assert isinstance(plane._scheduler, SimScheduler)
            assert plane.store.path == cluster.out / STORE_FILE
            await pilot.press("b")
            await wait_for(pilot, lambda: isinstance(app.screen, BurstDialog), 5, "the dialog")
            await wait_for(pilot, lambda: "adds $24.00/h" in screen_text(app), 5, "the price")
            assert f"burst  (sim, 0 of {BURST_POOL_MAX_NODES} nodes)" in screen_text(app)
            await pilot.press("escape")
            await wait_for(pilot, lambda: app.screen is app.fleet_screen, 5, "the dialog closed")
            assert "cloud 0 · burn $0.00/h" in screen_text(app)
