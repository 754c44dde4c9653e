"""The console's garbage-collection policy: tuned when it streams, frozen once connected."""

from __future__ import annotations

import contextlib
import gc
from collections.abc import AsyncIterator, Iterator

import pytest

from tests.console.tui.helpers import fed_fleet, wait_for
from tidectl.console import gc_tuning
from tidectl.console.model import LinkState
from tidectl.console.tui.app import ConsoleApp


@pytest.fixture
def restored_gc() -> Iterator[None]:
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


@contextlib.asynccontextmanager
async def quiet_source() -> AsyncIterator[object]:
    yield None  # a collector that has nothing to do: the fleet is fed by the test


async def test_a_streaming_console_freezes_once_every_node_has_connected(
    restored_gc: None,
) -> None:
    fleet, _, _ = fed_fleet(3)
    fleet.on_link("gpu003", LinkState.CONNECTING)
    app = ConsoleApp(fleet, "c", source=quiet_source)
    async with app.run_test() as pilot:
        assert gc.get_threshold()[0] == gc_tuning.YOUNG_THRESHOLD
        await pilot.pause(1.5)
        assert gc.get_freeze_count() == 0, "froze while a node was still connecting"
        fleet.on_link("gpu003", LinkState.STREAMING)
        await wait_for(pilot, lambda: gc.get_freeze_count() > 0, 5, "the freeze")


async def test_a_console_without_a_collector_leaves_gc_alone(restored_gc: None) -> None:
    before = gc.get_threshold()
    fleet, _, _ = fed_fleet(2)
    async with ConsoleApp(fleet, "c").run_test() as pilot:
        await pilot.pause(1.2)
        assert gc.get_threshold() == before
        assert gc.get_freeze_count() == 0


async def test_a_closed_console_leaves_the_collector_as_it_found_it(restored_gc: None) -> None:
    """A console inside a longer-lived process (a notebook, a test run) must not leave the
    process frozen and tuned after it quits (a frozen test run failed the next test's check)."""
    before = gc.get_threshold()
    fleet, _, _ = fed_fleet(2)
    app = ConsoleApp(fleet, "c", source=quiet_source)
    async with app.run_test() as pilot:
        await wait_for(pilot, lambda: gc.get_freeze_count() > 0, 5, "the freeze")
        assert gc.get_threshold()[0] == gc_tuning.YOUNG_THRESHOLD
    assert gc.get_freeze_count() == 0
    assert gc.get_threshold() == before
