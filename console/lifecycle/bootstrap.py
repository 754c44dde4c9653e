"""Bootstrapping a cloud node: from a running instance to an agent the console hears.

The engine moves a node to ``bootstrapping`` once its instance runs; then it ``link``s it
here. The node's provider hands over how to reach it and the host key that proves it is it;
the node becomes a ``NodeSpec`` that carries that key (and the client key the node accepts),
and the collector connects, verifies the key, deploys the agent and streams it like any other
node's. ``health`` is the engine's admission gate over what the agent says.

Where the host key comes from depends on the provider: the sim cloud hands it over with the
address (``HandsOverHostKeys``); EC2 shows the instance's console, where cloud-init prints
the keys (``PrintsConsoleOutput``, checked by ``transport/printed_keys.py``), and a pool may
name a site CA whose host certificates vouch instead. A provider that offers neither gets
its nodes refused, with a sentence: a key trusted on first use could be anyone's, and tidectl
never trusts one. Until something vouches, linking is refused and asked again each pass; the
pool's ``boot_timeout_s`` ends the wait (the engine terminates the instance).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Final

import asyncssh

from tidectl.console.collectors import Watcher
from tidectl.console.config.model import NodeSpec, PoolSpec
from tidectl.console.fleet import DuplicateNodeError
from tidectl.console.lifecycle.admission import Admission, admit
from tidectl.console.providers.base import (
    HandsOverHostKeys,
    PrintsConsoleOutput,
    Provider,
    ProviderError,
)
from tidectl.console.transport.deploy import watchdog_command
from tidectl.console.transport.printed_keys import (
    HostKeysNotYet,
    HostKeysRefused,
    parse_console,
    trusted_lines,
)

__all__ = ["INSTANCE_LABEL", "POOL_LABEL", "Bootstrapper"]

#: The labels every cloud node carries: its pool (the console groups by it) and its instance.
POOL_LABEL = "pool"
INSTANCE_LABEL = "instance"
#: How often an instance's console is read while nothing on it vouches for a key yet: EC2
#: refreshes console output every few minutes, and each read is an API call.
CONSOLE_POLL_S: Final = 15.0


@dataclass(frozen=True, slots=True)
class _Linked:
    pool: PoolSpec
    instance_id: str


class Bootstrapper:
    """Links running cloud instances into the collector, and judges them for admission.

    ``pools`` and ``providers`` are keyed by pool name, as the engine's are. ``base_labels``
    go on every cloud node's spec, under the pool and instance labels.
    """

    def __init__(
        self,
        collector: Watcher,
        pools: Mapping[str, PoolSpec],
        providers: Mapping[str, Provider],
        *,
        ssh_user: str = "root",
        base_labels: Mapping[str, str] = MappingProxyType({}),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``ssh_user``: the login of a pool's nodes whose ``bootstrap.user`` is not set (the
        cluster's ``[ssh] user``)."""
        self._collector = collector
        self._pools = pools
        self._providers = providers
        self._ssh_user = ssh_user
        self._base_labels = dict(base_labels)
        self._clock = clock
        self._linked: dict[str, _Linked] = {}
        #: Node → (when its console may be read again, why it was not linked last time).
        self._console_waits: dict[str, tuple[float, str]] = {}
        self._host_cas: dict[Path, asyncssh.SSHKey] = {}

    async def link(self, node: str, pool: str, instance_id: str) -> str | None:
        """Start watching ``node`` (instance ``instance_id`` of ``pool``): the collector
        connects to it, verifies its handed-over host key and streams its agent.

        Returns None once linked (or when it already was), else a sentence saying why not.
        """
        known = self._linked.get(node)
        if known is not None:
            if known.instance_id == instance_id:
                return None
            return (
                f"cloud node {node} is already linked to instance {known.instance_id}, not "
                f"{instance_id}; unlink it first"
            )
        spec = await self._spec(node, pool, instance_id)
        if isinstance(spec, str):
            return spec
        try:
            self._collector.add_node(spec)
        except DuplicateNodeError:
            return (
                f"cloud node {node}: the console already watches a node of that name (one "
                "of cluster.toml's?), and two nodes cannot share a name; terminate the "
                "instance, or rename the other node"
            )
        self._linked[node] = _Linked(self._pools[pool], instance_id)
        return None

    async def unlink(self, node: str) -> None:
        """Stop watching ``node``: its link stops, its SSH connection is closed and it leaves
        the fleet before this returns. A node not linked here is left alone."""
        self._console_waits.pop(node, None)
        if self._linked.pop(node, None) is None:
            return
        await self._collector.remove_node(node)

    def linked(self, node: str) -> bool:
        return node in self._linked

    def linked_names(self) -> list[str]:
        return list(self._linked)

    async def run(self, node: str, command: str, timeout_s: float) -> str | None:
        """Run ``command`` on linked ``node`` over its SSH connection; None when it exited 0,
        else a sentence with its status and the end of its stderr."""
        if node not in self._linked:
            return f"cloud node {node} is not linked: nothing can run on it yet"
        result = await self._collector.run_on(node, command, timeout_s)
        if result.error is not None:
            return f"{command!r} could not run on {node}: {result.error}"
        if result.exit_status != 0:
            said = (result.stderr.strip() or result.stdout.strip())[-300:]
            return f"{command!r} exited {result.exit_status} on {node}" + (
                f": {said}" if said else ""
            )
        return None

    def watchdog_command(self, node: str, pool: PoolSpec) -> str | None:
        """The command that starts ``node``'s watchdog over the agent the collector deploys,
        with ``pool``'s policy; None when the pool has no watchdog or no agent is deployed."""
        package, lease_s = self._collector.package, pool.policy.watchdog_lease_s
        if package is None or lease_s is None:
            return None
        return watchdog_command(
            package,
            self._collector.config.agent,
            node=node,
            lease_s=lease_s,
            poweroff=pool.policy.watchdog_poweroff,
            idle_gpu_util_below=pool.policy.idle_gpu_util_below,
        )

    def admission(self, node: str) -> Admission:
        """The admission gate's verdict on ``node``, with its sentence."""
        known = self._linked.get(node)
        if known is None:
            return Admission(
                None,
                f"cloud node {node} is not linked, so the console does not watch it; link it "
                "(it is linked once its instance runs)",
            )
        return admit(self._collector.fleet, node, known.pool.gpus_per_node)

    def health(self, node: str) -> bool | None:
        """The engine's admission gate: True admit, False refused, None not heard from yet."""
        return self.admission(node).verdict

    async def _spec(self, node: str, pool_name: str, instance_id: str) -> NodeSpec | str:
        """The node's spec from what its provider hands over, or a sentence why not."""
        pool = self._pools.get(pool_name)
        if pool is None:
            known = ", ".join(sorted(self._pools)) or "none"
            return (
                f"cloud node {node}: there is no pool named {pool_name!r} (pools: {known}); "
                "its instance cannot be reached without one: terminate it"
            )
        provider = self._providers.get(pool_name)
        if provider is None:
            return (
                f"cloud node {node}: pool {pool_name} has no provider set up, so nothing "
                "can say how to reach its instance; check the pool's configuration"
            )
        labels = {**self._base_labels, POOL_LABEL: pool.name, INSTANCE_LABEL: instance_id}
        if isinstance(provider, HandsOverHostKeys):
            return self._handed_over(node, pool, provider, instance_id, labels)
        if isinstance(provider, PrintsConsoleOutput):
            return await self._vouched(node, pool, provider, instance_id, labels)
        return (
            f"cloud node {node}: its provider ({pool.provider}) neither hands over a host key "
            "nor shows the instance's console, and tidectl never trusts an unverified one; "
            "terminate the instance"
        )

    def _handed_over(
        self,
        node: str,
        pool: PoolSpec,
        provider: HandsOverHostKeys,
        instance_id: str,
        labels: dict[str, str],
    ) -> NodeSpec | str:
        endpoint = provider.endpoint(instance_id)
        if endpoint is None:
            return (
                f"cloud node {node}: instance {instance_id} is not running (its provider has "
                "no address or host key for it yet); wait for it to run"
            )
        if not endpoint.known_hosts_line.strip():
            return (
                f"cloud node {node}: the provider ({pool.provider}) handed over an empty host "
                f"key for instance {instance_id}, and tidectl never trusts an unverified one; "
                "terminate the instance"
            )
        return NodeSpec(
            name=node,
            address=endpoint.address,
            port=endpoint.port,
            site=pool.site,
            user=endpoint.user,
            labels=labels,
            known_hosts=endpoint.known_hosts_line,
            identity_file=endpoint.client_key,
        )

    async def _vouched(
        self,
        node: str,
        pool: PoolSpec,
        provider: PrintsConsoleOutput,
        instance_id: str,
        labels: dict[str, str],
    ) -> NodeSpec | str:
        """The spec of a node whose key its console (or the site's CA) vouches for; while
        nothing does, the last sentence why, reading the console at most every
        :data:`CONSOLE_POLL_S`."""
        now = self._clock()
        waiting = self._console_waits.get(node)
        if waiting is not None and now < waiting[0]:
            return waiting[1]
        found = await self._known_hosts(node, pool, provider, instance_id)
        if isinstance(found, str):
            self._console_waits[node] = (now + CONSOLE_POLL_S, found)
            return found
        self._console_waits.pop(node, None)
        address, known_hosts = found
        return NodeSpec(
            name=node,
            address=address,
            port=pool.bootstrap.ssh_port,
            site=pool.site,
            user=pool.bootstrap.user or self._ssh_user,
            labels=labels,
            known_hosts=known_hosts,
            identity_file=pool.bootstrap.identity_file,
        )

    async def _known_hosts(
        self, node: str, pool: PoolSpec, provider: PrintsConsoleOutput, instance_id: str
    ) -> tuple[str, str] | str:
        """The instance's address and the known_hosts text that vouches for it, or why not."""
        host_ca = self._host_ca(pool)
        if isinstance(host_ca, str):
            return f"cloud node {node}: {host_ca}"
        try:
            console = await provider.console_output(instance_id)
        except ProviderError as error:
            return f"cloud node {node}: its console could not be read ({error}); will try again"
        if console is None or console.address is None:
            return (
                f"cloud node {node}: instance {instance_id} is not running (or has no address "
                "yet); wait for it to run"
            )
        try:
            text = await trusted_lines(
                instance_id,
                console.address,
                pool.bootstrap.ssh_port,
                parse_console(console.text),
                host_ca=host_ca,
            )
        except HostKeysNotYet as why:
            return f"cloud node {node}: {why}; will look again, until boot_timeout_s"
        except HostKeysRefused as why:
            return f"cloud node {node}: refused: {why}"
        return console.address, text

    def _host_ca(self, pool: PoolSpec) -> asyncssh.SSHKey | str | None:
        """The pool's site CA key (read once per path), None without one, or why not."""
        path = pool.bootstrap.host_ca
        if path is None:
            return None
        key = self._host_cas.get(path)
        if key is None:
            try:
                key = asyncssh.read_public_key(str(path))
            except (OSError, ValueError, asyncssh.KeyImportError) as error:
                return (
                    f"pool {pool.name}'s bootstrap.host_ca {path} cannot be read ({error}), so "
                    "no host certificate can be checked; restore the file"
                )
            self._host_cas[path] = key
        return key
