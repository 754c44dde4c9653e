"""What the console's reads of a thousand nodes cost: the fleet table's rows, and a
service's full stream to one attached console — each the new way and the old.

* Rows: N nodes' real sim samples are derived by a collector worker's fleet (``WorkerFleet``,
  the code a worker runs) and taken by the console's fleet as digests, as ``ShardedCollector``
  does (one process, no SSH: bench/collector_load.py measures that). Rows for every node
  from the figures the worker sent, then again with each row decoding its node's sample.
* Stream: an in-process fleet fed each node's line at every tick, as the collector does; one
  steady message (every node has a new sample since the last) forwarding each agent line as
  it came, then encoding each decoded sample instead.

CPU time, the best of ``--repeat``.

    python bench/worker_fed_reads.py --nodes 1000
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import msgspec

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the tests' sim feed
from tests.console.shard.test_digest import Cluster
from tests.console.test_health import FakeClock, SimFeed
from tidectl.console.config.model import NodeSpec
from tidectl.console.fleet import Fleet
from tidectl.console.server.stream import NodeInputs
from tidectl.console.thresholds import HealthThresholds
from tidectl.console.view.rows import node_row

_ENCODER = msgspec.json.Encoder()


def _cpu_ms(work: Callable[[], object]) -> float:
    started = time.process_time()
    work()
    return (time.process_time() - started) * 1000.0


def _best(repeat: int, work: Callable[[], float]) -> float:
    return min(work() for _ in range(repeat))


def _rows_ms(count: int, repeat: int) -> tuple[float, float, int]:
    names = [f"n{i:04d}" for i in range(1, count + 1)]
    with tempfile.TemporaryDirectory() as tmp:
        cluster = Cluster(Path(tmp), f"n[0001-{count:04d}]", [names])
        for _ in range(2):
            cluster.tick()
        nodes = list(cluster.console.nodes.values())
        sent = _best(repeat, lambda: _cpu_ms(lambda: [node_row(node) for node in nodes]))
        decoded = sum(not node._undecoded for node in nodes)

        def decoding() -> float:
            for node in nodes:
                node.hold_line(node.sample_line or b"", None)  # undecoded, no figures
            return _cpu_ms(lambda: [node_row(node) for node in nodes])

        return sent, _best(repeat, decoding), decoded


def _stream_ms(count: int, repeat: int, *, as_lines: bool) -> float:
    specs = [NodeSpec(f"n{i:04d}", "127.0.0.1", 22, "dc", "t") for i in range(count)]
    fleet = Fleet(specs, HealthThresholds())
    clock = FakeClock()
    feeds = [SimFeed(fleet, spec.name, clock, seed=i) for i, spec in enumerate(specs)]
    for feed in feeds:
        feed.start()
        feed.send()

    def one() -> float:
        inputs = NodeInputs()
        _ENCODER.encode({n: inputs(n, node) for n, node in fleet.nodes.items()})  # spec, hello
        clock.advance(1.0)
        for feed in feeds:
            feed.send()
            if not as_lines:
                fleet.nodes[feed.name].sample_line = None  # as a fleet that kept no lines
        return _cpu_ms(
            lambda: _ENCODER.encode({n: inputs(n, node) for n, node in fleet.nodes.items()})
        )

    return _best(repeat, one)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    rows_sent, rows_decoding, decoded = _rows_ms(args.nodes, args.repeat)
    lines = _stream_ms(args.nodes, args.repeat, as_lines=True)
    records = _stream_ms(args.nodes, args.repeat, as_lines=False)
    print(f"nodes: {args.nodes}, CPU ms, best of {args.repeat}")
    print(f"rows from the worker's figures: {rows_sent:.1f} (samples decoded: {decoded})")
    print(f"rows decoding each sample:      {rows_decoding:.1f}")
    print(f"stream forwarding agent lines:  {lines:.1f}")
    print(f"stream encoding the records:    {records:.1f}")


if __name__ == "__main__":
    main()
