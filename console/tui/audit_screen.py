"""The audit log (``a``): who asked the control plane for what, what it decided and how it
ended, newest first, with how far the hash chain verifies and a filter.

Read through the control plane (``FrontEndPlane.audit_records``: the embedded plane's log, or
the service's when attached) when the view opens, when the filter changes, and every
``REFRESH_S`` seconds while it shows; never while hidden. A read that fails says why and
keeps the last table.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, ClassVar

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widgets import Footer, Input, Static

from tidectl.console.control.caller import Caller, Frontend
from tidectl.console.control.errors import ControlError
from tidectl.console.view.audit import audit_table, chain_line, no_plane_line, page_line
from tidectl.console.view.audit_filter import AuditFilter, parse_audit_filter
from tidectl.console.view.filter import FilterError

if TYPE_CHECKING:
    from tidectl.console.audit import AuditPage
    from tidectl.console.view.plane import FrontEndPlane

__all__ = ["AuditScreen"]


class AuditScreen(Screen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "back", "Back", id="audit.back"),
        Binding("slash", "filter", "Filter", id="audit.filter", priority=True),
    ]
    #: Seconds between reads while the view shows (the app ticks it once a second).
    REFRESH_S: ClassVar[float] = 3.0

    def __init__(
        self,
        plane: Callable[[], FrontEndPlane | None],
        why_none: Callable[[], str | None] = lambda: None,
    ) -> None:
        """``plane``: the app's control plane as it is now (None before it is up, or in a
        console without one); ``why_none``: the sentence for a console that has none."""
        super().__init__()
        self._plane = plane
        self._why_none = why_none
        self.filter = AuditFilter()
        #: The last page read (None before the first); ``reads`` counts them.
        self.page: AuditPage | None = None
        self.reads = 0
        self._asked_at = float("-inf")

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

    def on_mount(self) -> None:
        self.query_one(VerticalScroll).focus()
        self.read_again()

    def on_screen_resume(self) -> None:
        self.read_again()

    def tick(self) -> None:
        if self.is_current and time.monotonic() - self._asked_at >= self.REFRESH_S:
            self.read_again()

    # -- reading -----------------------------------------------------------------------------

    def read_again(self) -> None:
        """Ask the control plane for the records the filter wants (a newer read replaces one
        still under way)."""
        self._asked_at = time.monotonic()
        self.run_worker(self._read(self.filter), group="audit", exclusive=True, exit_on_error=False)

    async def _read(self, wanted: AuditFilter) -> None:
        plane = self._plane()
        if plane is None:
            self._note(no_plane_line(self._why_none()), problem=True)
            return
        try:
            caller = Caller.local(Frontend.CONSOLE)
            query = wanted.query(datetime.now(UTC))
            page = await plane.audit_records(
                caller, since=query.since, actor=query.actor, action=query.action
            )
        except (ControlError, OSError, KeyError, ValueError) as error:
            self._note(f"The audit log cannot be read: {error}", problem=True)
            return
        self.page = page
        self.reads += 1
        self.show()

    # -- showing -----------------------------------------------------------------------------

    def show(self) -> None:
        page = self.page
        if page is None:
            return
        shown = [record for record in page.records if self.filter.keeps(record)]
        self.query_one("#chain", Static).update(chain_line(page))
        self._note(page_line(page, len(shown), worded=self.filter.worded))
        self.query_one("#audit", Static).update(audit_table(shown))

    def _note(self, sentence: str, *, problem: bool = False) -> None:
        note = self.query_one("#audit-note", Static)
        note.update(Text(sentence))  # not markup: a refusal may quote "[roles]"
        note.set_class(problem, "problem")

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
