"""The ``slurm`` scheduler: a real Slurm, through its command-line tools.

Reads ``sinfo --json`` (nodes) and ``squeue --json`` (jobs); changes nodes with
``scontrol update NodeName=... State=DRAIN Reason=...`` and ``State=RESUME``. Every command is
an argv list run by asyncio (no shell, never blocking the event loop), bounded by a timeout,
and every failure is a :class:`~tidectl.console.scheduler.base.SchedulerError` subclass with a
sentence: the command could not be started, exited non-zero, hung, or printed something
unreadable (:class:`~tidectl.console.scheduler.slurm_parse.SlurmOutputError`).

A drain is never a DOWN: ``State=DRAIN`` lets running jobs finish.

Nodes joining and leaving are Slurm CLOUD nodes under power saving: defined in slurm.conf with
``State=CLOUD``, powered up and down by Slurm's ``ResumeProgram`` and ``SuspendProgram``.
``add_node`` asks ``State=POWER_UP`` of a powered-down one, ``remove_node`` asks
``State=POWER_DOWN`` of an empty one (never ``POWER_DOWN_FORCE`` nor ``DOWN``, which kill
jobs). What Slurm 22.05 does with these requests, measured (``../shared/notes/slurm.md``):

* both are idempotent: asking twice gives one ResumeProgram (or SuspendProgram) call;
* a power-up asked while the node powers down (``POWERING_DOWN``, or ``POWER_DOWN`` pending) is
  accepted and silently dropped, so it is refused here with a retryable error instead;
* a power-down asked while a power-up is pending or under way is not a cancel: it is queued
  (the node powers down, then up again; or it finishes booting first), so it too is refused
  with a retryable error until the node is up;
* a power-down asked of a node with a job is kept pending until the job ends (the job is not
  killed): the gap between reading "no job" and asking is therefore safe.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, ClassVar, Final

from tidectl.console.scheduler.base import (
    Demand,
    InvalidRequestError,
    Job,
    NodeBusyError,
    NodeFlag,
    SchedNode,
    SchedState,
    Scheduler,
    SchedulerError,
    SchedulerUnavailableError,
    UnknownNodeError,
    check_node_name,
    check_node_names,
    check_reason,
    demand_of,
    drain_reason,
)
from tidectl.console.scheduler.slurm_parse import (
    SlurmOutputError,
    parse_sinfo_json,
    parse_squeue_json,
    with_jobs,
)

__all__ = [
    "NotInSlurmConfError",
    "PowerTransitionError",
    "SlurmCommandError",
    "SlurmOutputError",
    "SlurmScheduler",
    "SlurmTimeoutError",
]

DEFAULT_TIMEOUT_S: Final = 15.0  # slurmctld answers in milliseconds; 15 s is a sick controller
_STDERR_CHARS: Final = 400  # enough of stderr to say what went wrong, short enough for a toast
_POWERING_DOWN: Final = frozenset({NodeFlag.POWERING_DOWN, NodeFlag.POWER_DOWN_PENDING})


class SlurmCommandError(SchedulerUnavailableError):
    """A Slurm command could not be started or exited with an error."""

    title: ClassVar[str] = "Slurm command failed"


class SlurmTimeoutError(SchedulerUnavailableError):
    """A Slurm command did not finish in time and was killed."""

    title: ClassVar[str] = "Slurm not answering"


class NotInSlurmConfError(UnknownNodeError):
    """A node to add that Slurm does not know: Slurm 22.05 cannot take a new node at run time,
    so every node that may join must be defined in slurm.conf beforehand, as a CLOUD node."""

    def __init__(self, name: str) -> None:
        # UnknownNodeError's own sentence says to check the name; here the fix is slurm.conf.
        SchedulerError.__init__(
            self,
            f"Slurm has no node named {name}, and Slurm takes only nodes defined in slurm.conf: "
            f"define it there as a CLOUD node (NodeName={name} ... State=CLOUD), restart "
            "slurmctld, then add it again; if it is defined, add PrivateData=cloud, without "
            "which Slurm hides powered-down CLOUD nodes (nothing was changed)",
        )
        self.names = (name,)


class PowerTransitionError(SchedulerUnavailableError):
    """A CLOUD node is powering up or down, and Slurm cannot take the opposite request now (it
    would drop it, or queue it behind the one under way). Nothing was changed; retry once the
    node is up or powered down (within Slurm's ResumeTimeout or SuspendTimeout)."""

    title: ClassVar[str] = "Node powering up or down"


class SlurmScheduler:
    """A Slurm cluster seen through ``sinfo``, ``squeue`` and ``scontrol``. Implements
    :class:`~tidectl.console.scheduler.base.Scheduler`.

    ``env`` is laid over this process's environment for every command (``SLURM_CONF`` to pick
    a cluster, ``PATH`` to pick the tools). ``timeout_s`` bounds each command.
    """

    def __init__(
        self,
        *,
        env: Mapping[str, str] | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> None:
        if not timeout_s > 0:
            raise InvalidRequestError(
                f"timeout_s must be a positive number of seconds, not {timeout_s!r}"
            )
        self._env = {**os.environ, **(env or {})}
        self._timeout_s = float(timeout_s)

    # -- the Scheduler interface --------------------------------------------------------------

    async def nodes(self) -> list[SchedNode]:
        # Two reads, nodes first: a job that ends in between leaves its node listed as busy
        # (draining rather than drained), the side that waits.
        nodes = parse_sinfo_json(await self._run("sinfo", "--json"))
        return with_jobs(nodes, await self._jobs())

    async def jobs(self, node: str | None = None) -> list[Job]:
        if node is None:
            return await self._jobs()
        check_node_name(node)
        nodes = parse_sinfo_json(await self._run("sinfo", "--json"))
        if node not in {n.name for n in nodes}:
            raise UnknownNodeError([node])
        return [job for job in await self._jobs() if node in job.nodes]

    async def drain(self, nodes: Sequence[str], reason: str) -> None:
        check_reason(reason)
        known = await self._known(nodes)
        # One scontrol per distinct reason: a person's drain already on a node keeps its
        # reason against an automation reason (drain_reason), so reasons can differ by node.
        by_reason: dict[str, list[str]] = {}
        for node in known:
            kept = drain_reason(node, reason)
            if node.drain_set and kept == node.reason:
                continue  # already drained so: rewriting would stamp our user and time on it
            by_reason.setdefault(kept, []).append(node.name)
        for kept, names in by_reason.items():
            await self._update(names, "State=DRAIN", f"Reason={kept}")

    async def resume(self, nodes: Sequence[str]) -> None:
        known = await self._known(nodes)
        # Slurm refuses to resume a node that is not drained or down ("Invalid node state"):
        # such nodes are left as they are, as the interface says.
        held = [n.name for n in known if n.drain_set or n.state is SchedState.DOWN]
        if held:
            await self._update(held, "State=RESUME")

    async def pending_demand(self) -> Demand:
        return demand_of(await self._jobs())

    async def add_node(self, name: str, gpus: int) -> None:
        """Power up CLOUD node ``name`` (``State=POWER_UP``: Slurm calls its ResumeProgram, and
        the node takes jobs once its slurmd registers). Nothing is asked of a node already up
        or on its way up. ``gpus`` is checked but not sent: a Slurm node's GPUs are what
        slurm.conf says.

        Raises :class:`NotInSlurmConfError` (an :class:`UnknownNodeError`) for a node Slurm does
        not know, :class:`InvalidRequestError` for an on-prem (not CLOUD) node or a down one,
        and :class:`PowerTransitionError` while the node is powering down.
        """
        check_node_name(name)
        if isinstance(gpus, bool) or not isinstance(gpus, int) or gpus < 0:
            raise InvalidRequestError(
                f"node {name}: gpus must be a whole number of 0 or more, not {gpus!r}"
            )
        node = await self._one(name, NotInSlurmConfError(name))
        _check_cloud(node, "add")
        if NodeFlag.POWERING_UP in node.flags:
            return  # asked already (by us, a person or a job); asking again changes nothing
        if node.state is SchedState.DOWN:
            raise InvalidRequestError(
                f"{name} is down ({node.reason or 'no reason given'}); tidectl never brings a "
                "down node back: look at it (a ResumeTimeout means its last boot never "
                f"registered), then `scontrol update NodeName={name} State=RESUME` by hand"
            )
        if node.flags & _POWERING_DOWN:
            raise PowerTransitionError(
                f"{name} is powering down, and Slurm drops a power-up asked meanwhile; add it "
                "again once it is powered down (within Slurm's SuspendTimeout)"
            )
        if NodeFlag.POWERED_DOWN in node.flags:
            await self._update([name], "State=POWER_UP")
        # Otherwise it is up: nothing to do.

    async def remove_node(self, name: str) -> None:
        """Power down CLOUD node ``name`` (``State=POWER_DOWN``: Slurm calls its
        SuspendProgram). Never while a job is on it, and never by ``POWER_DOWN_FORCE`` or
        ``DOWN``, which kill jobs. Nothing is asked of a node already powered down or on its
        way down.

        Raises :class:`UnknownNodeError` for a node Slurm does not know,
        :class:`InvalidRequestError` for an on-prem (not CLOUD) node, :class:`NodeBusyError`
        while any job is on it, and :class:`PowerTransitionError` while it is powering up.
        """
        check_node_name(name)
        node = await self._one(name, UnknownNodeError([name]))
        _check_cloud(node, "remove")
        if node.jobs:
            raise NodeBusyError(name, node.jobs)
        if NodeFlag.POWERING_UP in node.flags:
            raise PowerTransitionError(
                f"{name} is powering up, and Slurm does not cancel a power-up for a power-down "
                "(it powers the node down, then up again); remove it again once it is up or its "
                "boot has failed (within Slurm's ResumeTimeout)"
            )
        if node.flags & (_POWERING_DOWN | {NodeFlag.POWERED_DOWN}):
            return
        await self._update([name], "State=POWER_DOWN")

    # -- internals ----------------------------------------------------------------------------

    async def _jobs(self) -> list[Job]:
        return parse_squeue_json(await self._run("squeue", "--json"))

    async def _known(self, names: Sequence[str]) -> list[SchedNode]:
        """The nodes named, as Slurm reports them now (each once); all or nothing."""
        listed = [check_node_name(n) for n in check_node_names(names)]
        by_name = {n.name: n for n in await self.nodes()}
        unknown = [n for n in listed if n not in by_name]
        if unknown:
            raise UnknownNodeError(unknown)
        return [by_name[n] for n in dict.fromkeys(listed)]

    async def _one(self, name: str, unknown: SchedulerError) -> SchedNode:
        """Node ``name`` as Slurm reports it now (with its jobs); raises ``unknown`` if Slurm
        has no such node."""
        node = next((n for n in await self.nodes() if n.name == name), None)
        if node is None:
            raise unknown
        return node

    async def _update(self, names: Sequence[str], *settings: str) -> None:
        # Names were checked by check_node_name: no commas, spaces or brackets, so the joined
        # list names exactly these nodes. Each setting is one argv word; no shell parses it.
        await self._run("scontrol", "update", f"NodeName={','.join(names)}", *settings)

    async def _run(self, *argv: str) -> str:
        """``argv``'s stdout as text. Raises SlurmCommandError (cannot start, non-zero exit) or
        SlurmTimeoutError (killed after ``timeout_s``)."""
        shown = " ".join(argv)
        try:
            process = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=self._env,
                start_new_session=True,  # its own process group, so a kill takes its children
            )
        except OSError as error:
            raise SlurmCommandError(
                f"could not run {argv[0]} ({error.strerror or error}); is Slurm's client "
                "installed (slurm-client) and on PATH?"
            ) from None
        try:
            stdout, stderr = await asyncio.wait_for(process.communicate(), self._timeout_s)
        except TimeoutError:
            await _kill(process)
            raise SlurmTimeoutError(
                f"{shown} did not answer within {self._timeout_s:g} s and was stopped; is "
                "slurmctld running and reachable? (`scontrol ping` tells)"
            ) from None
        except BaseException:  # cancelled: do not leave the command running
            await _kill(process)
            raise
        if process.returncode != 0:
            said = stderr.decode(errors="replace").strip()[-_STDERR_CHARS:] or "no message"
            raise SlurmCommandError(f"{shown} failed with exit status {process.returncode}: {said}")
        try:
            return stdout.decode()
        except UnicodeDecodeError:
            raise SlurmOutputError(f"{shown} printed bytes that are not UTF-8 text") from None


def _check_cloud(node: SchedNode, verb: str) -> None:
    """Only CLOUD nodes join and leave; an on-prem node is in Slurm for good."""
    if NodeFlag.CLOUD not in node.flags:
        raise InvalidRequestError(
            f"cannot {verb} {node.name}: it is an on-prem Slurm node (not State=CLOUD in "
            "slurm.conf), which tidectl never powers up or down; use a CLOUD node for bursts, "
            "or drain this one"
        )


async def _kill(process: asyncio.subprocess.Process) -> None:
    """SIGKILL the command's process group (its PID, as it leads its own session) and reap it.
    The group matters: a wrapper script's children would keep its pipes open."""
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
    await process.wait()


if TYPE_CHECKING:  # mypy checks here that the class keeps to the interface
    _keeps_to_the_interface: Scheduler = SlurmScheduler()
