"""A session: one cluster, as a playbook (or a script) acts on it.

It holds the control plane to act through (a :class:`~tidectl.playbooks.backend.Backend`),
who is acting (a :class:`Caller` through the ``playbook`` front end, with the playbook's path
and hash as its origin, so the audit log says which file asked), what this session launched
(``launched``: what ``on_failure`` cleans up), every change it made, and where progress goes.

Its methods are the steps, awaited one by one::

    async with open_cluster("cluster.toml") as cluster:
        await cluster.burst("h100-east", ensure=4, wait="15m")
        await cluster.run({"pool": "h100-east"}, "nvidia-smi -L", expect={"exit": 0})
        await cluster.terminate({"launched": True}, reason="smoke test done", wait="5m")

Each returns the step's :class:`~tidectl.playbooks.report.StepReport` and raises
:class:`~tidectl.playbooks.errors.StepFailed` when the step fails (nothing is cleaned up for
you outside a playbook: catch it and call ``terminate({"launched": True}, …)``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from tidectl.console.control.caller import Caller
from tidectl.console.cost.report import CostReport
from tidectl.playbooks.backend import Backend
from tidectl.playbooks.model import Condition, Expect, Playbook, Select
from tidectl.playbooks.progress import QuietReporter, Reporter
from tidectl.playbooks.report import NodeChange, RunReport, StepReport
from tidectl.playbooks.world import NodeFacts, World

if TYPE_CHECKING:
    from tidectl.playbooks.api import Duration, Nodes

__all__ = ["Session"]


class Session:
    """``caller`` acting on the cluster behind ``backend``; ``playbook`` is the name its
    drain reasons carry (``tidectl: playbook NAME: …``)."""

    def __init__(
        self,
        backend: Backend,
        caller: Caller,
        *,
        playbook: str = "script",
        reporter: Reporter | None = None,
    ) -> None:
        self.backend = backend
        self.caller = caller
        self.playbook = playbook
        self.reporter: Reporter = reporter or QuietReporter()
        #: The nodes this session's bursts launched, in order.
        self.launched: list[str] = []
        #: Every node change this session made.
        self.changed: list[NodeChange] = []
        #: The step that failed, for ``notify`` in ``on_failure`` (``{{ failed_step }}``).
        self.failed_step: str | None = None

    async def world(self) -> World:
        """The cluster now, as a step sees it."""
        return await self.backend.world(self.launched)

    async def nodes(self, nodes: Nodes | None = None) -> list[NodeFacts]:
        """The nodes ``nodes`` selects now (every node when None), as steps see them."""
        world = await self.world()
        return world.select(Select(all=True) if nodes is None else as_select(nodes), self.playbook)

    async def costs(self) -> CostReport:
        """What the cluster burns now and spent today (a read: a viewer may)."""
        return await self.backend.cost_report(self.caller)

    # -- the steps (``api.py``), as methods -------------------------------------------------

    async def burst(
        self,
        pool: str,
        *,
        ensure: int,
        data_class: str | None = None,
        wait: Duration | None = None,
    ) -> StepReport:
        """Bring ``pool`` to ``ensure`` live nodes; see :func:`tidectl.playbooks.burst`."""
        from tidectl.playbooks import api

        return await api.burst(self, pool, ensure=ensure, data_class=data_class, wait=wait)

    async def wait(
        self,
        nodes: Nodes | None = None,
        *,
        until: str | None = None,
        queue_empty: bool = False,
        job: str | None = None,
        seconds: Duration | None = None,
        timeout: Duration = 600.0,
    ) -> StepReport:
        """Wait for one thing; see :func:`tidectl.playbooks.wait`."""
        from tidectl.playbooks import api

        return await api.wait(
            self,
            nodes,
            until=until,
            queue_empty=queue_empty,
            job=job,
            seconds=seconds,
            timeout=timeout,
        )

    async def run(
        self,
        nodes: Nodes,
        command: str,
        *,
        timeout: Duration = 30.0,
        expect: Expect | Mapping[str, Any] | None = None,
    ) -> StepReport:
        """Run ``command`` on ``nodes``; see :func:`tidectl.playbooks.run`."""
        from tidectl.playbooks import api

        return await api.run(self, nodes, command, timeout=timeout, expect=expect)

    async def drain(
        self,
        nodes: Nodes,
        *,
        reason: str,
        wait: Duration | None = None,
        one_at_a_time: bool = False,
    ) -> StepReport:
        """Drain ``nodes``; see :func:`tidectl.playbooks.drain`."""
        from tidectl.playbooks import api

        return await api.drain(self, nodes, reason=reason, wait=wait, one_at_a_time=one_at_a_time)

    async def resume(self, nodes: Nodes) -> StepReport:
        """Resume ``nodes``; see :func:`tidectl.playbooks.resume`."""
        from tidectl.playbooks import api

        return await api.resume(self, nodes)

    async def terminate(
        self,
        nodes: Nodes,
        *,
        reason: str,
        wait: Duration | None = None,
        drain_timeout: Duration = 1800.0,
    ) -> StepReport:
        """End cloud ``nodes``; see :func:`tidectl.playbooks.terminate`."""
        from tidectl.playbooks import api

        return await api.terminate(
            self, nodes, reason=reason, wait=wait, drain_timeout=drain_timeout
        )

    async def check(
        self, condition: Condition | None = None, *, message: str | None = None, **keys: Any
    ) -> StepReport:
        """Fail unless the condition holds; see :func:`tidectl.playbooks.check`."""
        from tidectl.playbooks import api

        return await api.check(self, condition, message=message, **keys)

    async def notify(
        self, message: str, *, file: str | None = None, webhook: str | None = None
    ) -> StepReport:
        """Say ``message`` to a file or webhook; see :func:`tidectl.playbooks.notify`."""
        from tidectl.playbooks import api

        return await api.notify(self, message, file=file, webhook=webhook)

    async def play(self, playbook: Playbook, *, check: bool = False) -> RunReport:
        """Run a whole playbook (or, with ``check``, plan it); see
        :func:`tidectl.playbooks.runner.play`."""
        from tidectl.playbooks.runner import play

        return await play(self, playbook, check=check)


def as_select(nodes: Nodes) -> Select:
    """A selector from what the API takes: a ``Select``, a node set, or a mapping of its keys."""
    if isinstance(nodes, Select):
        return nodes
    if isinstance(nodes, str):
        return Select(names=nodes)
    keys = dict(nodes)
    for key in ("state", "health"):  # one word, or several
        if isinstance(keys.get(key), str):
            keys[key] = (keys[key],)
    return Select(**keys)
