"""The sim cloud: instances that boot into real simulated nodes, served over SSH on loopback.

The embedded default provider (``tidectl demo``) and the one the lifecycle engine's tests use.
It keeps to the :class:`~tidectl.console.providers.base.Provider` contract the way EC2 does —
tags set at launch, idempotency by token, all-or-none counts, ``terminate`` idempotent and not
itself a confirmation — so the engine runs the same code paths against it as against AWS.

Each instance, once booted, is one node of its own in-process :class:`SimServer` (its own
folder under the provider's root, its own port and ed25519 host key, the provider's one
client key), on the provider's event loop. One server per instance, not per launch, so that
terminating, losing or reclaiming one instance closes exactly that node's SSH. The host key is
handed over in a :class:`SimEndpoint` for the engine to verify: nothing here asks anyone to
trust a key blindly.

A node that powers itself off (``sudo systemctl poweroff`` on its shell, as its watchdog
does when no control plane holds its lease) is terminated, as EC2 terminates an instance
launched with ``InstanceInitiatedShutdownBehavior=terminate``.

Faults: :attr:`SimProvider.faults` plans launch faults (no capacity, errors, lost answers,
boots that never finish); :meth:`SimProvider.vanish` and :meth:`SimProvider.interrupt` strike
an instance that is already there.
"""

from __future__ import annotations

import asyncio
import logging
import math
import secrets
import shutil
from collections import Counter
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final

from tidectl.console.providers.base import (
    Instance,
    InstanceState,
    InvalidRequestError,
    LaunchRequest,
    ProviderError,
    UnavailableError,
)
from tidectl.console.providers.sim_faults import SimCloudFaults
from tidectl.console.providers.sim_instances import SimEndpoint, SimInstance
from tidectl.console.sim import files
from tidectl.console.sim.defaults import DEFAULT_ADDRESS, DEFAULT_USER
from tidectl.console.sim.files import SimFilesError, SimLayout
from tidectl.console.sim.server import Plan, SimOptions, SimServer, SimServerError, prepare

__all__ = ["SIM_PRICES", "SPOT_DISCOUNT", "SimCloudFaults", "SimEndpoint", "SimProvider"]

#: On-demand USD per instance-hour of the sim's instance types. A sim node has 8 GPUs, at
#: about what an H100 costs by the hour.
SIM_PRICES: Final[Mapping[str, float]] = MappingProxyType({"sim.gpu8": 24.0})
#: Spot costs this share of on-demand unless a spot price is given (about GPU spot's usual).
SPOT_DISCOUNT: Final = 0.4
#: The number of digits in a node's number: ``<pool>-0001``.
_NODE_DIGITS: Final = 4

_log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class _Launch:
    """What a token launched: the request it came with and the instances it started."""

    request: LaunchRequest
    instance_ids: tuple[str, ...]


class SimProvider:
    """A cloud on this machine: each instance becomes a simulated node over real SSH.

    ``root`` holds the provider's client key and one folder per instance. Boot takes
    ``boot_delay_s`` (or the pool's entry in ``pool_boot_delays``); shutting down takes
    ``shutdown_delay_s``. Use it on one event loop, and ``await aclose()`` (or ``async
    with``) to stop every server it started.
    """

    def __init__(
        self,
        root: Path,
        *,
        boot_delay_s: float = 0.0,
        pool_boot_delays: Mapping[str, float] | None = None,
        shutdown_delay_s: float = 0.0,
        seed: int = 1000,
        user: str = DEFAULT_USER,
        python: str = "python3",
        interval_s: float = 1.0,
        prices: Mapping[str, float] | None = None,
        spot_prices: Mapping[str, float] | None = None,
        address: str = DEFAULT_ADDRESS,
    ) -> None:
        delays = {"boot_delay_s": boot_delay_s, "shutdown_delay_s": shutdown_delay_s}
        delays |= {f"pool_boot_delays[{pool!r}]": s for pool, s in (pool_boot_delays or {}).items()}
        for name, seconds in delays.items():
            if not (math.isfinite(seconds) and seconds >= 0):
                raise ValueError(f"the sim provider's {name} must be 0 s or more, got {seconds}")
        if not address.startswith("127."):
            raise ValueError(
                f"the sim provider serves on loopback only (127.0.0.0/8), not {address}"
            )
        self.root = root
        self.faults = SimCloudFaults()
        self._boot_delay_s = boot_delay_s
        self._pool_boot_delays = dict(pool_boot_delays or {})
        self._shutdown_delay_s = shutdown_delay_s
        self._seed = seed
        self._user = user
        self._python = python
        self._interval_s = interval_s
        self._prices = {**SIM_PRICES, **(prices or {})}
        self._spot_prices = dict(spot_prices or {})
        self._address = address
        self._instances: dict[str, SimInstance] = {}
        self._launches: dict[str, _Launch] = {}
        self._per_pool: Counter[str] = Counter()
        self._started = 0
        self._client_key: bytes | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False

    @property
    def client_key_path(self) -> Path:
        """The private key every sim node accepts (written on the first launch)."""
        return SimLayout(self.root).client_key

    @property
    def user(self) -> str:
        return self._user

    # -- the Provider protocol ----------------------------------------------------------------

    async def launch(self, request: LaunchRequest) -> list[Instance]:
        self._check_open()
        earlier = self._launches.get(request.token)
        if earlier is not None:
            if earlier.request != request:
                raise InvalidRequestError(
                    f"the launch token {request.token!r} was already used for a different "
                    f"request (pool {earlier.request.pool!r}, {earlier.request.count} x "
                    f"{earlier.request.instance_type}); a new request needs a new intent.",
                    code="IdempotentParameterMismatch",
                )
            return [self._instances[i].snapshot() for i in earlier.instance_ids if i in self]
        zone = request.zone or f"{request.region}-a"
        self._check_pool_name(request.pool)
        error = self.faults.launch_error(request.instance_type, zone)
        if error is not None:
            raise error
        self._ensure_client_key()
        # No await from here to the token's record: a second launch with the same token, on
        # the same loop, finds these instances instead of starting more.
        started = [self._start(request, zone) for _ in range(request.count)]
        self._launches[request.token] = _Launch(request, tuple(i.instance_id for i in started))
        lost = self.faults.take_lost_answer()
        if lost is not None:
            raise lost
        return [instance.snapshot() for instance in started]

    async def describe(self, tags: Mapping[str, str]) -> list[Instance]:
        self._check_open()
        if not tags:
            raise InvalidRequestError(
                "describe needs at least one tag to filter by (the cluster's ownership tag); "
                "an unfiltered list would hand over every instance."
            )
        wanted = dict(tags).items()
        return [
            instance.snapshot()
            for instance in self._instances.values()
            if wanted <= instance.request.tags.items()
        ]

    async def terminate(self, instance_ids: Sequence[str]) -> None:
        """Shut these instances down; returns once their SSH is closed (not yet terminated:
        describe shows ``shutting-down`` for ``shutdown_delay_s``). Unknown ids are fine."""
        self._check_open()
        targets = [self._instances[i] for i in dict.fromkeys(instance_ids) if i in self]
        for instance in targets:
            self._begin_shutdown(instance)
        await asyncio.gather(*(instance.unreachable.wait() for instance in targets))

    async def price_per_hour(self, instance_type: str, *, spot: bool) -> float | None:
        on_demand = self._prices.get(instance_type)
        if not spot:
            return on_demand
        if instance_type in self._spot_prices:
            return self._spot_prices[instance_type]
        return None if on_demand is None else round(on_demand * SPOT_DISCOUNT, 4)

    # -- reaching a node ------------------------------------------------------------------

    def endpoint(self, instance_id: str) -> SimEndpoint | None:
        """How to reach the instance over SSH, with its host key; None unless it is running
        (or the id is unknown)."""
        instance = self._instances.get(instance_id)
        return None if instance is None else instance.endpoint

    def __contains__(self, instance_id: object) -> bool:
        return instance_id in self._instances

    # -- faults that strike an instance already there -------------------------------------

    async def vanish(self, instance_id: str, *, forget: bool = False) -> None:
        """The instance is terminated without anyone asking (a host failure, another
        operator). ``forget``: describe stops listing it once terminated, as a cloud does
        after a while. Returns once its SSH is closed."""
        instance = self._known(instance_id)
        instance.forget = forget
        if instance.state is InstanceState.TERMINATED:
            self._drop_if_forgotten(instance)
            return
        self._begin_shutdown(instance)
        await instance.unreachable.wait()

    async def interrupt(self, instance_id: str, *, notice_s: float = 0.0) -> None:
        """The cloud reclaims this spot instance: marked interrupted at once, still running
        for ``notice_s`` (EC2 gives two minutes), then shut down and terminated. Returns at
        once with a notice, else once its SSH is closed. An instance already shutting down
        is left as it is."""
        instance = self._known(instance_id)
        if not instance.request.spot:
            raise ValueError(
                f"sim instance {instance_id} is on-demand; only spot instances are interrupted"
            )
        if not (math.isfinite(notice_s) and notice_s >= 0):
            raise ValueError(f"notice_s must be 0 s or more, got {notice_s}")
        if instance.state in (InstanceState.SHUTTING_DOWN, InstanceState.TERMINATED):
            return
        instance.interruption = True
        if notice_s > 0:
            self._spawn(self._reclaim_after(instance, notice_s))
            return
        self._begin_shutdown(instance)
        await instance.unreachable.wait()

    # -- closing --------------------------------------------------------------------------

    async def aclose(self) -> None:
        """Stop every server this provider started and every timer it runs. Instances keep
        the state they had; the provider refuses further calls."""
        if self._closed:
            return
        self._closed = True
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        servers = [i.server for i in self._instances.values() if i.server is not None]
        await asyncio.gather(*(server.close() for server in servers), return_exceptions=True)
        for instance in self._instances.values():
            instance.server = None
            instance.endpoint = None
            instance.unreachable.set()  # nobody waits for ever on a closed provider

    async def __aenter__(self) -> SimProvider:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # -- inside ---------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise UnavailableError(
                "the sim provider is closed (the demo or test that ran it has ended); start a "
                "new one."
            )

    def _known(self, instance_id: str) -> SimInstance:
        self._check_open()
        try:
            return self._instances[instance_id]
        except KeyError:
            raise ValueError(f"no sim instance {instance_id} in this provider") from None

    @staticmethod
    def _check_pool_name(pool: str) -> None:
        problem = files.names_problem([_node_name(pool, 1)])
        if problem is not None:
            raise InvalidRequestError(
                f"the sim cloud names nodes after their pool, and pool {pool!r} cannot name "
                "one: use a pool name of lower-case letters, digits and dashes that starts "
                "with a letter."
            )

    def _ensure_client_key(self) -> None:
        if self._client_key is not None:
            return
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            key = files.ensure_client_key(SimLayout(self.root))
        except (OSError, SimFilesError) as exc:
            raise ProviderError(
                f"the sim cloud cannot write its client key under {self.root}: {exc}; give it "
                "a folder it can write."
            ) from exc
        self._client_key = key.export_private_key("openssh")

    def _start(self, request: LaunchRequest, zone: str) -> SimInstance:
        self._per_pool[request.pool] += 1
        instance_id = f"i-{secrets.token_hex(9)[:17]}"  # EC2's shape; random, so never reused
        instance = SimInstance(
            instance_id=instance_id,
            node=_node_name(request.pool, self._per_pool[request.pool]),
            request=request,
            zone=zone,
            seed=self._seed + self._started,
            folder=self.root / instance_id,
            launched_at=datetime.now(UTC),
            address=self._address,
        )
        self._started += 1
        self._instances[instance_id] = instance
        if not self.faults.take_stall():
            delay = self._pool_boot_delays.get(request.pool, self._boot_delay_s)
            instance.boot = self._spawn(self._boot(instance, delay))
        return instance

    @staticmethod
    def _prepare(instance: SimInstance, options: SimOptions, client_key: bytes) -> Plan:
        instance.folder.mkdir(parents=True, exist_ok=True)
        # The provider's one client key: the engine logs in to every node with it.
        files.write_atomic(SimLayout(instance.folder).client_key, client_key, 0o600)
        return prepare(options)

    async def _boot(self, instance: SimInstance, delay_s: float) -> None:
        await asyncio.sleep(delay_s)
        assert self._client_key is not None  # written by the launch that started it
        options = SimOptions(
            out=instance.folder,
            nodes=1,
            base_port=0,
            seed=instance.seed,
            user=self._user,
            python=self._python,
            interval_s=self._interval_s,
            address=self._address,
            names=(instance.node,),
        )
        try:
            # Folder, keys and the bound port are blocking work (key generation, fsyncs):
            # off the event loop, which a 64-node burst would otherwise hold for ~0.3 s.
            plan = await _in_thread_closing_on_cancel(
                self._prepare, instance, options, self._client_key
            )
            server = SimServer(
                options, plan=plan, on_poweroff=lambda _node: self._powered_off(instance)
            )
            instance.server = server
            await server.start()
        except (OSError, SimServerError) as exc:
            # A real instance that fails to boot ends up terminated; so does this one.
            instance.boot = None  # this task is ending: nothing for the shutdown to cancel
            _log.warning("sim instance %s failed to boot: %s", instance.instance_id, exc)
            self._begin_shutdown(instance)
            return
        node = server.nodes[0]
        known_hosts = files.known_hosts_text([(node.name, self._address, node.port, node.host_key)])
        instance.endpoint = SimEndpoint(
            instance_id=instance.instance_id,
            node=node.name,
            address=self._address,
            port=node.port,
            user=self._user,
            host_key=files.public_key_text(node.host_key),
            known_hosts_line=known_hosts,
            client_key=self.client_key_path,
            folder=instance.folder,
        )
        instance.boot = None
        instance.move(InstanceState.RUNNING)

    def _powered_off(self, instance: SimInstance) -> None:
        """The node powered itself off (its watchdog, or ``sudo systemctl poweroff``): the
        instance ends, as an EC2 instance launched with ``InstanceInitiatedShutdownBehavior=
        terminate`` does."""
        _log.info("sim instance %s powered itself off: terminating it", instance.instance_id)
        self._begin_shutdown(instance)

    def _begin_shutdown(self, instance: SimInstance) -> None:
        """shutting-down now (synchronously: describe shows it at once), the rest in a task."""
        if instance.state in (InstanceState.SHUTTING_DOWN, InstanceState.TERMINATED):
            return
        instance.move(InstanceState.SHUTTING_DOWN)
        if instance.boot is not None:
            # Cancelled before it can run another step, so a boot never completes after this.
            instance.boot.cancel()
        self._spawn(self._shut_down(instance))

    async def _shut_down(self, instance: SimInstance) -> None:
        try:
            if instance.boot is not None:
                await asyncio.gather(instance.boot, return_exceptions=True)
                instance.boot = None
            instance.endpoint = None
            if instance.server is not None:
                await instance.server.close()  # ends its sessions and stops its listener
                instance.server = None
        finally:
            instance.unreachable.set()
        await asyncio.sleep(self._shutdown_delay_s)
        instance.move(InstanceState.TERMINATED)
        # Its disk goes with it, as an instance's root volume does.
        await asyncio.to_thread(shutil.rmtree, instance.folder, ignore_errors=True)
        self._drop_if_forgotten(instance)

    async def _reclaim_after(self, instance: SimInstance, notice_s: float) -> None:
        await asyncio.sleep(notice_s)
        self._begin_shutdown(instance)

    def _drop_if_forgotten(self, instance: SimInstance) -> None:
        if instance.forget and instance.state is InstanceState.TERMINATED:
            self._instances.pop(instance.instance_id, None)

    def _spawn(self, work: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            _log.error("sim provider task failed", exc_info=task.exception())


def _node_name(pool: str, number: int) -> str:
    return f"{pool}-{number:0{_NODE_DIGITS}d}"


async def _in_thread_closing_on_cancel(
    make: Callable[[SimInstance, SimOptions, bytes], Plan],
    instance: SimInstance,
    options: SimOptions,
    client_key: bytes,
) -> Plan:
    """``make(...)`` in a thread; if the boot is cancelled meanwhile (the instance was
    terminated while pending), the plan's bound socket is closed when the thread ends."""
    job = asyncio.ensure_future(asyncio.to_thread(make, instance, options, client_key))
    try:
        return await asyncio.shield(job)
    except asyncio.CancelledError:

        def close(done: asyncio.Future[Plan]) -> None:
            if not done.cancelled() and done.exception() is None:
                done.result().close_sockets()

        job.add_done_callback(close)
        raise
