"""The audit log (``a``): who asked the control plane for what, what it decided and how it
ended, newest first, with how far the hash chain verifies and a filter.

Read through the control plane (``FrontEndPlane.audit_records``: the embedded plane's log, or
the service's when attached) when the view opens, when the filter changes, and every
``REFRESH_S`` seconds while it shows; never while hidden. A read that fails says why and
keeps the last table.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.widgets import Footer, Input, Static

from tidectl.console.control.caller import Caller, Frontend
from tidectl.console.tui.plane_view import PlaneOf, PlaneView
from tidectl.console.view.audit import audit_table, chain_line, no_plane_line, page_line
from tidectl.console.view.audit_filter import AuditFilter, parse_audit_filter
from tidectl.console.view.filter import FilterError

if TYPE_CHECKING:
    from tidectl.console.audit import AuditPage
    from tidectl.console.view.plane import FrontEndPlane

__all__ = ["AuditScreen"]


class AuditScreen(PlaneView):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "back", "Back", id="audit.back"),
        Binding("slash", "filter", "Filter", id="audit.filter", priority=True),
    ]
    REFRESH_S: ClassVar[float] = 3.0
    NOTE_ID: ClassVar[str] = "audit-note"
    CANNOT_READ: ClassVar[str] = "The audit log cannot be read"

    def __init__(self, plane: PlaneOf, why_none: Callable[[], str | None] = lambda: None) -> None:
        super().__init__(plane, why_none)
        self.filter = AuditFilter()
        #: The last page read (None before the first).
        self.page: AuditPage | None = None

    def compose(self) -> ComposeResult:
        yield Static(id="chain")
        yield Static(id="audit-note")
        yield Input(
            placeholder="filter the audit log: actor:NAME action:NAME since:2h, or words "
            "(denied, a node, an outcome)",
            id="filter",
        )
        with VerticalScroll():
            yield Static(id="audit")
        yield Footer()

    # -- reading -----------------------------------------------------------------------------

    def no_plane(self, why: str | None) -> str:
        return no_plane_line(why)

    def reader(self) -> Callable[[FrontEndPlane], Awaitable[None]]:
        """The records the filter wants, as it is when the read is asked."""
        wanted = self.filter

        async def read(plane: FrontEndPlane) -> None:
            query = wanted.query(datetime.now(UTC))
            self.page = await plane.audit_records(
                Caller.local(Frontend.CONSOLE),
                since=query.since,
                actor=query.actor,
                action=query.action,
            )

        return read

    # -- showing -----------------------------------------------------------------------------

    def show(self) -> None:
        page = self.page
        if page is None:
            return
        shown = [record for record in page.records if self.filter.keeps(record)]
        self.query_one("#chain", Static).update(chain_line(page))
        self._note(page_line(page, len(shown), worded=self.filter.worded))
        self.query_one("#audit", Static).update(audit_table(shown))

    # -- the filter --------------------------------------------------------------------------

    @on(Input.Changed, "#filter")
    def _filter(self, event: Input.Changed) -> None:
        try:
            wanted = parse_audit_filter(event.value, datetime.now(UTC))
        except FilterError as error:
            self._note(f"{error} (the filter is unchanged)", problem=True)
            return
        self.filter = wanted
        self.show()  # the words narrow what was read at once; the plane is asked again
        self.read_again()

    def action_filter(self) -> None:
        box = self.query_one("#filter", Input)
        if self.focused is box:
            box.insert_text_at_cursor("/")
        else:
            self.set_focus(box)  # at once: see FleetScreen.action_filter

    def action_back(self) -> None:
        box = self.query_one("#filter", Input)
        if self.focused is box and box.value:
            box.value = ""
            return
        self.app.pop_screen()
