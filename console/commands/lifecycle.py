"""``tidectl burst | drain | resume | terminate | cancel``: lifecycle actions from a shell.

Each command assembles the cluster's control plane in this process (the store, the providers,
the scheduler), makes one call through :class:`ControlPlane` as the person running it
(their login name, front end ``cli``), prints the result, and with ``--wait`` runs the
reconcile loop until the nodes get where the action takes them, printing each change.

Exit status: 0 done (and, with ``--wait``, every node got there); 1 refused or failed, or a
wait that ended with a node failed or out of time; 2 a bad command line or config.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Callable, Collection, Coroutine, Sequence
from pathlib import Path
from typing import Any, Protocol

from tidectl.console.config.loader import load_config
from tidectl.console.control.assemble import AssemblyError, assemble
from tidectl.console.control.caller import Caller, Frontend
from tidectl.console.control.errors import ControlError
from tidectl.console.control.plane import Progress, refusal
from tidectl.console.lifecycle.burst import BurstResult
from tidectl.console.lifecycle.operate import ActionResult
from tidectl.console.lifecycle.states import State

__all__ = ["COMMANDS", "add_parsers"]

DEFAULT_WAIT_S = 3600.0
#: How often a waiting command reconciles: it has nothing else to do, and a person watches.
WAIT_INTERVAL_S = 1.0
_ENDED = frozenset({State.FAILED, State.TERMINATED})


def add_parsers(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    burst = _parser(commands, "burst", "add cloud nodes to a pool (or bring it to a size)")
    burst.add_argument("pool", help="the pool's name, from [[pools]] in cluster.toml")
    burst.add_argument("count", type=_count, help="how many nodes to add (with --ensure: to have)")
    burst.add_argument(
        "--ensure",
        action="store_true",
        help="COUNT is the size the pool should have: asking twice adds nothing the second time",
    )
    burst.add_argument(
        "--data-class",
        metavar="NAME",
        help="the data class the burst's jobs carry (default: the pool's data_class); a "
        "region the class may not be processed in is refused ([[data_classes]])",
    )
    _wait_options(burst, "until the nodes are active")
    drain = _parser(commands, "drain", "stop new jobs on nodes; running jobs finish first")
    drain.add_argument("nodes", metavar="NODESET", help="nodes, like gpu[001-004]")
    drain.add_argument(
        "--reason", help='why, as the scheduler shows it (default: "drained by USER via tidectl")'
    )
    _wait_options(drain, "until the nodes are drained (their jobs have finished)")
    resume = _parser(commands, "resume", "let drained nodes take jobs again")
    resume.add_argument("nodes", metavar="NODESET")
    terminate = _parser(commands, "terminate", "end drained (or failed) cloud nodes")
    terminate.add_argument("nodes", metavar="NODESET")
    terminate.add_argument(
        "--reason", required=True, help="why these instances end (audit log, node history)"
    )
    terminate.add_argument(
        "--yes",
        action="store_true",
        help="do it: without --yes, only show what would be terminated (destructive actions "
        "need the flag in scripts)",
    )
    _wait_options(terminate, "until the provider confirms the instances are gone")
    cancel = _parser(commands, "cancel", "take back a burst's nodes that have not joined")
    cancel.add_argument("intent", help="the burst's intent id (tidectl burst prints it)")


def _parser(
    commands: argparse._SubParsersAction[argparse.ArgumentParser], name: str, summary: str
) -> argparse.ArgumentParser:
    parser = commands.add_parser(name, help=summary, description=summary[0].upper() + summary[1:])
    parser.add_argument("-c", "--config", required=True, help="cluster.toml")
    parser.add_argument("--store", type=Path, metavar="PATH", help="the store file")
    parser.add_argument(
        "--server",
        type=Path,
        metavar="SOCKET",
        help="act through a running tidectl serve at SOCKET instead of in this process "
        "(default: [server] socket in cluster.toml, if set)",
    )
    parser.add_argument("--json", action="store_true", help="print JSON")
    return parser


def _wait_options(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument("--wait", action="store_true", help=f"wait {what}, showing progress")
    parser.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_WAIT_S,
        metavar="S",
        help=f"give up waiting after S seconds (default {DEFAULT_WAIT_S:.0f})",
    )


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"COUNT must be a whole number, not {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"COUNT must be 0 or more, not {value}")
    return value


# -- running ------------------------------------------------------------------------------


def main(args: argparse.Namespace) -> int:
    return asyncio.run(_main(args))


async def _main(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    wait = bool(getattr(args, "wait", False))
    caller = Caller.local(Frontend.CLI)
    server = args.server or config.server.socket
    if server is not None:
        return await _remote(args, caller, server)
    try:
        # Only a wait needs the agents' word (the admission gate); the configured on-prem
        # machines are never watched from a one-shot command.
        plane = await assemble(
            config,
            store=args.store,
            collect=wait,
            watch_onprem=False,
            interval_s=WAIT_INTERVAL_S,
            who=f"tidectl {args.command}",
        )
    except AssemblyError as error:
        _err(f"tidectl {args.command}: {error}")
        return 2
    try:
        if wait:
            await plane.start()
        return await _carried_out(plane, caller, args)
    finally:
        await plane.aclose()


async def _remote(args: argparse.Namespace, caller: Caller, server: Path) -> int:
    """The same command, carried out by the service at ``server`` (as this user: the
    service reads who we are from the socket)."""
    from tidectl.console.server.client import RemotePlane

    remote = RemotePlane(server, Frontend.CLI)
    try:
        try:
            await remote.connect()
        except ControlError as error:
            return _refused(args, error)
        return await _carried_out(remote, caller, args)
    finally:
        await remote.aclose()


async def _carried_out(plane: Plane, caller: Caller, args: argparse.Namespace) -> int:
    """The command's own work; a refusal or failure said, as text or JSON, with status 1."""
    try:
        return await COMMANDS[args.command](plane, caller, args)
    except ControlError as error:
        return _refused(args, error)


def _refused(args: argparse.Namespace, error: ControlError) -> int:
    if args.json:
        _print_json({"ok": False, "error": str(error), "request_id": error.request_id})
    else:
        _err(f"tidectl {args.command}: {refusal(error)}")
    return 1


class Plane(Protocol):
    """What these commands ask of a control plane: the embedded one or the service's."""

    reports: list[str]

    async def burst(
        self,
        caller: Caller,
        pool: str,
        *,
        count: int | None = ...,
        ensure: int | None = ...,
        data_class: str | None = ...,
    ) -> BurstResult: ...

    async def drain(
        self, caller: Caller, nodes: str | Sequence[str], *, reason: str
    ) -> ActionResult: ...

    async def resume(self, caller: Caller, nodes: str | Sequence[str]) -> ActionResult: ...

    async def terminate(
        self, caller: Caller, nodes: str | Sequence[str], *, reason: str
    ) -> ActionResult: ...

    async def cancel(self, caller: Caller, burst_intent: str) -> ActionResult: ...

    async def wait(
        self,
        nodes: Collection[str],
        until: Collection[State],
        *,
        timeout_s: float,
        on_progress: Callable[[Progress], None] | None = ...,
    ) -> Progress: ...

    async def price_per_hour(self, pool: str) -> float | None: ...


async def _burst(plane: Plane, caller: Caller, args: argparse.Namespace) -> int:
    data_class = args.data_class
    if args.ensure:
        result = await plane.burst(caller, args.pool, ensure=args.count, data_class=data_class)
    elif args.count == 0:
        _err("tidectl burst: COUNT must be at least 1 (or use --ensure 0)")
        return 2
    else:
        result = await plane.burst(caller, args.pool, count=args.count, data_class=data_class)
    price = await plane.price_per_hour(args.pool)
    out = _burst_json(result, price)
    ok = result.launched == result.wanted and not result.rolled_back
    if not args.json:
        _say(result.sentence)
        for name in result.nodes:
            _say(f"  {name}")
        if price is not None and result.launched:
            _say(f"adds about ${price * result.launched:,.2f}/h (at ${price:,.2f} a node-hour)")
        if result.intent_id and result.launched:
            _say(f"intent {result.intent_id} (tidectl cancel -c ... {result.intent_id})")
    return await _finish(plane, args, out, ok, names=result.nodes, until={State.ACTIVE})


async def _drain(plane: Plane, caller: Caller, args: argparse.Namespace) -> int:
    reason = args.reason if args.reason is not None else f"drained by {caller.user} via tidectl"
    result = await plane.drain(caller, args.nodes, reason=reason)
    return await _action_done(plane, args, result, {State.DRAINED})


async def _resume(plane: Plane, caller: Caller, args: argparse.Namespace) -> int:
    return await _action_done(plane, args, await plane.resume(caller, args.nodes), None)


async def _terminate(plane: Plane, caller: Caller, args: argparse.Namespace) -> int:
    if not args.yes:
        return _preview_terminate(args)
    result = await plane.terminate(caller, args.nodes, reason=args.reason)
    return await _action_done(plane, args, result, {State.TERMINATED})


def _preview_terminate(args: argparse.Namespace) -> int:
    """What a terminate would end, and how to do it: nothing is asked of anyone."""
    sentence = (
        f"would terminate {args.nodes} ({args.reason}); nothing was done: terminate is "
        "destructive, add --yes to carry it out"
    )
    if args.json:
        _print_json({"ok": False, "preview": True, "nodes": args.nodes, "sentence": sentence})
    else:
        _err(f"tidectl terminate: {sentence}")
    return 1


async def _cancel(plane: Plane, caller: Caller, args: argparse.Namespace) -> int:
    return await _action_done(plane, args, await plane.cancel(caller, args.intent), None)


async def _action_done(
    plane: Plane,
    args: argparse.Namespace,
    result: ActionResult,
    until: Collection[State] | None,
) -> int:
    out = {
        "ok": True,
        "action": str(result.action),
        "intent_id": result.intent_id,
        "replayed": result.replayed,
        "sentence": result.sentence,
        "nodes": [
            {
                "name": o.node,
                "before": None if o.before is None else str(o.before),
                "after": str(o.after),
                "note": o.note,
            }
            for o in result.nodes
        ],
    }
    if not args.json:
        _say(result.sentence)
        for o in result.nodes:
            before = f"{o.before} -> " if o.before and o.before != o.after else ""
            _say(f"  {o.node}: {before}{o.after} ({o.note})")
    names = [o.node for o in result.nodes]
    return await _finish(plane, args, out, True, names=names, until=until)


async def _finish(
    plane: Plane,
    args: argparse.Namespace,
    out: dict[str, Any],
    ok: bool,
    *,
    names: Collection[str],
    until: Collection[State] | None,
) -> int:
    if until is not None and getattr(args, "wait", False) and names:
        progress = await plane.wait(
            names,
            until,
            timeout_s=args.timeout,
            on_progress=None if args.json else _show_progress(until),
        )
        reached = sum(1 for s in progress.states.values() if s in until)
        out["wait"] = {
            "states": {n: str(s) for n, s in progress.states.items()},
            "reached": reached,
            "of": progress.total,
            "elapsed_s": round(progress.elapsed_s, 1),
            "timed_out": progress.done < progress.total,
        }
        ok = ok and reached == progress.total
        if not args.json:
            _say(_wait_sentence(progress, until, reached, plane.reports))
    if args.json:
        out["ok"] = ok
        _print_json(out)
    return 0 if ok else 1


def _show_progress(until: Collection[State]) -> Callable[[Progress], None]:
    def show(progress: Progress) -> None:
        counts: dict[str, int] = {}
        for state in progress.states.values():
            counts[str(state)] = counts.get(str(state), 0) + 1
        listed = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
        _say(f"[{progress.elapsed_s:6.1f} s] {listed}")

    return show


def _wait_sentence(
    progress: Progress, until: Collection[State], reached: int, reports: list[str]
) -> str:
    wanted = " or ".join(sorted(str(s) for s in until))
    if reached == progress.total:
        return f"all {progress.total} node(s) {wanted} after {progress.elapsed_s:.1f} s"
    ended = [n for n, s in progress.states.items() if s in _ENDED and s not in until]
    why = f"; ended: {', '.join(sorted(ended))}" if ended else ""
    last = f"; last report: {reports[-1]}" if reports else ""
    stopped = "gave up" if progress.done < progress.total else "stopped"
    return (
        f"{stopped} after {progress.elapsed_s:.1f} s: {reached} of {progress.total} node(s) "
        f"{wanted}{why}{last}"
    )


def _burst_json(result: BurstResult, price: float | None) -> dict[str, Any]:
    return {
        "ok": True,
        "action": "burst",
        "pool": result.pool,
        "intent_id": result.intent_id,
        "wanted": result.wanted,
        "launched": result.launched,
        "replayed": result.replayed,
        "rolled_back": result.rolled_back,
        "sentence": result.sentence,
        "nodes": list(result.nodes),
        "price_per_node_hour": price,
        "attempts": [
            {
                "instance_type": a.instance_type,
                "zone": a.zone,
                "count": a.count,
                "launched": a.launched,
                "error": a.error,
            }
            for a in result.attempts
        ],
    }


def _say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def _err(line: str) -> None:
    sys.stderr.write(line + "\n")


def _print_json(value: dict[str, Any]) -> None:
    json.dump(value, sys.stdout, indent=2)
    sys.stdout.write("\n")


Command = Callable[[Plane, Caller, argparse.Namespace], Coroutine[Any, Any, int]]
COMMANDS: dict[str, Command] = {
    "burst": _burst,
    "drain": _drain,
    "resume": _resume,
    "terminate": _terminate,
    "cancel": _cancel,
}
