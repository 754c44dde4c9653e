"""``tidectl run``'s audit trail: commands on nodes are actions too.

``run`` needs no store and no reconcile loop, so it does not assemble a ControlPlane; it
passes the same door all the same: the operator role (``control.roles``), a decision record
written (fsynced) before any node is reached — failing closed when the log cannot take it —
and an outcome record after.
"""

from __future__ import annotations

from dataclasses import dataclass

from tidectl.console.audit import AuditLog, AuditUnavailable
from tidectl.console.config.model import ClusterConfig
from tidectl.console.control.assemble import audit_path, store_path
from tidectl.console.control.caller import Caller, new_request_id
from tidectl.console.control.errors import Refused
from tidectl.console.control.roles import Roles

__all__ = ["RunAudit"]


@dataclass(slots=True)
class RunAudit:
    """An allowed run's open log; :meth:`end` records how it ended and closes it."""

    log: AuditLog
    caller: Caller
    targets: tuple[str, ...]
    request_id: str

    @classmethod
    def begin(cls, config: ClusterConfig, caller: Caller, nodeset: str, command: str) -> RunAudit:
        """Check the caller's role and record the decision; raises ``Refused`` (recorded
        too, when the log can be written) when the run may not go ahead."""
        access = Roles(config.roles, config.path).check(caller.user, "run")
        rid = new_request_id()
        try:
            log = AuditLog(audit_path(config, store_path(config)))
        except AuditUnavailable as error:
            raise Refused(
                f"nothing was run: the audit log cannot be written ({error}); commands on "
                "nodes wait until it can",
                request_id=rid,
            ) from None
        run = cls(log, caller, (nodeset,), rid)
        try:
            run._record(
                "allowed" if access.allowed else "denied",
                access.rule,
                "started" if access.allowed else f"denied: {access.sentence}",
                {"command": command},
            )
        except AuditUnavailable as error:
            log.close()
            raise Refused(
                f"nothing was run: the audit log cannot be written ({error})", request_id=rid
            ) from None
        if not access.allowed:
            log.close()
            raise Refused(access.sentence, request_id=rid)
        return run

    def end(self, outcome: str) -> None:
        """Record the outcome (the command ran: a log that fails now is not a reason to
        hide its output; the caller is told) and close the log."""
        try:
            self._record("allowed", "outcome", outcome, {})
        finally:
            self.log.close()

    def _record(self, decision: str, rule: str, outcome: str, params: dict[str, str]) -> None:
        self.log.append(
            actor=self.caller.user,
            frontend=str(self.caller.frontend),
            action="run",
            targets=self.targets,
            params=params,
            decision=decision,
            rule=rule,
            outcome=outcome,
            request_id=self.request_id,
        )
