"""What the console's Pilot tests share: a fleet of simulated nodes, and the screen as text."""

from __future__ import annotations

import asyncio
import io
import time
from collections.abc import Callable

from rich.console import Console
from textual.app import App
from textual.pilot import Pilot

from tests.console.test_fleet import make_fleet
from tests.console.test_health import FakeClock, SimFeed
from tidectl.console.fleet import Fleet


def fed_fleet(count: int, ticks: int = 3) -> tuple[Fleet, list[SimFeed], FakeClock]:
    """``count`` simulated nodes (gpu001…) that have each sent a hello and ``ticks`` samples."""
    fleet, feeds, clock = make_fleet(count)
    for feed in feeds:
        feed.start()
    for _ in range(ticks):
        clock.advance(1.0)
        for feed in feeds:
            feed.send()
    fleet.flush()
    return fleet, feeds, clock


def screen_text(app: App[object]) -> str:
    """The screen as plain text, as ``App.export_screenshot`` renders it (without the SVG)."""
    width, height = app.size
    console = Console(width=width, height=height, file=io.StringIO(), record=True)
    # The compositor is private API, but it is what export_screenshot itself prints.
    update = app.screen._compositor.render_update(full=True, screen_stack=app._background_screens)
    console.print(update)
    return console.export_text()


async def wait_for(
    pilot: Pilot[object], check: Callable[[], bool], timeout: float, what: str
) -> float:
    """Pump the app until ``check()`` holds; returns the seconds it took."""
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"{what} did not happen within {timeout:.0f} s")
        await pilot.pause(0.05)
        await asyncio.sleep(0)
    return time.monotonic() - started
