"""A screen that shows something read through the control plane, read again while it shows.

The audit view and the costs view read the same way: when the screen opens or comes back,
every ``REFRESH_S`` seconds while it is the current screen (the app ticks it once a second),
never while hidden; one read at a time (a newer read replaces one under way); a read that
fails says why in the screen's note and keeps what was shown. Subclasses say what to read
(``read``) and where the note goes (``NOTE_ID``).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, ClassVar

from rich.text import Text
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widgets import Static

from tidectl.console.control.errors import ControlError

if TYPE_CHECKING:
    from tidectl.console.view.plane import FrontEndPlane

__all__ = ["READ_ERRORS", "PlaneOf", "PlaneView"]

PlaneOf = Callable[[], "FrontEndPlane | None"]
#: What a read through the plane may raise besides a refusal: no login name, a service's
#: answer that does not fit (msgspec's ValidationError is a ValueError).
READ_ERRORS = (ControlError, OSError, KeyError, ValueError)


class PlaneView(Screen[None]):
    #: Seconds between reads while the view shows.
    REFRESH_S: ClassVar[float] = 5.0
    #: The id of the ``Static`` that says how the last read went.
    NOTE_ID: ClassVar[str]
    #: The start of the sentence when a read fails ("The costs cannot be read").
    CANNOT_READ: ClassVar[str]

    def __init__(self, plane: PlaneOf, why_none: Callable[[], str | None] = lambda: None) -> None:
        """``plane``: the app's control plane as it is now (None before it is up, or in a
        console without one); ``why_none``: the sentence for a console that has none."""
        super().__init__()
        self._plane = plane
        self._why_none = why_none
        #: Reads that succeeded.
        self.reads = 0
        self._asked_at = float("-inf")

    def on_mount(self) -> None:
        self.query_one(VerticalScroll).focus()
        self.read_again()

    def on_screen_resume(self) -> None:
        self.read_again()

    def tick(self) -> None:
        if self.is_current and time.monotonic() - self._asked_at >= self.REFRESH_S:
            self.read_again()

    def read_again(self) -> None:
        """Read now (a newer read replaces one still under way); what to read is fixed here,
        as the screen stands when asked (``reader``)."""
        self._asked_at = time.monotonic()
        work = self._read(self.reader())
        self.run_worker(work, group=self.NOTE_ID, exclusive=True, exit_on_error=False)

    async def _read(self, read: Callable[[FrontEndPlane], Awaitable[None]]) -> None:
        plane = self._plane()
        if plane is None:
            self._note(self.no_plane(self._why_none()), problem=True)
            return
        try:
            await read(plane)
        except READ_ERRORS as error:
            self._note(f"{self.CANNOT_READ}: {error}", problem=True)
            return
        self.reads += 1
        self.show()

    def no_plane(self, why: str | None) -> str:
        """The note for a console without a control plane."""
        raise NotImplementedError

    def reader(self) -> Callable[[FrontEndPlane], Awaitable[None]]:
        """What a read asked now does: read through the plane it is given, and keep what was
        read (``show`` shows it)."""
        raise NotImplementedError

    def show(self) -> None:
        raise NotImplementedError

    def _note(self, sentence: str, *, problem: bool = False) -> None:
        note = self.query_one(f"#{self.NOTE_ID}", Static)
        note.update(Text(sentence))  # not markup: a refusal may quote "[roles]"
        note.set_class(problem, "problem")
