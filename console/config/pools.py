"""``[[pools]]`` and ``[scheduler]``: where bursts go, and who runs the jobs.

    [scheduler]
    kind = "sim"                      # none | sim | slurm

    [[pools]]
    name = "h100-east"
    provider = "aws"                  # sim | aws
    region = "us-east-1"
    zones = ["us-east-1a", "us-east-1b"]
    instance_types = ["p5.48xlarge", "p5e.48xlarge"]
    gpus_per_node = 8
    max_nodes = 16
    image_id = "ami-0123456789abcdef0"
    slurm_nodes = "cloud[01-16]"      # optional: the Slurm CLOUD NodeNames it backs

Every value is checked here, with the line and a sentence, before anything can be launched.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Final

import asyncssh

from tidectl.console.config.errors import on_line
from tidectl.console.config.model import (
    BootstrapSettings,
    PoolPolicy,
    PoolSpec,
    SchedulerSettings,
)
from tidectl.console.config.readers import existing_file, login_name
from tidectl.console.config.table import Table
from tidectl.console.nodesets import NodeSetError, expand
from tidectl.console.scheduler.base import SchedulerError, check_node_name

PROVIDERS: Final = ("sim", "aws")
SCHEDULERS: Final = ("none", "sim", "slurm")
MAX_POOL_NODES: Final = 10_000
#: Pool names become node-name prefixes and tags: letters, digits, dashes.
_POOL_NAME: Final = re.compile(r"[a-z][a-z0-9-]{0,30}")
_AWS_IMAGE: Final = re.compile(r"ami-[0-9a-f]{8,17}")


def read_scheduler(table: Table | None) -> SchedulerSettings:
    if table is None:
        return SchedulerSettings()
    kind = table.string("kind", "none", example='kind = "sim"')
    assert kind is not None
    if kind not in SCHEDULERS:
        raise table.error(
            "kind",
            f'scheduler kind "{kind}" is not one tidectl knows (in [scheduler]); '
            f"use one of {', '.join(SCHEDULERS)}",
        )
    table.finish()
    return SchedulerSettings(kind=kind)


def read_pools(tables: list[Table]) -> tuple[PoolSpec, ...]:
    """The pools in file order, names unique."""
    pools: list[PoolSpec] = []
    for table in tables:
        pool = _read_pool(table)
        for index, earlier in enumerate(pools):
            if earlier.name == pool.name:
                first = table.file.line_of(("pools", index, "name"))
                raise table.error(
                    "name",
                    f'pool "{pool.name}" is defined twice (first in [[pools]] #{index + 1}'
                    f"{on_line(first)}); give each pool its own name",
                )
        _check_slurm_names_unique(table, pool, pools)
        pools.append(pool)
    return tuple(pools)


def _check_slurm_names_unique(table: Table, pool: PoolSpec, earlier: list[PoolSpec]) -> None:
    """A CLOUD node name backs one pool: Slurm's resume of it must say where to launch."""
    mine = set(pool.slurm_nodes)
    for other in earlier:
        shared = sorted(mine.intersection(other.slurm_nodes))
        if shared:
            raise table.error(
                "slurm_nodes",
                f'pool "{pool.name}" and pool "{other.name}" both name {", ".join(shared[:5])} '
                "in slurm_nodes; each Slurm CLOUD node belongs to one pool",
            )


def _read_pool(table: Table) -> PoolSpec:
    name = table.required_string("name", example='name = "h100-east"')
    if _POOL_NAME.fullmatch(name) is None:
        raise table.error(
            "name",
            f'pool name "{name}" must start with a letter and hold only lower-case letters, '
            "digits and dashes, at most 31 (it prefixes node names and tags)",
        )
    provider = table.required_string("provider", example='provider = "aws"')
    if provider not in PROVIDERS:
        raise table.error(
            "provider",
            f'provider "{provider}" is not one tidectl knows (in pool "{name}"); '
            f"use one of {', '.join(PROVIDERS)}",
        )
    default_region = "sim-local" if provider == "sim" else None
    region = table.string("region", default_region, example='region = "us-east-1"')
    if region is None:
        raise table.error(
            None, f'pool "{name}" is missing "region"; add a line like region = "us-east-1"'
        )
    types = _strings(table, "instance_types", "sim.gpu8" if provider == "sim" else None)
    if not types:
        raise table.error(
            None,
            f'pool "{name}" needs instance_types, in order of preference, like '
            'instance_types = ["p5.48xlarge"]',
        )
    image_id = table.string("image_id", None, example='image_id = "ami-0123456789abcdef0"')
    if provider == "aws":
        if image_id is None:
            raise table.error(
                None,
                f'pool "{name}" launches on aws and needs image_id, the AMI its nodes boot, '
                'like image_id = "ami-0123456789abcdef0"',
            )
        if _AWS_IMAGE.fullmatch(image_id) is None:
            raise table.error(
                "image_id",
                f'"{image_id}" is not an AMI id (in pool "{name}"); they look like '
                "ami-0123456789abcdef0",
            )
    gpus = table.integer("gpus_per_node", 8, 0, 64)
    slurm_nodes = _slurm_nodes(table, name)
    max_nodes = table.integer("max_nodes", len(slurm_nodes) or None, 1, MAX_POOL_NODES)
    if max_nodes is None:
        raise table.error(
            None,
            f'pool "{name}" needs max_nodes, the most nodes it may ever run, like max_nodes = 16',
        )
    price = table.number("price_per_hour", math.nan, at_least=0.0)  # NaN: not given
    bootstrap = _read_bootstrap(table.table("bootstrap"))
    policy = _read_policy(table.table("policy"), max_nodes)
    pool = PoolSpec(
        name=name,
        provider=provider,
        region=region,
        site=table.string("site", region, example='site = "aws-east"') or region,
        instance_types=tuple(types),
        zones=tuple(_strings(table, "zones", None) or ()),
        gpus_per_node=gpus if gpus is not None else 8,
        max_nodes=max_nodes,
        price_per_hour=None if math.isnan(price) else price,
        spot=table.boolean("spot", False),
        image_id=image_id,
        subnet_id=table.string("subnet_id", None, example='subnet_id = "subnet-0abc"'),
        security_group_ids=tuple(_strings(table, "security_group_ids", None) or ()),
        capacity_backoff_s=table.number("capacity_backoff_s", 600.0, at_least=0.0),
        all_or_nothing=table.boolean("all_or_nothing", False),
        boot_delay_s=table.number("boot_delay_s", 5.0, at_least=0.0, at_most=3600.0),
        bootstrap=bootstrap,
        policy=policy,
        slurm_nodes=slurm_nodes,
        data_class=table.string("data_class", None, example='data_class = "pii"'),
    )
    table.finish()
    return pool


def _slurm_nodes(table: Table, pool: str) -> tuple[str, ...]:
    """The pool's Slurm CLOUD node names, from a node set like ``"cloud[01-16]"``."""
    pattern = table.string("slurm_nodes", None, example='slurm_nodes = "cloud[01-16]"')
    if pattern is None:
        return ()
    try:
        names = expand(pattern)
    except NodeSetError as error:
        raise table.error(
            "slurm_nodes", f'slurm_nodes "{pattern}" (in pool "{pool}") is not a node set: {error}'
        ) from None
    if len(names) > MAX_POOL_NODES:
        raise table.error(
            "slurm_nodes", f'slurm_nodes (in pool "{pool}") names over {MAX_POOL_NODES} nodes'
        )
    for name in names:
        try:
            check_node_name(name)
        except SchedulerError as error:
            raise table.error("slurm_nodes", f'in pool "{pool}": {error}') from None
    return tuple(names)


def _join_command(table: Table) -> str | None:
    command = table.string(
        "join_command", None, example='join_command = "sudo systemctl start slurmd"'
    )
    if command is None:
        return None
    if not command.strip():
        raise table.error("join_command", "join_command is empty; remove it or give a command")
    try:
        command.format(node="n")
    except (KeyError, IndexError, ValueError) as error:
        raise table.error(
            "join_command",
            f"join_command {command!r} has a placeholder other than {{node}} ({error}); "
            "write a literal brace as {{ or }}",
        ) from None
    return command


def _strings(table: Table, key: str, default: str | None) -> list[str] | None:
    items = table.list_of(key, str)
    if items is None:
        return [default] if default is not None else None
    for index, item in enumerate(items):
        if not item.strip():
            raise table.file.error(
                (*table.where, key, index), f"{key} has an empty item {index + 1}; remove it"
            )
    if len(set(items)) != len(items):
        raise table.error(key, f"{key} names an entry twice; list each once")
    return items


def _read_bootstrap(table: Table | None) -> BootstrapSettings:
    if table is None:
        return BootstrapSettings()
    port = table.integer("ssh_port", 22, 1, 65535)
    identity_text = table.string("identity_file", None, example='identity_file = "keys/cloud"')
    ca_text = table.string("host_ca", None, example='host_ca = "/etc/ssh/host_ca.pub"')
    settings = BootstrapSettings(
        user=login_name(table, "user", required=False),
        boot_timeout_s=table.number("boot_timeout_s", 900.0, above=0.0),
        join_timeout_s=table.number("join_timeout_s", 300.0, above=0.0),
        join_command=_join_command(table),
        ssh_port=port if port is not None else 22,
        identity_file=None
        if identity_text is None
        else existing_file(
            table,
            "identity_file",
            identity_text,
            "point it at the private key the pool's image accepts, or remove it to use "
            "[ssh] identity_file",
        ),
        host_ca=None if ca_text is None else _host_ca(table, ca_text),
    )
    table.finish()
    return settings


def _read_policy(table: Table | None, max_nodes: int) -> PoolPolicy:
    """``[pools.policy]``; a duration of 0 turns its rule off."""
    if table is None:
        return PoolPolicy()
    defaults = PoolPolicy()

    def seconds(key: str, default: float | None) -> float | None:
        value = table.number(key, default if default is not None else 0.0, at_least=0.0)
        return value or None

    min_nodes = table.integer("min_nodes", 0, 0, max_nodes)
    policy = PoolPolicy(
        min_nodes=min_nodes or 0,
        idle_drain_after_s=seconds("idle_drain_after_s", defaults.idle_drain_after_s),
        idle_terminate_after_s=table.number(
            "idle_terminate_after_s", defaults.idle_terminate_after_s, at_least=0.0
        ),
        idle_gpu_util_below=table.number(
            "idle_gpu_util_below", defaults.idle_gpu_util_below, at_least=0.0, at_most=100.0
        ),
        burst_on_pressure=table.boolean("burst_on_pressure", False),
        pending_for_s=table.number("pending_for_s", defaults.pending_for_s, at_least=0.0),
        cooldown_s=table.number("cooldown_s", defaults.cooldown_s, at_least=0.0),
        max_lifetime_s=seconds("max_lifetime_s", None),
        watchdog_lease_s=seconds("watchdog_lease_s", None),
        watchdog_poweroff=table.string(
            "watchdog_poweroff",
            defaults.watchdog_poweroff,
            example='watchdog_poweroff = "sudo systemctl poweroff"',
        )
        or defaults.watchdog_poweroff,
    )
    table.finish()
    return policy


def _host_ca(table: Table, text: str) -> Path:
    """The CA's public key file, which must hold one key (checked now, not at first burst)."""
    path = existing_file(
        table,
        "host_ca",
        text,
        "point it at the public key of the CA that signs the pool's host certificates "
        "(the .pub that ssh-keygen -s was given the private half of)",
    )
    try:
        asyncssh.read_public_key(str(path))
    except (OSError, ValueError, asyncssh.KeyImportError) as error:
        raise table.error(
            "host_ca",
            f"host_ca {path} is not an SSH public key ({error}); point it at the CA's .pub",
        ) from None
    return path
