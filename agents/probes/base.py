"""What every probe is: a named source of one section of the hello and sample records."""

from __future__ import annotations

from typing import Any, Dict

#: One section of a record: plain JSON values only (dict, list, str, int, float, bool, None).
Section = Dict[str, Any]


class Probe:
    """One source of node health.

    A probe reads from a root path or a handle given to its constructor, so a test can point
    it at a fake tree or module. ``sample`` may raise: the runner turns any exception into an
    ``error`` in the probe's section, and the next tick still comes. ``sample`` runs on a
    worker thread and must not share mutable state with other probes.
    """

    #: The section name in records, and the name used by ``--probes``.
    name: str = ""

    def facts(self) -> Section:
        """Slow-changing inventory for the hello record (models, GUIDs, mounts...)."""
        return {}

    def sample(self) -> Section:
        """One reading. Counters are reported raw; the console turns them into rates."""
        raise NotImplementedError

    def close(self) -> None:
        """Release handles (NVML, thread pools). Called once, when the agent stops."""


def describe_error(exc: BaseException) -> str:
    """A one-line sentence for an exception, for the ``error`` field of a section."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    kind = type(exc).__name__
    return "%s: %s" % (kind, text) if text else kind


def error_section(message: str, **extra: Any) -> Section:
    """The section a probe yields when it could not read anything."""
    section: Section = {"error": message}
    section.update(extra)
    return section
