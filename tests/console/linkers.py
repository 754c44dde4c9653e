"""What the engine's tests link cloud nodes with when there is no agent to hear: a linker that
only remembers which node is linked to which instance (admission comes from the test's health
gate). Subclasses say what running a command "on the node" means."""

from __future__ import annotations


class Bookkeeping:
    def __init__(self) -> None:
        self.nodes: dict[str, str] = {}  # node -> instance id

    async def link(self, node: str, pool: str, instance_id: str) -> str | None:
        self.nodes[node] = instance_id
        return None

    async def unlink(self, node: str) -> None:
        self.nodes.pop(node, None)

    def linked(self, node: str) -> bool:
        return node in self.nodes

    def linked_names(self) -> list[str]:
        return list(self.nodes)
