"""The ControlPlane's typed errors: every refusal and failure a front end shows, as a sentence.

Front ends catch :class:`ControlError` and print ``str(error)``; the request id is there for
the log and the audit trail. Nothing else escapes a ControlPlane action.
"""

from __future__ import annotations

__all__ = ["ControlError", "Failed", "Refused"]


class ControlError(Exception):
    """A request that did not do what was asked. ``str()`` says why and what to do."""

    def __init__(self, message: str, *, request_id: str) -> None:
        super().__init__(message)
        self.message = message
        self.request_id = request_id


class Refused(ControlError):
    """Not carried out: the request cannot be done as asked (unknown pool or node, a state
    that does not allow it, a job on the node). Nothing was changed."""


class Failed(ControlError):
    """Tried, and the world failed it (a scheduler or cloud that refused or did not answer).
    What was recorded says so; nothing was left half done that the reconcile loop will not
    finish."""
