"""The ``:`` command palette: sort, group, fold, filter presets, views, faults, quit."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING

from textual.command import DiscoveryHit, Hit, Hits, Provider

from tidectl.console.view.table import SORTS

if TYPE_CHECKING:
    from tidectl.console.tui.app import ConsoleApp


class ConsoleCommands(Provider):
    def _commands(self) -> list[tuple[str, Callable[[], object], str]]:
        app: ConsoleApp = self.app  # type: ignore[assignment]
        commands: list[tuple[str, Callable[[], object], str]] = [
            (f"sort by {key}", partial(app.sort_by, key), "order the fleet table") for key in SORTS
        ]
        commands += [
            ("fold identical nodes", app.toggle_fold, "fold nodes in the same state into sets"),
            ("group by site / pool / none", app.cycle_group, "group the table's rows"),
            ("show critical nodes", partial(app.set_filter, "health:crit"), "filter"),
            ("show unhealthy nodes", partial(app.set_filter, "!health:ok"), "filter"),
            ("show unreachable nodes", partial(app.set_filter, "!link:streaming"), "filter"),
            ("clear the filter", partial(app.set_filter, ""), "filter"),
            ("burst cloud nodes into a pool", app.ask_burst, "through the control plane (b)"),
            ("show nodes with a lifecycle state", partial(app.set_filter, "!life:-"), "filter"),
            ("events", app.action_events, "health, link and lifecycle moves, newest first"),
            ("audit log", app.action_audit, "who asked the control plane for what, and why"),
            ("help", app.action_help, "every key binding"),
            ("quit", app.action_quit, "leave the console"),
        ]
        if app.faults is not None:
            commands.append(
                ("inject a fault into the selected node", app.inject_selected, "demo only")
            )
            commands.append(("clear all faults of the cluster", app.clear_all_faults, "demo only"))
        return commands

    async def discover(self) -> Hits:
        for name, callback, help_text in self._commands():
            yield DiscoveryHit(name, callback, help=help_text)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for name, callback, help_text in self._commands():
            score = matcher.match(name)
            if score > 0:
                yield Hit(score, matcher.highlight(name), callback, help=help_text)
