"""Where a run's progress goes while it happens.

On a terminal, a step's waiting shows as one status line rewritten in place (elapsed time and
where the nodes stand); without one (a log, a pipe, CI), the same news comes as plain lines,
one per change, never control characters. ``--json`` runs say nothing until the end.
"""

from __future__ import annotations

import sys
from typing import Protocol, TextIO

from tidectl.playbooks.report import StepReport

__all__ = ["LineReporter", "QuietReporter", "Reporter", "TerminalReporter", "reporter_for"]


class Reporter(Protocol):
    def starting(self, index: int, total: int, title: str, kind: str) -> None:
        """A step begins (``index`` of ``total``)."""

    def update(self, text: str, elapsed_s: float) -> None:
        """Where a step stands while it waits; ``text`` changes when something moved."""

    def finished(self, report: StepReport) -> None:
        """A step ended: its account."""

    def note(self, text: str) -> None:
        """A line about the run itself (a failure, the cleanup starting)."""


class QuietReporter:
    """Says nothing (``--json``, the Python API unless asked)."""

    def starting(self, index: int, total: int, title: str, kind: str) -> None:
        pass

    def update(self, text: str, elapsed_s: float) -> None:
        pass

    def finished(self, report: StepReport) -> None:
        pass

    def note(self, text: str) -> None:
        pass


class LineReporter:
    """Plain lines: a line when a step starts, one per change while it waits, its outcome."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self._last = ""

    def _say(self, line: str) -> None:
        self.out.write(line + "\n")
        self.out.flush()

    def starting(self, index: int, total: int, title: str, kind: str) -> None:
        self._last = ""
        self._say(f"[{index}/{total}] {title} ({kind})")

    def update(self, text: str, elapsed_s: float) -> None:
        if text != self._last:
            self._last = text
            self._say(f"      {elapsed_s:6.1f} s  {text}")

    def finished(self, report: StepReport) -> None:
        for line in report.text()[1:]:
            self._say(f"  {line}")

    def note(self, text: str) -> None:
        self._say(text)


class TerminalReporter(LineReporter):
    """A terminal: the waiting line is rewritten in place, and cleared when the step ends."""

    _CLEAR = "\r\x1b[K"

    def __init__(self, out: TextIO) -> None:
        super().__init__(out)
        self._status = False

    def _clear(self) -> None:
        if self._status:
            self.out.write(self._CLEAR)
            self._status = False

    def starting(self, index: int, total: int, title: str, kind: str) -> None:
        self._clear()
        super().starting(index, total, title, kind)

    def update(self, text: str, elapsed_s: float) -> None:
        self.out.write(f"{self._CLEAR}      {elapsed_s:6.1f} s  {text}")
        self.out.flush()
        self._status = True

    def finished(self, report: StepReport) -> None:
        self._clear()
        super().finished(report)

    def note(self, text: str) -> None:
        self._clear()
        super().note(text)


def reporter_for(out: TextIO | None = None, *, quiet: bool = False) -> Reporter:
    """Quiet, a terminal's, or plain lines, for ``out`` (default stdout)."""
    if quiet:
        return QuietReporter()
    out = out or sys.stdout
    return TerminalReporter(out) if out.isatty() else LineReporter(out)
