"""The ``slurm`` scheduler: a real Slurm, through its command-line tools.

Reads ``sinfo --json`` (nodes) and ``squeue --json`` (jobs); changes nodes with
``scontrol update NodeName=... State=DRAIN Reason=...`` and ``State=RESUME``. Every command is
an argv list run by asyncio (no shell, never blocking the event loop), bounded by a timeout,
and every failure is a :class:`~tidectl.console.scheduler.base.SchedulerError` subclass with a
sentence: the command could not be started, exited non-zero, hung, or printed something
unreadable (:class:`~tidectl.console.scheduler.slurm_parse.SlurmOutputError`).

A drain is never a DOWN: ``State=DRAIN`` lets running jobs finish. Nodes joining and leaving
(Slurm CLOUD nodes) are not supported yet: ``add_node`` and ``remove_node`` say so.
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
    SchedNode,
    SchedState,
    Scheduler,
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
    "SlurmCommandError",
    "SlurmOutputError",
    "SlurmScheduler",
    "SlurmTimeoutError",
]

DEFAULT_TIMEOUT_S: Final = 15.0  # slurmctld answers in milliseconds; 15 s is a sick controller
_STDERR_CHARS: Final = 400  # enough of stderr to say what went wrong, short enough for a toast


class SlurmCommandError(SchedulerUnavailableError):
    """A Slurm command could not be started or exited with an error."""

    title: ClassVar[str] = "Slurm command failed"


class SlurmTimeoutError(SchedulerUnavailableError):
    """A Slurm command did not finish in time and was killed."""

    title: ClassVar[str] = "Slurm not answering"


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
        raise InvalidRequestError(
            f"the slurm scheduler cannot add {name} yet: nodes joining and leaving Slurm "
            "(CLOUD nodes) are not supported; define the node in slurm.conf instead"
        )

    async def remove_node(self, name: str) -> None:
        raise InvalidRequestError(
            f"the slurm scheduler cannot remove {name} yet: nodes joining and leaving Slurm "
            "(CLOUD nodes) are not supported; drain it and take it out of slurm.conf instead"
        )

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


async def _kill(process: asyncio.subprocess.Process) -> None:
    """SIGKILL the command's process group (its PID, as it leads its own session) and reap it.
    The group matters: a wrapper script's children would keep its pipes open."""
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
    await process.wait()


if TYPE_CHECKING:  # mypy checks here that the class keeps to the interface
    _keeps_to_the_interface: Scheduler = SlurmScheduler()
