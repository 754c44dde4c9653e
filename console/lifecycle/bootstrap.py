"""Bootstrapping a cloud node: from a running instance to an agent the console hears.

The engine moves a node to ``bootstrapping`` once its instance runs; then it ``link``s it
here. The node's provider hands over how to reach it and the host key that proves it is it;
the node becomes a ``NodeSpec`` that carries that key (and the client key the node accepts),
and the collector connects, verifies the key, deploys the agent and streams it like any other
node's. ``health`` is the engine's admission gate over what the agent says.

A provider that cannot hand over a host key gets its nodes refused, with a sentence: a key
trusted on first use could be anyone's, and tidectl never trusts one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from tidectl.console.collector import Collector
from tidectl.console.config.model import NodeSpec, PoolSpec
from tidectl.console.fleet import DuplicateNodeError
from tidectl.console.lifecycle.admission import Admission, admit
from tidectl.console.providers.base import HandsOverHostKeys, Provider

__all__ = ["INSTANCE_LABEL", "POOL_LABEL", "Bootstrapper"]

#: The labels every cloud node carries: its pool (the console groups by it) and its instance.
POOL_LABEL = "pool"
INSTANCE_LABEL = "instance"


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
        collector: Collector,
        pools: Mapping[str, PoolSpec],
        providers: Mapping[str, Provider],
        *,
        base_labels: Mapping[str, str] = MappingProxyType({}),
    ) -> None:
        self._collector = collector
        self._pools = pools
        self._providers = providers
        self._base_labels = dict(base_labels)
        self._linked: dict[str, _Linked] = {}

    def link(self, node: str, pool: str, instance_id: str) -> str | None:
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
        spec = self._spec(node, pool, instance_id)
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

    def _spec(self, node: str, pool_name: str, instance_id: str) -> NodeSpec | str:
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
        if not isinstance(provider, HandsOverHostKeys):
            return (
                f"cloud node {node}: its provider ({pool.provider}) does not hand over a "
                "host key, and tidectl never trusts an unverified one; verified host keys "
                "for it come with the [security] work. Terminate the instance, or wait"
            )
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
        labels = {**self._base_labels, POOL_LABEL: pool.name, INSTANCE_LABEL: instance_id}
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
