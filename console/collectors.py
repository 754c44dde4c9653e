"""The collector a front end runs, as ``[collector] workers`` says: the ``Collector`` in its
own process (0), or the ``ShardedCollector`` over worker processes (``console/shard``). Both
have one interface; ``Watcher`` names either."""

from __future__ import annotations

from tidectl.console.collector import Collector
from tidectl.console.config.model import ClusterConfig
from tidectl.console.fleet import Fleet
from tidectl.console.shard.collector import ShardedCollector

__all__ = ["Watcher", "make_collector"]

Watcher = Collector | ShardedCollector


def make_collector(config: ClusterConfig, fleet: Fleet, *, stream_agents: bool = True) -> Watcher:
    workers = config.collector.workers
    if workers:
        return ShardedCollector(config, fleet, workers=workers, stream_agents=stream_agents)
    return Collector(config, fleet, stream_agents=stream_agents)
