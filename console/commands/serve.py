"""``tidectl serve -c cluster.toml``: the control plane as a long-running service.

It assembles the ControlPlane (collector, reconcile loop, scheduler, store) once, takes the
store's lock (a second service on the same store is refused, naming the first one's pid),
and listens on a Unix socket for front ends (``--server PATH`` on the CLI). Optionally it
serves Prometheus metrics (``--metrics 127.0.0.1:9464``). SIGTERM or SIGINT: it stops
accepting, lets the reconcile pass under way finish, closes the store and removes the socket;
a restart carries out any intent left pending.

It prints one line when it is ready (``tidectl serve: listening on PATH``), so a supervisor
or a test can wait for it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from pathlib import Path

from tidectl.console.commands.run import UsageError
from tidectl.console.config.loader import load_config
from tidectl.console.control.assemble import AssemblyError, assemble, store_path

__all__ = ["add_parser", "default_socket", "main"]


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "serve",
        help="run the control plane as a service front ends attach to",
        description="Run the control plane (collector, reconcile loop, scheduler, store) as "
        "one long-running process listening on a Unix socket; tidectl commands attach to it "
        "with --server PATH.",
    )
    parser.add_argument("-c", "--config", required=True, help="cluster.toml")
    parser.add_argument("--store", type=Path, metavar="PATH", help="the store file")
    parser.add_argument(
        "--socket",
        type=Path,
        metavar="PATH",
        help="where to listen (default: [server] socket, else beside the store: CLUSTER.sock)",
    )
    parser.add_argument(
        "--group", help="the socket's group: its members may act (the file is mode 0660)"
    )
    parser.add_argument(
        "--metrics", metavar="HOST:PORT", help="serve Prometheus metrics there, e.g. 127.0.0.1:9464"
    )
    parser.add_argument(
        "--policy-dry-run",
        action="store_true",
        help="run the policy loop without acting: print what it would do ([policies], "
        "docs/policies.md)",
    )


def _print_lines(lines: list[str]) -> None:
    for line in lines:
        print(f"tidectl serve: {line}", flush=True)


def default_socket(store: Path, cluster: str) -> Path:
    return store.with_name(f"{cluster}.sock")


def main(args: argparse.Namespace) -> int:
    return asyncio.run(_serve(args))


async def _serve(args: argparse.Namespace) -> int:
    # Imported here: the service pulls in asyncssh, Prometheus and the sim cloud.
    from tidectl.console.metrics import FleetCollector
    from tidectl.console.metrics_server import MetricsAddressError, MetricsServer
    from tidectl.console.server.service import Service, ServiceError

    config = load_config(args.config)
    try:
        store = store_path(config, args.store)
        plane = await assemble(
            config,
            store=store,
            in_process_sim=True,
            who="tidectl serve",
            interval_s=config.server.reconcile_interval_s,
            policies=True,
            policy_dry_run=args.policy_dry_run,
        )
    except AssemblyError as error:
        raise UsageError(str(error)) from None
    socket_path = args.socket or config.server.socket or default_socket(store, config.name)
    service = Service(plane, socket_path, group=args.group or config.server.group)
    metrics_address = args.metrics or config.server.metrics
    metrics = None
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        async with plane:
            if args.policy_dry_run and plane.policy is not None:
                plane.policy.listeners.append(_print_lines)
            await service.start()
            if metrics_address:
                metrics = MetricsServer(FleetCollector(plane.fleet, plane), metrics_address)
                await metrics.start()
            said = f"tidectl serve: listening on {socket_path}"
            if metrics is not None:
                said += f", metrics at {metrics.url}"
            print(said, flush=True)
            await stop.wait()
            print("tidectl serve: stopping", flush=True)
            await service.aclose()
            if metrics is not None:
                await metrics.aclose()
    except (ServiceError, MetricsAddressError) as error:
        with contextlib.suppress(Exception):
            await service.aclose()
        sys.stderr.write(f"tidectl serve: {error}\n")
        return 2
    return 0
