"""``[collector]``: where the agents' streams are received and judged.

    [collector]
    workers = 2     # default 0: in the console's own process

With ``workers = N`` (1 or more), N worker processes each hold a share of the nodes' SSH
links and derive their rates, history and findings; the console's process only records what
they send (``console/shard``). Worth it from several hundred nodes, on a machine with the
cores: at 1,000 nodes the console's process drops from about half a core to a tenth, and the
collection as a whole costs more (the digests), spread over the workers.
"""

from __future__ import annotations

from tidectl.console.config.model import CollectorSettings
from tidectl.console.config.table import Table

__all__ = ["MAX_WORKERS", "read_collector"]

#: More workers than this is a mistake, not a plan (each is a Python process).
MAX_WORKERS = 64


def read_collector(table: Table | None) -> CollectorSettings:
    if table is None:
        return CollectorSettings()
    workers = table.integer("workers", 0, 0, MAX_WORKERS)
    table.finish()
    assert workers is not None
    return CollectorSettings(workers=workers)
