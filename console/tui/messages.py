"""Messages the console's parts send up to the app."""

from __future__ import annotations

from textual.message import Message


class FleetChanged(Message, bubble=False):
    """Nodes changed in the fleet since the last one; later ones absorb earlier ones."""

    def __init__(self, names: frozenset[str]) -> None:
        super().__init__()
        self.names = names

    def can_replace(self, message: Message) -> bool:
        # Textual asks the queued message whether the next one may replace it; the next one
        # then carries both sets of names, so a backlog of ticks is applied as one.
        if isinstance(message, FleetChanged):
            message.names = message.names | self.names
            return True
        return False


class InjectFault(Message):
    """Ask the app to inject (or, with ``fault`` None, clear) faults on a simulated node."""

    def __init__(self, node: str, fault: str | None) -> None:
        super().__init__()
        self.node = node
        self.fault = fault


class LifecycleAsked(Message):
    """Ask the app for a lifecycle action (burst, drain, resume, terminate) on ``node``
    (None for a burst, which needs no node)."""

    def __init__(self, action: str, node: str | None) -> None:
        super().__init__()
        self.action = action
        self.node = node
