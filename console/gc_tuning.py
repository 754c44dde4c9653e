"""Garbage collection for a console that streams a thousand nodes.

Measured on this project's 2-core machine, a console streaming 1,000 simulated nodes spent
4.1 s of 35 s in the cyclic collector, in pauses of up to 320 ms (a full collection walks
every tracked object: 285,000 of them once the connections are up). The event loop stops
for each pause, and so does the screen. Two changes, both standard for long-running Python
services, brought the event loop's worst lag from 580 ms to about 100 ms:

* a larger first generation, so the young objects of a second's lines (SSH packets, decoded
  records) are mostly gone before the collector looks at them;
* once the fleet has connected, ``gc.freeze()`` after one full collection: the long-lived
  objects (connections, node states, widgets) move to a generation the collector never
  walks again. What is frozen is never freed, so this runs once, after a collection.

``tidectl`` calls these from the front ends that stream; library users decide for
themselves.
"""

from __future__ import annotations

import gc
import time

#: Allocations (minus frees) of tracked objects before a young collection; Python's is 700.
YOUNG_THRESHOLD = 20_000


def tune_for_streaming() -> tuple[int, int, int]:
    """Collect young objects less often (see the module's docstring); returns the thresholds
    it replaced, for :func:`undo`."""
    before = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, before[1], before[2])
    return before


def undo(threshold: tuple[int, int, int]) -> None:
    """Back to ``threshold``, nothing frozen: a front end that stops streaming (a console
    closed inside a longer-lived process) leaves the collector as it found it."""
    gc.unfreeze()
    gc.set_threshold(*threshold)


def freeze_long_lived() -> float:
    """One full collection, then freeze what survives; returns the seconds it took."""
    started = time.perf_counter()
    gc.collect()
    gc.freeze()
    return time.perf_counter() - started
