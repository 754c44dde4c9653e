"""What a ``cluster.toml`` means, once loaded and checked: plain frozen values.

The loader (``tidectl.console.config.loader``) builds these from the file and refuses anything
it cannot make sense of; everything downstream can trust them.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from tidectl.console.thresholds import HealthThresholds


@dataclass(frozen=True, slots=True)
class SshSettings:
    user: str
    identity_file: Path | None  # None: the user's default keys / ssh-agent
    known_hosts: Path  # always verified; never None (no trust-on-first-use in scripts)
    jump_host: str | None = None  # "[user@]host[:port]", verified against known_hosts too
    port: int = 22
    connect_timeout_s: float = 10.0
    login_timeout_s: float = 10.0
    keepalive_interval_s: float = 5.0
    keepalive_count_max: int = 3
    fanout: int = 64  # connects in flight at once
    reconnect_min_s: float = 1.0
    reconnect_max_s: float = 60.0


@dataclass(frozen=True, slots=True)
class AgentSettings:
    interval_s: float = 1.0
    python: str = "python3"  # the interpreter to look for on nodes
    remote_dir: str = ".cache/tidectl"  # relative to the login directory
    probes: str = "all"


@dataclass(frozen=True, slots=True)
class NodeSpec:
    """One node, expanded from a ``[[nodes]]`` node set, or a cloud node a provider started."""

    name: str
    address: str
    port: int
    site: str
    user: str
    labels: dict[str, str] = field(default_factory=dict)
    #: known_hosts text for this node alone (a cloud node's key, handed over by its provider):
    #: checked instead of ``[ssh] known_hosts``. None: the cluster's file.
    known_hosts: str | None = None
    #: The private key this node accepts. None: ``[ssh] identity_file``.
    identity_file: Path | None = None


@dataclass(frozen=True, slots=True)
class Site:
    name: str
    description: str = ""


@dataclass(frozen=True, slots=True)
class BootstrapSettings:
    """How a new cloud node is brought in: who to log in as, and how long each step may take."""

    user: str | None = None  # None: [ssh] user
    boot_timeout_s: float = 900.0  # launch accepted → the instance runs and answers SSH
    join_timeout_s: float = 300.0  # healthy → the scheduler has the node
    #: Run on the node over SSH when it joins (``{node}``: its name), e.g. starting slurmd for
    #: its Slurm CLOUD NodeName. With Slurm power saving, once Slurm is powering the node up.
    #: Must be safe to run twice (a restarted control plane runs it again). None: nothing.
    join_command: str | None = None
    #: The port the pool's images run sshd on.
    ssh_port: int = 22
    #: The private key the pool's images accept. None: ``[ssh] identity_file``.
    identity_file: Path | None = None
    #: A site SSH certificate authority's public key: a host certificate it signed proves a
    #: node's identity, as the host keys its console prints do (either one suffices).
    host_ca: Path | None = None


#: What a node's watchdog runs to power it off: cloud images let their login user do it.
DEFAULT_WATCHDOG_POWEROFF = "sudo systemctl poweroff"


@dataclass(frozen=True, slots=True)
class PoolPolicy:
    """``[pools.policy]``: the automation that keeps a pool's size honest (``console/policy``).

    Idle drain is on by default — the burst nobody drained is the failure tidectl exists to
    prevent —; bursting on queue pressure and a maximum lifetime are opt-in.
    """

    #: Nodes the pool keeps even when idle (idle drain never takes it below).
    min_nodes: int = 0
    #: Drain a cloud node with no jobs and every GPU below ``idle_gpu_util_below`` percent for
    #: this long; None: never.
    idle_drain_after_s: float | None = 1800.0
    #: Terminate a node the idle policy drained once it has stayed empty this long.
    idle_terminate_after_s: float = 600.0
    idle_gpu_util_below: float = 5.0
    #: Burst when GPUs have waited in the scheduler longer than ``pending_for_s`` and exceed
    #: the capacity coming (up to ``max_nodes`` and the budgets).
    burst_on_pressure: bool = False
    pending_for_s: float = 300.0
    #: After a pressure burst, no other for this long (the queue must show it still waits).
    cooldown_s: float = 600.0
    #: Drain (then terminate) a node this long after it was launched; None: no limit.
    max_lifetime_s: float | None = None
    #: The node-side watchdog's lease: a cloud node whose agent no control plane has streamed
    #: for this long powers itself off, if idle (``tidectl/agents/watchdog.py``); None: no
    #: watchdog.
    watchdog_lease_s: float | None = None
    #: The shell command the watchdog powers its node off with.
    watchdog_poweroff: str = DEFAULT_WATCHDOG_POWEROFF


@dataclass(frozen=True, slots=True)
class PoolSpec:
    """A cloud pool: where bursts go, on what, at what price, up to how many nodes."""

    name: str
    provider: str  # "sim" | "aws"
    region: str
    site: str
    instance_types: tuple[str, ...]  # in order of preference: the next on a capacity error
    zones: tuple[str, ...]  # () : any zone of the region
    gpus_per_node: int
    max_nodes: int
    price_per_hour: float | None  # None: the provider's estimate
    spot: bool = False
    image_id: str | None = None
    subnet_id: str | None = None
    security_group_ids: tuple[str, ...] = ()
    #: A type (or zone) that answered "no capacity" is not tried again for this long.
    capacity_backoff_s: float = 600.0
    #: True: a burst that cannot get every node gets none (and releases what it got).
    all_or_nothing: bool = False
    boot_delay_s: float = 5.0  # sim provider only: how long its instances take to boot
    #: The Slurm CLOUD node names (NodeName in slurm.conf) this pool's instances become, in
    #: order: bursts take the first free ones, and ``tidectl slurm resume`` names them.
    #: Empty: nodes are named ``POOL-INTENT-N`` (no Slurm power saving).
    slurm_nodes: tuple[str, ...] = ()
    #: The data class a burst of this pool carries unless it names one (``[[data_classes]]``).
    data_class: str | None = None
    bootstrap: BootstrapSettings = field(default_factory=BootstrapSettings)
    policy: PoolPolicy = field(default_factory=PoolPolicy)


@dataclass(frozen=True, slots=True)
class SchedulerSettings:
    kind: str = "none"  # "none" | "sim" | "slurm"


@dataclass(frozen=True, slots=True)
class ServerSettings:
    socket: Path | None = None  # None: commands act from their own process
    group: str | None = None
    metrics: str | None = None  # "HOST:PORT" the service serves Prometheus metrics on
    #: Seconds between the service's reconcile passes when nothing asks for one sooner.
    reconcile_interval_s: float = 5.0


@dataclass(frozen=True, slots=True)
class CollectorSettings:
    """``[collector]``: 0 workers collects in the console's process; N, in N processes."""

    workers: int = 0


@dataclass(frozen=True, slots=True)
class StoreSettings:
    path: Path | None = None  # None: per cluster name, under the user's data directory


@dataclass(frozen=True, slots=True)
class ConsoleSettings:
    #: Binding id → keys ("fleet.fold" → "z"; several keys comma-separated: "z,ctrl+f").
    keymap: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class AuditSettings:
    """``[audit]``: where the audit log is. None: beside the store (``STORE.audit.jsonl``)."""

    path: Path | None = None


class BudgetPeriod(enum.StrEnum):
    DAY = "day"  # the UTC calendar day
    MONTH = "month"  # the UTC calendar month


@dataclass(frozen=True, slots=True)
class Budget:
    """``[[budgets]]``: the most a pool (or, with ``pool`` None, the whole cluster) may spend
    in a UTC day or month. Hard: a burst that would pass it is refused before any provider
    call, and reaching it drains the pool's nodes (jobs finish first). ``warn_at``: the
    fraction of the limit at which the UIs warn."""

    limit: float  # US dollars
    period: BudgetPeriod = BudgetPeriod.DAY
    pool: str | None = None
    warn_at: float = 0.8

    @property
    def scope(self) -> str:
        return f"pool {self.pool}" if self.pool is not None else "the cluster"


@dataclass(frozen=True, slots=True)
class PolicySettings:
    """``[policies]``: the policy loop (``console/policy``)."""

    enabled: bool = True
    interval_s: float = 30.0


@dataclass(frozen=True, slots=True)
class DataClass:
    """``[[data_classes]]``: a kind of data, and the regions it may be processed in (cloud
    regions, like ``eu-west-1``; ``*``: anywhere)."""

    name: str
    regions: tuple[str, ...]

    def allows(self, region: str) -> bool:
        return "*" in self.regions or region in self.regions


class Role(enum.IntEnum):
    """What an identity may do, each role all the one below it may. Ordered: max() is the
    strongest."""

    VIEWER = 1  # sees everything, changes nothing
    OPERATOR = 2  # bursts, drains, resumes, cancels a burst
    ADMIN = 3  # terminates, forces, overrides

    @property
    def word(self) -> str:
        return self.name.lower()


@dataclass(frozen=True, slots=True)
class RolesSettings:
    """``[roles]``: who has which role, by login name or ``@group``. None in ClusterConfig:
    the table is absent (the file's owner and root are admins; nobody else has a role)."""

    members: Mapping[Role, tuple[str, ...]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ClusterConfig:
    name: str
    path: Path  # the file it came from; relative paths in it are relative to its folder
    ssh: SshSettings
    agent: AgentSettings
    sites: tuple[Site, ...]
    nodes: tuple[NodeSpec, ...]  # in file order; names unique
    health: HealthThresholds
    console: ConsoleSettings = field(default_factory=ConsoleSettings)
    pools: tuple[PoolSpec, ...] = ()
    scheduler: SchedulerSettings = field(default_factory=SchedulerSettings)
    store: StoreSettings = field(default_factory=StoreSettings)
    server: ServerSettings = field(default_factory=ServerSettings)
    roles: RolesSettings | None = None
    #: Empty: no data-sovereignty rules (a burst may go to any pool's region).
    data_classes: tuple[DataClass, ...] = ()
    audit: AuditSettings = field(default_factory=AuditSettings)
    budgets: tuple[Budget, ...] = ()
    policies: PolicySettings = field(default_factory=PolicySettings)
    collector: CollectorSettings = field(default_factory=CollectorSettings)

    def node(self, name: str) -> NodeSpec:
        for spec in self.nodes:
            if spec.name == name:
                return spec
        raise KeyError(name)
