"""The ids of the console's key bindings, known to the headless core.

``[console] keymap`` in cluster.toml remaps bindings by these ids; the loader checks a keymap
against this list so a typo is an error at load time rather than a key that silently does
nothing. The Textual front end declares the bindings; a test keeps the two lists equal.
"""

from __future__ import annotations

BINDING_IDS: tuple[str, ...] = (
    "app.quit",
    "app.help",
    "app.palette",
    "app.events",
    "app.audit",
    "app.costs",
    "app.save_session",
    "fleet.filter",
    "fleet.sort",
    "fleet.reverse",
    "fleet.fold",
    "fleet.group",
    "fleet.inject",
    "fleet.clear_faults",
    "fleet.clear_filter",
    "fleet.burst",
    "fleet.drain",
    "fleet.resume",
    "fleet.terminate",
    "fleet.trust_key",
    "table.up",
    "table.down",
    "table.page_up",
    "table.page_down",
    "table.first",
    "table.last",
    "table.open",
    "node.back",
    "node.inject",
    "node.clear_faults",
    "events.back",
    "events.filter",
    "audit.back",
    "audit.filter",
    "costs.back",
    "help.close",
    "faults.cancel",
    "dialog.cancel",
    "confirm.yes",
)
