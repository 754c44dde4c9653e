"""The playbooks' typed errors: each ``str()`` is a sentence a person can act on.

A :class:`SchemaError` is found before anything runs and names the file and line; a
:class:`StepFailed` is a step that ran and did not get where it was asked to go.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tidectl.playbooks.report import StepReport

__all__ = ["PlaybookError", "SchemaError", "StepFailed"]


class PlaybookError(Exception):
    """Something about a playbook or its run; ``str()`` says what and what to do."""


class SchemaError(PlaybookError):
    """A playbook that is not valid: ``path:line: sentence``. Nothing was run."""

    def __init__(self, path: Path | str, line: int, sentence: str) -> None:
        self.path = Path(path)
        self.line = line
        self.sentence = sentence
        super().__init__(f"{self.path}:{line}: {sentence}")


class StepFailed(PlaybookError):
    """A step that ran and failed: a wait that ran out of time, a command whose output was
    not what ``expect`` said, a check that did not hold, an action refused or failed.
    ``report`` (from the Python API) is the step's account: what it changed before failing."""

    def __init__(self, sentence: str, report: StepReport | None = None) -> None:
        super().__init__(sentence)
        self.report = report
