"""What a step did or would do, and what a whole run (or plan) came to: as values, as text and
as JSON.

A :class:`StepReport` lists its changes node by node (:class:`NodeChange`: the state before
and after, and what it adds to the hourly bill), so the plan of ``--check`` and the account of
a run read the same way; a step that changed nothing says so, and a run whose steps changed
nothing — the second run of the same playbook — says that too.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from tidectl.playbooks.model import Playbook

__all__ = ["NodeChange", "RunReport", "Status", "StepReport", "money"]

Status = Literal["planned", "would-fail", "done", "skipped", "failed"]


def money(dollars: float) -> str:
    """``+$48.00/h``, ``-$24.00/h``: what a change does to the hourly bill."""
    sign = "-" if dollars < 0 else "+"
    return f"{sign}${abs(dollars):,.2f}/h"


@dataclass(frozen=True, slots=True)
class NodeChange:
    """One node's change: ``before`` (None: a node that does not exist yet) and ``after``
    states, a note, and the dollars an hour it adds (negative: saves)."""

    node: str
    before: str | None
    after: str
    note: str = ""
    per_hour: float = 0.0

    def line(self) -> str:
        before = self.before or "(new)"
        cost = f"  {money(self.per_hour)}" if self.per_hour else ""
        note = f"  ({self.note})" if self.note else ""
        return f"{self.node}: {before} -> {self.after}{cost}{note}"

    def as_json(self) -> dict[str, Any]:
        return {
            "node": self.node,
            "before": self.before,
            "after": self.after,
            "note": self.note,
            "per_hour": round(float(self.per_hour), 4),
        }


@dataclass(slots=True)
class StepReport:
    """One step's account: its place, what it is, how it ended, and what it changed."""

    index: int
    title: str
    kind: str
    line: int
    status: Status
    sentence: str
    changes: list[NodeChange] = field(default_factory=list)
    #: Nodes looked at and left as they were, each with why (already drained, …).
    unchanged: list[str] = field(default_factory=list)
    #: ``run``: each node's exit status and output; ``notify``: where it was said.
    details: list[dict[str, Any]] = field(default_factory=list)
    elapsed_s: float = 0.0
    request_ids: list[str] = field(default_factory=list)

    @property
    def per_hour(self) -> float:
        return sum(change.per_hour for change in self.changes)

    def text(self) -> list[str]:
        """The step as lines: a heading, then a line per node."""
        head = f"{self.index}. {self.title} [{self.kind}]"
        if self.status not in ("planned", "done"):
            head += f" {self.status.upper()}"
        lines = [head, f"   {self.sentence}"]
        lines += [f"     {change.line()}" for change in self.changes]
        lines += [f"     {why}" for why in self.unchanged]
        if self.per_hour:
            lines.append(f"   cost: {money(self.per_hour)}")
        return lines

    def as_json(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "title": self.title,
            "kind": self.kind,
            "line": self.line,
            "status": self.status,
            "sentence": self.sentence,
            "changes": [change.as_json() for change in self.changes],
            "unchanged": list(self.unchanged),
            "details": self.details,
            "per_hour": round(float(self.per_hour), 4),
            "elapsed_s": round(self.elapsed_s, 2),
            "request_ids": list(self.request_ids),
        }


@dataclass(slots=True)
class RunReport:
    """A run (or, with ``check``, a plan) of one playbook."""

    playbook: Playbook
    check: bool
    steps: list[StepReport] = field(default_factory=list)
    #: The ``on_failure`` steps: run after a failure, or planned (``--check``).
    on_failure: list[StepReport] = field(default_factory=list)

    @property
    def failed(self) -> StepReport | None:
        """The step that failed (or, in a plan, the first that would)."""
        bad = ("failed", "would-fail")
        return next((s for s in self.steps if s.status in bad), None)

    @property
    def ok(self) -> bool:
        return self.failed is None

    @property
    def peak_per_hour(self) -> float:
        """The most the steps add to the hourly bill at any point (a burst before the
        terminate that ends it), cleanup left out."""
        peak = running = 0.0
        for step in self.steps:
            running += step.per_hour
            peak = max(peak, running)
        return peak

    @property
    def changed(self) -> list[NodeChange]:
        """Every change the run made (or the plan would make), cleanup included."""
        return [c for s in (*self.steps, *self.on_failure) for c in s.changes]

    def text(self) -> str:
        book = self.playbook
        lines = [f"playbook {book.name} ({book.path}, sha256 {book.sha256[:12]})"]
        if self.check:
            lines.append("plan (--check): nothing is changed")
        lines.append("")
        for step in self.steps:
            lines += step.text()
        if self.on_failure:
            lines.append("")
            lines.append("on failure:" if not self.check else "on failure (if a step fails):")
            for step in self.on_failure:
                lines += step.text()
        lines.append("")
        lines.append(self.summary())
        return "\n".join(lines) + "\n"

    def summary(self) -> str:
        """One line: how it ended (or would), and what it changed (a plan: its steps only,
        not the cleanup it would run after a failure)."""
        main = [c for s in self.steps for c in s.changes]
        changes = main if self.check else self.changed
        verb = "would change" if self.check else "changed"
        nodes = len({c.node for c in changes})
        said = f"{verb} nothing"
        if changes:
            said = f"{verb} {nodes} node(s) ({len(changes)} change(s))"
            if self.peak_per_hour > 0:
                said += f", adding up to {money(self.peak_per_hour)} while it runs"
            said += f", net {money(sum(c.per_hour for c in main))}"
        failed = self.failed
        if self.check:
            if failed is not None:
                return f"{said}; step {failed.index} ({failed.title}) would fail: {failed.sentence}"
            return said
        if failed is not None:
            cleanup = f"; on_failure ran {len(self.on_failure)} step(s)" if self.on_failure else ""
            where = f"step {failed.index} ({failed.title})"
            return f"FAILED at {where}: {failed.sentence}{cleanup}; {said}"
        return f"done: {len(self.steps)} step(s); {said}"

    def as_json(self) -> dict[str, Any]:
        book = self.playbook
        failed = self.failed
        main = [c for s in self.steps for c in s.changes]
        changes = main if self.check else self.changed
        return {
            "ok": self.ok,
            "check": self.check,
            "playbook": {"name": book.name, "path": str(book.path), "sha256": book.sha256},
            "variables": dict(book.variables),
            "steps": [step.as_json() for step in self.steps],
            "on_failure": [step.as_json() for step in self.on_failure],
            "failed_step": None if failed is None else failed.index,
            "changed": [change.as_json() for change in changes],
            "per_hour": round(float(sum(c.per_hour for c in main)), 4),
            "peak_per_hour": round(self.peak_per_hour, 4),
            "summary": self.summary(),
        }
