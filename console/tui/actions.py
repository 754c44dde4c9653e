"""The console's lifecycle actions, carried out through the control plane.

Burst, drain, resume and terminate each check what the console last read of the node first
(``view.actions``: a terminate of an active node is refused on the spot, nothing called),
open their dialog, then call the control plane (``view.plane.FrontEndPlane``: the embedded
one or the service's) in a worker — never a provider, scheduler
or store — and say the outcome: the plane's own sentence, or its refusal as an error.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tidectl.console.control.caller import Caller, Frontend
from tidectl.console.control.errors import ControlError, Refused
from tidectl.console.tui.action_dialogs import (
    BurstDialog,
    BurstRequest,
    DrainDialog,
    HostKeyDialog,
    TerminateDialog,
)
from tidectl.console.view.actions import (
    default_drain_reason,
    drain_refusal,
    live_in,
    no_plane,
    resume_refusal,
    terminate_question,
    terminate_refusal,
)
from tidectl.console.view.host_key import CONFIRM_WORD, host_key_listed, host_key_question

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from tidectl.console.cost.budgets import BudgetStatus
    from tidectl.console.scheduler.base import Job
    from tidectl.console.tui.app import ConsoleApp
    from tidectl.console.view.plane import FrontEndPlane

__all__ = ["LifecycleActions"]


class LifecycleActions:
    """What ``b``, ``d``, ``r``, ``t`` and ``K`` do in ``app``."""

    def __init__(self, app: ConsoleApp) -> None:
        self.app = app

    def ask(self, action: str, node: str | None) -> None:
        """Start ``action`` (burst, drain, resume, terminate, trust_key) on ``node``."""
        plane = self._plane()
        if plane is None:
            return
        if action == "burst":
            self._burst(plane)
        elif node is None:
            self.app.notify("Put the cursor on one node first (unfold the set with f).")
        elif action == "drain":
            self._drain(plane, node)
        elif action == "resume":
            self._resume(plane, node)
        elif action == "terminate":
            self._terminate(plane, node)
        elif action == "trust_key":
            trusting = self._trust_key(plane, node)
            self.app.run_worker(trusting, group="lifecycle", exit_on_error=False)

    def _plane(self) -> FrontEndPlane | None:
        plane = self.app.plane
        if plane is None:
            self.app.notify(no_plane(self.app.plane_problem), severity="warning")
        return plane

    def _caller(self) -> Caller | None:
        try:
            return Caller.local(Frontend.CONSOLE)
        except (OSError, KeyError, ValueError) as error:
            self._refused(f"Who is asking cannot be told (the login name): {error}.")
            return None

    def _refused(self, sentence: str, title: str = "Refused") -> None:
        self.app.notify(sentence, title=title, severity="error", timeout=15)

    # -- the actions -------------------------------------------------------------------------

    def _burst(self, plane: FrontEndPlane) -> None:
        pools = plane.pools()
        if not pools:
            self.app.notify(
                "This cluster has no pools to burst into: add a [[pools]] table to "
                "cluster.toml (docs/config.md).",
                severity="warning",
                timeout=10,
            )
            return
        records = list(self.app.life.records.values())

        def chosen(request: BurstRequest | None) -> None:
            caller = self._caller()
            if request is not None and caller is not None:
                asked = plane.burst(caller, request.pool, count=request.count)
                before = live_in(request.pool, records)

                def record(result: object) -> None:
                    launched = getattr(result, "launched", 0)
                    self.app.recording.burst(request.pool, before + launched)

                self._run(asked, f"burst of {request.count} into {request.pool}", record=record)

        async def budgets() -> tuple[BudgetStatus, ...]:
            report = await plane.cost_report(Caller.local(Frontend.CONSOLE))
            return report.budgets

        dialog = BurstDialog(pools, records, plane.price_per_hour, budgets)
        self.app.push_screen(dialog, chosen)

    def _drain(self, plane: FrontEndPlane, node: str) -> None:
        refusal = drain_refusal(node, self.app.life.record(node))
        if refusal is not None:
            self._refused(refusal)
            return
        self.app.run_worker(self._open_drain(plane, node), group="lifecycle", exit_on_error=False)

    async def _open_drain(self, plane: FrontEndPlane, node: str) -> None:
        caller = self._caller()
        if caller is None:
            return
        jobs: list[Job] = []
        problem: str | None = None
        try:
            jobs = await plane.jobs_on([node])
        except ControlError as error:
            problem = str(error)

        def chosen(reason: str | None) -> None:
            if reason is not None:
                self._run(
                    plane.drain(caller, [node], reason=reason),
                    f"drain of {node}",
                    record=lambda _result: self.app.recording.drain([node], reason),
                )

        dialog = DrainDialog(node, jobs, default_drain_reason(caller.user), problem)
        self.app.push_screen(dialog, chosen)

    def _resume(self, plane: FrontEndPlane, node: str) -> None:
        refusal = resume_refusal(node, self.app.life.record(node))
        caller = self._caller() if refusal is None else None
        if refusal is not None:
            self._refused(refusal)
        elif caller is not None:
            self._run(
                plane.resume(caller, [node]),
                f"resume of {node}",
                record=lambda _result: self.app.recording.resume([node]),
            )

    def _terminate(self, plane: FrontEndPlane, node: str) -> None:
        record = self.app.life.record(node)
        refusal = terminate_refusal(node, record)
        if refusal is not None or record is None:
            self._refused(refusal or "")
            return

        def chosen(reason: str | None) -> None:
            caller = self._caller()
            if reason is not None and caller is not None:
                self._run(
                    plane.terminate(caller, [node], reason=reason),
                    f"terminate of {node}",
                    record=lambda _result: self.app.recording.terminate([node], reason),
                )

        self.app.push_screen(TerminateDialog(terminate_question(record)), chosen)

    async def _trust_key(self, plane: FrontEndPlane, node: str) -> None:
        """Show the key ``node`` presents; trust it once the person typed the word."""
        caller = self._caller()
        if caller is None:
            return
        try:
            shown = await plane.presented_host_key(caller, node)
        except ControlError as error:
            self._refused(str(error))
            return
        if shown.listed:
            self._refused(host_key_listed(shown))
            return

        def chosen(accepted: bool | None) -> None:
            if accepted:
                asked = plane.accept_host_key(caller, node, fingerprint=shown.fingerprint)
                self._run(asked, f"trust of {node}'s host key", done=trusted)

        trusted = (
            f"{node}'s host key {shown.fingerprint} is now in known_hosts; its link retries "
            "on its own."
        )
        self.app.push_screen(HostKeyDialog(host_key_question(shown), CONFIRM_WORD), chosen)

    # -- carrying out ------------------------------------------------------------------------

    def _run(
        self,
        asked: Awaitable[object],
        what: str,
        *,
        done: str | None = None,
        record: Callable[[object], None] | None = None,
    ) -> None:
        """Carry ``asked`` out in a worker; ``done``: what to say when it succeeds (else the
        result's own sentence); ``record``: how the session's recording keeps it, once it
        succeeded (``view.recording``)."""
        carried = self._carry(asked, what, done, record)
        self.app.run_worker(carried, group="lifecycle", exit_on_error=False)

    async def _carry(
        self,
        asked: Awaitable[object],
        what: str,
        done: str | None,
        record: Callable[[object], None] | None,
    ) -> None:
        try:
            result = await asked
        except ControlError as error:
            verb = "Refused" if isinstance(error, Refused) else "Failed"
            title = f"{verb} (request {error.request_id})" if error.request_id else verb
            self._refused(str(error), title)
            return
        finally:
            self.app.life_changed(force=True)
        if record is not None:
            record(result)
        sentence = done or getattr(result, "sentence", "") or f"The {what} is under way."
        self.app.notify(sentence[:1].upper() + sentence[1:], timeout=8)
