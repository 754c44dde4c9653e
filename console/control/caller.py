"""Who is asking, from where, under which request id: what every ControlPlane call carries.

The [security] work checks roles and writes the audit log from these, at the one place every
action passes (:class:`~tidectl.console.control.plane.ControlPlane`); front ends never check.
"""

from __future__ import annotations

import enum
import getpass
import uuid
from dataclasses import dataclass

__all__ = ["Caller", "Frontend", "new_request_id"]


class Frontend(enum.StrEnum):
    CLI = "cli"
    CONSOLE = "console"
    NOTEBOOK = "notebook"
    PLAYBOOK = "playbook"
    SERVICE = "service"  # the control plane's own automation (reconcile, policies)
    SLURM = "slurm"  # Slurm's power-saving programs (tidectl slurm resume|suspend|resume-fail)


@dataclass(frozen=True, slots=True)
class Caller:
    """A person (their login name) or automation, and the front end they came through.

    ``origin`` says what the request came from within that front end, for the audit log: a
    playbook's path and the SHA-256 of its content (``playbook:/abs/x.yaml sha256:…``). It is
    the front end's own word, kept beside the identity, never instead of it."""

    user: str
    frontend: Frontend
    origin: str | None = None

    def __post_init__(self) -> None:
        if not self.user or any(c.isspace() for c in self.user):
            raise ValueError(f"a caller needs a user name without spaces, not {self.user!r}")
        object.__setattr__(self, "frontend", Frontend(self.frontend))

    @classmethod
    def local(cls, frontend: Frontend, origin: str | None = None) -> Caller:
        """The person running this process (their login name), through ``frontend``."""
        return cls(getpass.getuser(), frontend, origin)

    def __str__(self) -> str:
        return f"{self.user} ({self.frontend})"


def new_request_id() -> str:
    """A fresh request id: unique, short enough to read in a log line."""
    return uuid.uuid4().hex[:16]
