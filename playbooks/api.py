"""The steps as plain async functions: the same steps a playbook runs, for Python scripts.

Each takes the :class:`~tidectl.playbooks.session.Session` first, runs one step through the
control plane exactly as the playbook step of the same name does, returns its
:class:`~tidectl.playbooks.report.StepReport`, and raises
:class:`~tidectl.playbooks.errors.StepFailed` (with the report) when it fails::

    from tidectl.playbooks import burst, open_cluster, run, terminate

    async with open_cluster("cluster.toml") as cluster:
        await burst(cluster, "h100-east", ensure=2, wait="15m")
        await run(cluster, {"pool": "h100-east"}, "nvidia-smi -L", expect={"stdout": "GPU 0"})
        await terminate(cluster, {"launched": True}, reason="smoke test done", wait="10m")

Nodes are a node set (``"gpu[001-004]"``), a mapping of selector keys (``{"pool":
"h100-east", "health": "healthy"}``: docs/playbooks.md lists them) or a
:class:`~tidectl.playbooks.model.Select`. Durations are seconds or text like ``"10m"``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tidectl.playbooks.errors import StepFailed
from tidectl.playbooks.model import (
    UNTIL,
    Burst,
    Check,
    Condition,
    Drain,
    Expect,
    Notify,
    Resume,
    Run,
    Select,
    Step,
    StepAction,
    Terminate,
    Wait,
)
from tidectl.playbooks.report import StepReport
from tidectl.playbooks.schema import duration
from tidectl.playbooks.session import Session, as_select
from tidectl.playbooks.steps import execute

__all__ = [
    "Duration",
    "Nodes",
    "burst",
    "check",
    "drain",
    "notify",
    "resume",
    "run",
    "terminate",
    "wait",
]

#: Seconds, or text like ``"90s"``, ``"10m"``, ``"1h30m"``.
Duration = float | int | str
#: A node set, a mapping of selector keys, or a ``Select``.
Nodes = Select | str | Mapping[str, Any]


async def burst(
    session: Session,
    pool: str,
    *,
    ensure: int,
    data_class: str | None = None,
    wait: Duration | None = None,
) -> StepReport:
    """Bring ``pool`` to ``ensure`` live nodes: the nodes it lacks are launched, and asking
    again launches none. ``wait``: follow the new nodes until active, at most that long.
    The launched nodes are remembered in ``session.launched``.

    >>> await burst(cluster, "h100-east", ensure=4, data_class="internal", wait="15m")
    """
    return await _one(session, Burst(pool, ensure, data_class, _maybe(wait)))


async def wait(
    session: Session,
    nodes: Nodes | None = None,
    *,
    until: str | None = None,
    queue_empty: bool = False,
    job: str | None = None,
    seconds: Duration | None = None,
    timeout: Duration = 600.0,
) -> StepReport:
    """Wait for one thing, at most ``timeout``: ``nodes`` to be ``until`` (``active``,
    ``healthy``, ``drained``, ``terminated``), the queue to be empty, ``job`` (id or name) to
    be neither pending nor running, or ``seconds`` to pass.

    >>> await wait(cluster, {"pool": "h100-east"}, until="healthy", timeout="10m")
    >>> await wait(cluster, job="llm-pretrain", timeout="6h")
    """
    forms = sum(x for x in (until is not None, queue_empty, job is not None, seconds is not None))
    if forms != 1:
        raise ValueError("wait for exactly one of until (with nodes), queue_empty, job or seconds")
    if until is not None and (nodes is None or until not in UNTIL):
        raise ValueError(f"until takes nodes and one of {', '.join(UNTIL)}, not {until!r}")
    action = Wait(
        nodes=None if nodes is None else as_select(nodes),
        until=until,  # type: ignore[arg-type]  # checked against UNTIL above
        queue_empty=queue_empty,
        job=job,
        seconds=_maybe(seconds),
        timeout=duration(timeout),
    )
    return await _one(session, action)


async def run(
    session: Session,
    nodes: Nodes,
    command: str,
    *,
    timeout: Duration = 30.0,
    expect: Expect | Mapping[str, Any] | None = None,
) -> StepReport:
    """Run ``command`` on ``nodes`` over the control plane's connections; fails unless every
    node gives what ``expect`` says (default: exit 0). The report's ``details`` hold each
    node's exit status and output.

    >>> await run(cluster, {"pool": "h100-east"}, "nvidia-smi -L", expect={"stdout": "GPU 7"})
    """
    if expect is None:
        expected = Expect()
    elif isinstance(expect, Expect):
        expected = expect
    else:
        given = dict(expect)
        exits = given.pop("exit", (0,))
        expected = Expect(exit=(exits,) if isinstance(exits, int) else tuple(exits), **given)
    return await _one(session, Run(as_select(nodes), command, duration(timeout), expected))


async def drain(
    session: Session,
    nodes: Nodes,
    *,
    reason: str,
    wait: Duration | None = None,
    one_at_a_time: bool = False,
) -> StepReport:
    """Stop new jobs on ``nodes``; their jobs finish first. ``wait``: until drained;
    ``one_at_a_time``: one node, until it is drained, then the next.

    >>> await drain(cluster, {"onprem": True, "health": "unhealthy"}, reason="GPU XID",
    ...             wait="30m", one_at_a_time=True)
    """
    gap = _maybe(wait)
    if one_at_a_time and gap is None:
        gap = 1800.0
    return await _one(session, Drain(as_select(nodes), reason, gap, one_at_a_time))


async def resume(session: Session, nodes: Nodes) -> StepReport:
    """Let draining or drained ``nodes`` take jobs again (others are left as they are).

    >>> await resume(cluster, {"onprem": True, "health": "healthy", "drained_by_playbook": True})
    """
    return await _one(session, Resume(as_select(nodes)))


async def terminate(
    session: Session,
    nodes: Nodes,
    *,
    reason: str,
    wait: Duration | None = None,
    drain_timeout: Duration = 1800.0,
) -> StepReport:
    """End cloud ``nodes``: those still serving are drained first (their jobs finish, within
    ``drain_timeout``), then the provider is asked; ``wait``: until it confirms.

    >>> await terminate(cluster, {"launched": True}, reason="training done", wait="10m")
    """
    action = Terminate(as_select(nodes), reason, _maybe(wait), duration(drain_timeout))
    return await _one(session, action)


async def check(
    session: Session,
    condition: Condition | None = None,
    *,
    message: str | None = None,
    **keys: Any,
) -> StepReport:
    """Fail unless the condition holds (a ``Condition``, or its keys as arguments).

    >>> await check(cluster, nodes={"pool": "h100-east"}, healthy=True, burn_below=500)
    """
    if condition is None:
        if "nodes" in keys and keys["nodes"] is not None:
            keys["nodes"] = as_select(keys["nodes"])
        condition = Condition(**keys)
    return await _one(session, Check(condition, message))


async def notify(
    session: Session, message: str, *, file: str | Path | None = None, webhook: str | None = None
) -> StepReport:
    """Append a JSON line with ``message`` (and the run's facts: ``{{ burn_per_hour }}``,
    ``{{ spend_today }}``, ``{{ changed }}``…) to ``file`` and/or POST it to ``webhook``.

    >>> await notify(cluster, "spent {{ spend_today }} today", file="/var/log/tidectl.jsonl")
    """
    if file is None and webhook is None:
        raise ValueError("notify needs a file, a webhook, or both")
    path = None if file is None else Path(file).expanduser().absolute()
    return await _one(session, Notify(message, path, webhook))


async def _one(session: Session, action: StepAction) -> StepReport:
    report = await execute(session, Step(action))
    if report.status == "failed":
        raise StepFailed(report.sentence, report)
    return report


def _maybe(value: Duration | None) -> float | None:
    return None if value is None else duration(value)
