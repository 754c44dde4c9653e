"""The ``notify`` step: a JSON line with the message and the run's facts, appended to a file
and/or POSTed to a webhook (``urllib``, off the event loop, bounded by a timeout)."""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

from tidectl.console.nodesets import fold
from tidectl.playbooks.errors import StepFailed
from tidectl.playbooks.model import Notify, StepAction
from tidectl.playbooks.report import StepReport
from tidectl.playbooks.session import Session
from tidectl.playbooks.templates import fill_text

__all__ = ["WEBHOOK_TIMEOUT_S", "notify_step"]

#: How long a webhook may take to answer.
WEBHOOK_TIMEOUT_S = 10.0


async def notify_step(session: Session, action: StepAction, report: StepReport) -> None:
    assert isinstance(action, Notify)
    costs = await session.costs()
    facts = {
        "playbook": session.playbook,
        "burn_per_hour": f"${costs.burn_per_hour:,.2f}/h",
        "spend_today": f"${costs.today:,.2f}",
        "changed": "; ".join(c.line() for c in session.changed) or "nothing",
        "launched": fold(session.launched) or "none",
        "failed_step": session.failed_step or "none",
    }
    message = fill_text(action.message, facts)
    record = {
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "playbook": session.playbook,
        "origin": session.caller.origin,
        "actor": session.caller.user,
        "message": message,
        "failed_step": session.failed_step,
        "burn_per_hour": round(costs.burn_per_hour, 4),
        "spend_today": round(costs.today, 4),
        "pools": {
            p.pool: {"burn_per_hour": p.burn_per_hour, "today": p.today} for p in costs.pools
        },
        "changed": [c.as_json() for c in session.changed],
    }
    line = json.dumps(record, sort_keys=True)
    if action.file is not None:
        await asyncio.to_thread(_append, action.file, line)
        report.details.append({"file": str(action.file)})
    if action.webhook is not None:
        status = await asyncio.to_thread(_post, action.webhook, line)
        report.details.append({"webhook": action.webhook, "status": status})
    report.sentence = message


def _append(path: Path, line: str) -> None:
    try:
        with open(path, "a", encoding="utf-8") as out:
            out.write(line + "\n")
    except OSError as error:
        raise StepFailed(
            f"cannot write to {path} ({error.strerror}); check that its folder exists and is "
            "writable"
        ) from None


def _post(url: str, line: str) -> int:
    request = urllib.request.Request(
        url, data=line.encode(), method="POST", headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=WEBHOOK_TIMEOUT_S) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as error:
        raise StepFailed(f"the webhook {url} answered {error.code} {error.reason}") from None
    except (urllib.error.URLError, OSError) as error:
        why = getattr(error, "reason", error)
        raise StepFailed(f"the webhook {url} could not be reached ({why})") from None
