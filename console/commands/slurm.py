"""``tidectl slurm resume | suspend | resume-fail NODELIST``: Slurm's power-saving programs.

Configured (through the small wrappers in ``examples/slurm/``) as slurm.conf's
``ResumeProgram``, ``SuspendProgram`` and ``ResumeFailProgram``. Slurm runs them with one
argument, a host list of CLOUD node names (``cloud[1-3,7]``), and does not wait on them for
the work: each records what Slurm asked and returns once the provider calls are made —
provisioning, bootstrapping and teardown are carried out by the lifecycle engine.

* ``resume``: launch the named nodes (each pool's ``slurm_nodes`` says which pool a name
  belongs to); nodes live already are left alone, so Slurm may ask again.
* ``suspend``: end the named nodes Slurm's power saving is taking down (idle; drained on the
  way; a node with a job is refused, never killed).
* ``resume-fail``: the nodes never registered within ``ResumeTimeout``: they become failed,
  with that reason, and their instances are terminated — not leaked.

With a ``tidectl serve`` running (``[server] socket``, or ``--server``) the service does the
work and the command returns at once; without one the control plane is assembled here.

Exit status: 0 done; 1 refused or failed (said on stderr, which slurmctld logs at debug
level; the audit trail has the request either way); 2 a bad command line or config.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Protocol

from tidectl.console.config.loader import load_config
from tidectl.console.control.assemble import AssemblyError, assemble
from tidectl.console.control.caller import Caller, Frontend
from tidectl.console.control.errors import ControlError
from tidectl.console.control.plane import refusal
from tidectl.console.lifecycle.burst import BurstResult
from tidectl.console.lifecycle.operate import ActionResult

__all__ = ["add_parser", "main"]

HOOKS = ("resume", "suspend", "resume-fail")


class SlurmHooks(Protocol):
    """What these programs ask of a control plane: the embedded one or the service's."""

    async def slurm_resume(self, caller: Caller, nodes: str) -> list[BurstResult]: ...

    async def slurm_suspend(self, caller: Caller, nodes: str) -> ActionResult: ...

    async def slurm_resume_failed(self, caller: Caller, nodes: str) -> ActionResult: ...


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "slurm",
        help="Slurm's ResumeProgram, SuspendProgram and ResumeFailProgram",
        description="Slurm's power-saving programs (docs/slurm.md): launch, end or give up "
        "on the CLOUD nodes NODELIST names. Slurm runs them through the wrappers in "
        "examples/slurm/.",
    )
    parser.add_argument("hook", choices=HOOKS, help="what Slurm asks")
    parser.add_argument("nodes", metavar="NODELIST", help="Slurm's host list, like cloud[1-4]")
    parser.add_argument("-c", "--config", required=True, help="cluster.toml")
    parser.add_argument("--store", type=Path, metavar="PATH", help="the store file")
    parser.add_argument(
        "--server",
        type=Path,
        metavar="SOCKET",
        help="hand the work to the tidectl serve at SOCKET (default: [server] socket in "
        "cluster.toml, if set)",
    )


def main(args: argparse.Namespace) -> int:
    return asyncio.run(_main(args))


async def _main(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    caller = Caller.local(Frontend.SLURM)
    server = args.server or config.server.socket
    if server is not None:
        from tidectl.console.server.client import RemotePlane

        remote = RemotePlane(server, Frontend.SLURM)
        try:
            await remote.connect()
            return await _asked(remote, caller, args)
        except ControlError as error:
            return _refused(args, error)
        finally:
            await remote.aclose()
    try:
        plane = await assemble(
            config, store=args.store, collect=False, watch_onprem=False, who="tidectl slurm"
        )
    except AssemblyError as error:
        _err(f"tidectl slurm {args.hook}: {error}")
        return 2
    try:
        return await _asked(plane, caller, args)
    except ControlError as error:
        return _refused(args, error)
    finally:
        await plane.aclose()


async def _asked(plane: SlurmHooks, caller: Caller, args: argparse.Namespace) -> int:
    if args.hook == "resume":
        results = await plane.slurm_resume(caller, args.nodes)
        for result in results:
            _say(f"{result.sentence}: {' '.join(result.nodes) or 'none'}")
        return 0 if all(r.launched == r.wanted for r in results) else 1
    end: Callable[[Caller, str], Awaitable[ActionResult]] = (
        plane.slurm_suspend if args.hook == "suspend" else plane.slurm_resume_failed
    )
    ended = await end(caller, args.nodes)
    _say(ended.sentence)
    for outcome in ended.nodes:
        _say(f"  {outcome.node}: {outcome.before} -> {outcome.after} ({outcome.note})")
    return 0


def _refused(args: argparse.Namespace, error: ControlError) -> int:
    _err(f"tidectl slurm {args.hook} {args.nodes}: {refusal(error)}")
    return 1


def _say(line: str) -> None:
    sys.stdout.write(line + "\n")


def _err(line: str) -> None:
    sys.stderr.write(line + "\n")
