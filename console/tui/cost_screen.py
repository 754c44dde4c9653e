"""The costs view (``$``): what the cluster burns and has spent, per pool and per burst, with
the burn over the UTC day as a sparkline, and the header's spend today.

Both read the cost report through the control plane (``FrontEndPlane.cost_report``: the
embedded plane's store, or the service's when attached): the view when it opens and every
``REFRESH_S`` seconds while it shows, the header every ``SpendReader.REFRESH_S``. What they
show is worded in ``view.costs``. A read that fails says why and keeps the last report.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, ClassVar

from rich.text import Text
from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.widgets import Footer, Sparkline, Static

from tidectl.console.control.caller import Caller, Frontend
from tidectl.console.tui.plane_view import READ_ERRORS, PlaneOf, PlaneView
from tidectl.console.view.costs import (
    burn_series,
    burst_rows,
    headline,
    no_plane_line,
    pool_rows,
    rich_table,
    summary_lines,
)

if TYPE_CHECKING:
    from tidectl.console.cost.report import CostReport
    from tidectl.console.view.life import LifeFeed
    from tidectl.console.view.plane import FrontEndPlane

__all__ = ["CostScreen", "SpendReader"]


class CostScreen(PlaneView):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "back", "Back", id="costs.back"),
    ]
    REFRESH_S: ClassVar[float] = 5.0
    NOTE_ID: ClassVar[str] = "cost-note"
    CANNOT_READ: ClassVar[str] = "The costs cannot be read"

    def __init__(self, plane: PlaneOf, why_none: Callable[[], str | None] = lambda: None) -> None:
        super().__init__(plane, why_none)
        #: The last report read (None before the first).
        self.report: CostReport | None = None

    def compose(self) -> ComposeResult:
        yield Static(id="cost-summary")
        yield Static(id="cost-note")
        yield Static("burn over the UTC day, $/h per 15 minutes:", id="burn-label")
        yield Sparkline([], summary_function=max, id="burn")
        with VerticalScroll():
            yield Static(id="pools")
            yield Static(id="bursts")
        yield Footer()

    def no_plane(self, why: str | None) -> str:
        return no_plane_line(why)

    def reader(self) -> Callable[[FrontEndPlane], Awaitable[None]]:
        async def read(plane: FrontEndPlane) -> None:
            self.report = await plane.cost_report(Caller.local(Frontend.CONSOLE))

        return read

    def show(self) -> None:
        report = self.report
        if report is None:
            return
        self.query_one("#cost-summary", Static).update(Text("\n".join(summary_lines(report))))
        self._note("")
        self.query_one("#burn", Sparkline).data = burn_series(report)
        pools = rich_table(pool_rows(report), "per pool")
        self.query_one("#pools", Static).update(pools)
        title = "per burst" if report.bursts else "per burst: none in the window"
        self.query_one("#bursts", Static).update(rich_table(burst_rows(report), title))

    def action_back(self) -> None:
        self.app.pop_screen()


class SpendReader:
    """The header's spend today and budget level: the cost report, read through the plane
    every ``REFRESH_S`` seconds into ``life.spend``; a read that fails leaves it unset."""

    REFRESH_S: ClassVar[float] = 15.0

    def __init__(self, app: App[Any], plane: PlaneOf, life: LifeFeed) -> None:
        self.app = app
        self._plane = plane
        self.life = life
        self._asked_at = float("-inf")

    def tick(self) -> None:
        if time.monotonic() - self._asked_at < self.REFRESH_S or self._plane() is None:
            return
        self._asked_at = time.monotonic()
        self.app.run_worker(self._read(), group="spend", exclusive=True, exit_on_error=False)

    async def _read(self) -> None:
        plane = self._plane()
        if plane is None:
            return
        try:
            report = await plane.cost_report(Caller.local(Frontend.CONSOLE))
        except READ_ERRORS:
            self.life.spend = None  # a viewer without the role sees no spend, not an error
            return
        if self.life.attached:
            self.life.spend = headline(report)
