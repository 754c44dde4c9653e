"""Build a ControlPlane from cluster.toml: its store, providers, scheduler, fleet and collector.

The embedded control plane (the demo, the console, a CLI call) is assembled here; the
[server] work runs the same assembly in a long-lived process. What cannot be built is refused
with :class:`AssemblyError` and a sentence before anything is opened.

Two parts of the simulation live inside the process that assembles them: the sim cloud's
instances (each an SSH server on this process's event loop) and the sim scheduler's queue.
A one-shot CLI call would lose them when it exits, so :func:`assemble` refuses them unless
``in_process_sim`` says the caller stays (the demo and the console do).
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import time
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from tidectl.console.audit import AuditLog, AuditUnavailable
from tidectl.console.audit import default_path as default_audit_path
from tidectl.console.collectors import Watcher, make_collector
from tidectl.console.config.model import ClusterConfig, PoolSpec
from tidectl.console.control.host_keys import HostKeyTrust
from tidectl.console.control.plane import RECONCILE_INTERVAL_S, ControlPlane
from tidectl.console.fleet import Fleet
from tidectl.console.lifecycle.bootstrap import Bootstrapper
from tidectl.console.lifecycle.engine import Engine
from tidectl.console.lifecycle.errors import StoreError
from tidectl.console.lifecycle.lock import StoreLock
from tidectl.console.lifecycle.store import Store, default_path
from tidectl.console.providers.aws import AwsProvider
from tidectl.console.providers.base import Provider, ProviderError
from tidectl.console.providers.sim import SimProvider
from tidectl.console.scheduler.base import Scheduler
from tidectl.console.scheduler.sim import SimScheduler
from tidectl.console.scheduler.slurm import SlurmScheduler
from tidectl.console.scheduler.workload import Workload

__all__ = ["AssemblyError", "assemble", "audit_path", "store_path"]

Closer = Callable[[], Coroutine[Any, Any, None]]


class AssemblyError(Exception):
    """The config asks for a control plane that cannot be built here; ``str()`` says why."""


def store_path(config: ClusterConfig, override: Path | None = None) -> Path:
    """Where the cluster's store is: ``override``, else ``[store] path``, else the default."""
    if override is not None:
        return override
    if config.store.path is not None:
        return config.store.path
    try:
        return default_path(config.name)
    except ValueError as error:
        raise AssemblyError(f"{error}; set [store] path in cluster.toml") from None


async def assemble(
    config: ClusterConfig,
    *,
    store: Path | None = None,
    collect: bool = True,
    watch_onprem: bool = True,
    in_process_sim: bool = False,
    workload: Workload | None = None,
    fleet: Fleet | None = None,
    interval_s: float = RECONCILE_INTERVAL_S,
    who: str = "a tidectl control plane",
    policies: bool = False,
    policy_dry_run: bool = False,
) -> ControlPlane:
    """The control plane for ``config``. ``collect``: watch the nodes' agents over SSH (which
    cloud nodes need to pass the admission gate); ``watch_onprem``: the configured machines
    too, not only cloud nodes. ``workload``: the sim scheduler's job stream (the demo's).
    ``fleet``: the fleet to fill (a console shows its own before the plane is up); by default
    a new one. ``who`` names this control plane in the store's lock (one per store: a second
    is refused with a sentence naming the first). ``policies``: run the policy loop (the
    long-running planes: serve, the console, the demo), as ``[policies]`` says;
    ``policy_dry_run``: it decides and reports, and does nothing."""
    _refuse_what_cannot_run(config, in_process_sim)
    closers: list[Closer] = []
    path = store_path(config, store)
    try:
        opened = Store.open(path)
    except (StoreError, OSError) as error:
        raise AssemblyError(f"the lifecycle store cannot be opened: {error}") from None
    lock = StoreLock(path, who)
    try:
        lock.acquire()
    except StoreError as error:
        opened.close()
        raise AssemblyError(str(error)) from None
    try:
        audit = AuditLog(audit_path(config, path))
    except AuditUnavailable as error:
        opened.close()
        lock.release()
        raise AssemblyError(
            f"{error}; nothing can be done without an audit trail (set [audit] path to a "
            "writable file)"
        ) from None
    closers.append(_closing(audit))
    try:
        providers = _providers(config.pools, closers)
        scheduler = _scheduler(config, workload)
        watched = config if watch_onprem else replace(config, nodes=())
        if fleet is None:
            fleet = Fleet(watched.nodes, config.health)
        background: list[Callable[[], Coroutine[Any, Any, None]]] = []
        bootstrapper: Bootstrapper | None = None
        collector: Watcher | None = None
        host_keys = HostKeyTrust(config)
        if collect:
            collector = make_collector(watched, fleet)
            # Its connector (the jump host, if any); a trusted node's link retries at once.
            host_keys = HostKeyTrust(config, collector.connector, trusted=collector.retry)
            bootstrapper = Bootstrapper(
                collector, _by_name(config.pools), providers, ssh_user=config.ssh.user
            )

            async def collecting() -> None:
                await collector.start()
                await asyncio.Event().wait()  # runs until the plane cancels it

            background.append(collecting)
            closers.append(collector.stop)
        if isinstance(scheduler, SimScheduler):
            background.append(scheduler.run)
        engine = Engine(
            opened,
            providers,
            scheduler,
            _by_name(config.pools),
            config.name,
            health=bootstrapper.health if bootstrapper else _not_watched,
            onprem=[spec.name for spec in config.nodes],
            linker=bootstrapper,
            data_classes={c.name: c for c in config.data_classes},
        )
    except BaseException:
        for close in reversed(closers):
            await close()
        opened.close()
        lock.release()
        raise
    return ControlPlane(
        config,
        opened,
        engine,
        lock=lock,
        fleet=fleet,
        scheduler=scheduler,
        background=background,
        closers=closers,
        interval_s=interval_s,
        audit=audit,
        host_keys=host_keys,
        policies=policies,
        policy_dry_run=policy_dry_run,
        collector=collector,
    )


def audit_path(config: ClusterConfig, store: Path) -> Path:
    """Where the audit log is: ``[audit] path``, else beside the store."""
    return config.audit.path or default_audit_path(store)


def _closing(audit: AuditLog) -> Closer:
    async def close() -> None:
        audit.close()

    return close


def _refuse_what_cannot_run(config: ClusterConfig, in_process_sim: bool) -> None:
    if in_process_sim:
        return
    if config.scheduler.kind == "sim":
        raise AssemblyError(
            "the sim scheduler lives inside the process that runs it, and this command "
            "exits when it is done, taking the queue with it; run it in tidectl serve (and "
            'name its socket in [server]), tidectl demo or tidectl console, or kind = "none"'
        )
    sim_pools = [p.name for p in config.pools if p.provider == "sim"]
    if sim_pools:
        raise AssemblyError(
            f"pool {', '.join(sim_pools)} is a sim pool: its instances live inside the "
            "process that launched them and would end when this command exits; burst it "
            "through tidectl serve (name its socket in [server]), or from tidectl demo or "
            "tidectl console (key b)"
        )


def _providers(pools: tuple[PoolSpec, ...], closers: list[Closer]) -> dict[str, Provider]:
    providers: dict[str, Provider] = {}
    sim: SimProvider | None = None
    aws: dict[str, AwsProvider] = {}
    for pool in pools:
        if pool.provider == "sim":
            if sim is None:
                root = Path(tempfile.mkdtemp(prefix="tidectl-sim-cloud-"))
                sim = SimProvider(root, pool_boot_delays={p.name: p.boot_delay_s for p in pools})
                closers.append(_closing_sim(sim, root))
            providers[pool.name] = sim
        elif pool.provider == "aws":
            try:
                providers[pool.name] = aws.setdefault(pool.region, AwsProvider(pool.region))
            except ProviderError as error:
                raise AssemblyError(f"pool {pool.name}: {error}") from None
        else:  # the config loader refuses these; a hand-built config might not
            raise AssemblyError(f"pool {pool.name}: no provider named {pool.provider!r}")
    return providers


def _closing_sim(sim: SimProvider, root: Path) -> Closer:
    async def close() -> None:
        await sim.aclose()
        await asyncio.to_thread(shutil.rmtree, root, True)

    return close


#: GPUs the sim scheduler gives each configured (on-prem) machine: the sim cluster's.
SIM_NODE_GPUS = 8


def _scheduler(config: ClusterConfig, workload: Workload | None) -> Scheduler | None:
    if config.scheduler.kind == "slurm":
        # Slurm's tools find the cluster as they do for a person (SLURM_CONF, /etc/slurm).
        return SlurmScheduler()
    if config.scheduler.kind == "sim":
        # The configured machines are the scheduler's own nodes; cloud nodes join it later.
        onprem = dict.fromkeys((spec.name for spec in config.nodes), SIM_NODE_GPUS)
        return SimScheduler(onprem, workload=workload, start=time.time())
    return None


def _by_name(pools: tuple[PoolSpec, ...]) -> Mapping[str, PoolSpec]:
    return {pool.name: pool for pool in pools}


def _not_watched(node: str) -> bool | None:
    """No collector: nothing hears the node, so it is never admitted."""
    return None
