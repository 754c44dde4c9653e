"""Real agent lines from simulated nodes, made ahead of a benchmark (shared by the benches)."""

from __future__ import annotations

import io

from tidectl.agents import protocol
from tidectl.agents.probes.sim import make_sim_probes
from tidectl.agents.runner import Stream
from tidectl.console.config.model import NodeSpec


def lines_for(specs: list[NodeSpec], ticks: int) -> tuple[list[bytes], list[list[bytes]]]:
    """Each node's hello line, then ``ticks`` ticks of sample lines (one list per tick), the
    nodes' clock moving a second a tick."""
    clock = [1000.0]
    streams = [
        Stream(
            make_sim_probes(i, hostname=spec.name, clock=lambda: clock[0]),
            io.BytesIO(),
            interval_s=1.0,
            threaded=False,
        )
        for i, spec in enumerate(specs)
    ]
    hellos = [protocol.encode(stream.hello()) for stream in streams]
    out = []
    for _ in range(ticks):
        clock[0] += 1.0
        out.append([protocol.encode(stream.tick()) for stream in streams])
    return hellos, out
