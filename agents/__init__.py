"""The tidectl node agent.

It runs on every node with nothing installed but ``python3`` (3.8 or newer), reads GPU,
InfiniBand, storage, network and host health, and streams it as JSON lines on stdout. The
code here is standard library only; ``psutil`` and ``pynvml`` are used when present. Nothing
in this package may import from the rest of tidectl: it is shipped alone, as a zipapp.
"""

AGENT_VERSION = "0.1.0"

__all__ = ["AGENT_VERSION"]
