"""Seeds of simulated nodes that stay busy (in a training job) or idle (in a gap) for a while
from the moment their hardware is built: the sim has no switch for it, so tests pick seeds."""

from __future__ import annotations

import functools

from tidectl.agents.probes.sim import SimNode


@functools.cache
def steady_seed(busy: bool, for_s: float = 600.0, start: int = 1000) -> int:
    """The first seed from ``start`` whose node is in one job (``busy``) or one gap for its
    first ``for_s`` seconds."""
    for seed in range(start, start + 1000):
        node = SimNode(seed, clock=lambda: 0.0)
        first = node.timeline(for_s)[0]
        if first.end > for_s and first.job == busy:
            return seed
    raise AssertionError(f"no seed from {start} stays {'busy' if busy else 'idle'} {for_s} s")
