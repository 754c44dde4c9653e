"""The console attached to a running ``tidectl serve`` (a real process): it shows the service's
fleet — cloud nodes its bursts add, streaming over real SSH to the service, appear here — acts
through it as the user running the console, and says so when the service goes away.
Without a service on the configured socket it runs the control plane itself."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.console.server.test_serve import CONFIG, start, stop
from tests.console.tui.helpers import screen_text, wait_for
from tests.console.tui.test_lifecycle_pilot import SIZE, Said, _life
from tidectl.console.config.loader import load_config
from tidectl.console.lifecycle.states import State
from tidectl.console.lifecycle.store import Store
from tidectl.console.model import LinkState
from tidectl.console.server.attach import AttachedPlane
from tidectl.console.tui.action_dialogs import BurstDialog
from tidectl.console.tui.app import console_app


@pytest.fixture
def folder() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="tac-", dir="/tmp"))
    (path / "known_hosts").write_text("")
    (path / "cluster.toml").write_text(CONFIG)
    yield path
    shutil.rmtree(path, ignore_errors=True)


async def test_the_console_shows_and_acts_through_a_running_service(folder: Path) -> None:
    server, ready = start(folder)
    assert ready.startswith("tidectl serve: listening on"), ready
    try:
        said = Said()
        app = console_app(load_config(folder / "cluster.toml"))
        async with app.run_test(size=SIZE, message_hook=said) as pilot:
            await wait_for(pilot, lambda: app.plane is not None, 15, "attached")
            assert isinstance(app.plane, AttachedPlane)
            assert said.all[0][2].startswith(f"Attached to the tidectl service on {folder}")
            # b: the same dialog, priced by the service; the burst runs there.
            await pilot.press("b")
            await wait_for(pilot, lambda: isinstance(app.screen, BurstDialog), 5, "the dialog")
            await wait_for(pilot, lambda: "adds $24.00/h" in screen_text(app), 10, "the price")
            await pilot.press("backspace", "2", "enter")
            await wait_for(pilot, lambda: len(said.all) > 1, 20, "the burst's sentence")
            launched = ("information", "", "Launched 2 of 2 node(s) in pool burst")
            assert said.all[1] == launched, said.all
            with Store.open(folder / "lab.sqlite3") as store:
                names = [n.name for n in store.nodes(pool="burst")]
                (intent,) = [i for i in store.intents() if i.action == "burst"]
            assert len(names) == 2 and intent.frontend == "console"
            # The service's fleet, mirrored: its cloud nodes stream (over SSH, to the service)
            # and reach active, here.
            await wait_for(
                pilot,
                lambda: all(
                    n in app.fleet.nodes and app.fleet.nodes[n].link is LinkState.STREAMING
                    for n in names
                ),
                60,
                "the burst nodes streaming in the console's fleet",
            )
            await wait_for(
                pilot,
                lambda: all(_life(app, n) is State.ACTIVE for n in names),
                60,
                "both active in the LIFE column",
            )
            assert app.fleet.nodes[names[0]].sample is not None
            text = screen_text(app)
            assert "cloud 2 (2 active)" in text and "burn $48.00/h" in text
            # The service stops: the console says so and keeps its last view.
            mark = len(said.all)
            assert stop(server) == 0
            await wait_for(pilot, lambda: len(said.all) > mark, 15, "the loss said")
            assert said.after(mark)[0][2].startswith("Lost the tidectl service")
            assert set(names) <= set(app.fleet.nodes)
    finally:
        stop(server)


async def test_without_a_service_on_the_socket_the_console_runs_the_plane_itself(
    folder: Path,
) -> None:
    said = Said()
    app = console_app(load_config(folder / "cluster.toml"))
    async with app.run_test(size=SIZE, message_hook=said) as pilot:
        await wait_for(pilot, lambda: app.plane is not None, 15, "a control plane")
        assert not isinstance(app.plane, AttachedPlane)
        severity, _, sentence = said.all[0]
        assert severity == "warning" and sentence.startswith("no tidectl service answers on")
        assert sentence.endswith("This console runs the control plane itself.")
