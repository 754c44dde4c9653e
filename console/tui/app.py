"""The Textual console: the fleet live in a full-screen terminal.

The app owns its source (a worker on the app's event loop, started after the first frame, so
the screen is up before the first node answers): the cluster's ``ControlPlane``, which runs
the collector, the reconcile loop and the sim scheduler's clock, and through which every
lifecycle action goes (``tui.actions``). A plane that cannot be built here (its store held by a
running ``tidectl serve``, a store that cannot be opened) leaves the collector alone, and
says so. The app subscribes to the
fleet, and reads the plane's lifecycle states once a second (``view.life``).
Fleet flushes arrive as ``FleetChanged`` messages that coalesce in the queue; the app hands
the names to every screen, and only the screen showing applies them: hidden views are not
rendered. Blocking work (writing the sim's fault file) runs in a thread worker; handlers
never do I/O.
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import time
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from textual import on, work
from textual.app import App
from textual.binding import Binding, BindingType
from textual.css.query import NoMatches
from textual.worker import Worker, WorkerCancelled, WorkerFailed, WorkerState

from tidectl.console import gc_tuning
from tidectl.console.config.model import ClusterConfig
from tidectl.console.fleet import Fleet
from tidectl.console.model import LinkState
from tidectl.console.tui.action_dialogs import ActionDialog, ConfirmDialog
from tidectl.console.tui.actions import LifecycleActions
from tidectl.console.tui.audit_screen import AuditScreen
from tidectl.console.tui.commands import ConsoleCommands
from tidectl.console.tui.cost_screen import CostScreen, SpendReader
from tidectl.console.tui.dialogs import FaultMenu, HelpScreen, bindings_table
from tidectl.console.tui.events_screen import EventsScreen
from tidectl.console.tui.fleet_screen import FleetScreen
from tidectl.console.tui.fleet_table import FleetTable
from tidectl.console.tui.messages import FleetChanged, InjectFault, LifecycleAsked
from tidectl.console.tui.node_screen import NodeScreen
from tidectl.console.view.faults import FaultChoice, fault_choices
from tidectl.console.view.life import LifeFeed
from tidectl.console.view.recording import SessionRecording

if TYPE_CHECKING:
    from tidectl.console.scheduler.workload import Workload
    from tidectl.console.sim.injector import SimFaults
    from tidectl.console.view.plane import FrontEndPlane

#: What the app runs once its first frame is up: yields the control plane, or None when the
#: console runs without one (the collector alone, or a test that feeds the fleet itself).
Source = Callable[[], AbstractAsyncContextManager["FrontEndPlane | None"]]
#: How long a quit waits for the control plane to close (its store, the sim cloud's servers).
CLOSE_WAIT_S = 15.0


class ConsoleApp(App[int]):
    CSS_PATH = "console.tcss"
    TITLE = "tidectl"
    ENABLE_COMMAND_PALETTE = True
    COMMANDS: ClassVar = {ConsoleCommands}
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("q", "quit", "Quit", id="app.quit"),
        Binding("question_mark", "help", "Help", id="app.help"),
        Binding("colon", "command_palette", "Commands", id="app.palette"),
        Binding("e", "events", "Events", id="app.events"),
        Binding("a", "audit", "Audit", id="app.audit"),
        Binding("dollar_sign", "costs", "Costs", id="app.costs"),
        Binding("W", "save_session", "Save as playbook", id="app.save_session"),
    ]

    def __init__(
        self,
        fleet: Fleet,
        cluster: str,
        *,
        source: Source | None = None,
        faults: SimFaults | None = None,
        keymap: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__()
        self.fleet = fleet
        self.cluster = cluster
        self.source = source
        self.faults = faults
        self.keymap = dict(keymap or {})
        #: The control plane once it is up; None before, and in a console without one.
        self.plane: FrontEndPlane | None = None
        #: Why this console has no control plane (its sentence), when it cannot have one.
        self.plane_problem: str | None = None
        self.life = LifeFeed()
        #: The header's spend today, read through the plane now and then.
        self.spend = SpendReader(self, lambda: self.plane, self.life)
        self.actions = LifecycleActions(self)
        #: What this session did, for ``W`` to save as a playbook (``view.recording``).
        self.recording = SessionRecording()
        #: The cluster.toml the saved playbook names; the folder it is saved in.
        self.config_path: Path | None = None
        self.save_folder = Path.cwd()
        self.fleet_screen = FleetScreen(fleet, cluster, self.life)
        self._unsubscribe: Callable[[], None] | None = None
        self._frozen = False
        self._gc_threshold: tuple[int, int, int] | None = None  # as it was before streaming
        self._source_worker: Worker[None] | None = None
        self._life_unread = False  # the last read of the lifecycle failed (said once)

    # -- life --------------------------------------------------------------------------------

    def on_mount(self) -> None:
        if self.keymap:
            self.set_keymap(self.keymap)
        self.push_screen(self.fleet_screen)
        self._unsubscribe = self.fleet.subscribe(self._fleet_flushed)
        self.set_interval(1.0, self._tick)
        if self.source is not None:
            self._gc_threshold = gc_tuning.tune_for_streaming()
            # After the first frame: connecting a thousand nodes starts with importing the
            # transport and opening sockets, work an operator should not stare at a blank
            # terminal through.
            self.call_after_refresh(self._start_source)

    async def on_unmount(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
        if self._gc_threshold is not None:
            gc_tuning.undo(self._gc_threshold)
        # Wait for the control plane to close (Textual only cancels workers): its store is
        # closed and the sim cloud's instances end with the console, not after it.
        worker = self._source_worker
        if worker is not None and not worker.is_finished:
            worker.cancel()
            with contextlib.suppress(WorkerCancelled, WorkerFailed, TimeoutError):
                await asyncio.wait_for(worker.wait(), CLOSE_WAIT_S)

    def _start_source(self) -> None:
        self._source_worker = self._collect()

    @work(exclusive=True, group="collector", exit_on_error=False)
    async def _collect(self) -> None:
        assert self.source is not None
        async with self.source() as plane:
            if plane is None:
                await _forever()
                return
            self.plane = plane
            self.life.attach(plane)
            self.life_changed(force=True)
            try:
                await _forever()
            finally:
                self.plane = None
                gone = self.life.detach()
                if self.is_running:  # the plane stopped under a running console: say so
                    self._life_moved(gone)

    def no_plane(self, sentence: str) -> None:
        """The source could not build a control plane: say why, once; the fleet still shows."""
        self.plane_problem = sentence
        self.notify(
            f"Lifecycle actions are off: {sentence}. The fleet is shown without them.",
            severity="warning",
            timeout=15,
        )

    def life_changed(self, *, force: bool = False) -> None:
        """Read the plane's lifecycle states again (at most once a second unless ``force``)."""
        try:
            moved = self.life.poll(fleet_now=self.fleet.now(), wall_now=time.time(), force=force)
        except Exception as error:  # a read that fails must not take the console down
            if not self._life_unread:
                self.notify(f"The lifecycle store cannot be read: {error}", severity="error")
            self._life_unread = True
            return
        self._life_unread = False
        self._life_moved(moved)

    def _life_moved(self, names: frozenset[str]) -> None:
        if names:
            with contextlib.suppress(NoMatches):  # quitting: nothing left to show
                self.fleet_screen.note_life(names)

    def _fleet_flushed(self, names: frozenset[str]) -> None:
        self.post_message(FleetChanged(names))

    def on_fleet_changed(self, message: FleetChanged) -> None:
        for screen in self.screen_stack:
            note = getattr(screen, "note_changes", None)
            if note is not None:
                with contextlib.suppress(NoMatches):  # quitting: see _tick
                    note(message.names)

    def _tick(self) -> None:
        if self.life.attached:
            self.life_changed()
            self.spend.tick()
        tick = getattr(self.screen, "tick", None)
        if tick is not None:
            try:
                tick()
            except NoMatches:
                # The timer fired while quitting: the screen's widgets are already removed
                # and there is nothing left to show (it crashed the exit before this).
                return
        if self.source is not None and not self._frozen and self._connected():
            self._frozen = True
            gc_tuning.freeze_long_lived()

    def _connected(self) -> bool:
        """Every node past connecting and deploying: the long-lived objects exist."""
        settling = (LinkState.CONNECTING, LinkState.DEPLOYING)
        return all(node.link not in settling for node in self.fleet.nodes.values())

    @on(Worker.StateChanged)
    def _worker_changed(self, event: Worker.StateChanged) -> None:
        if event.state is not WorkerState.ERROR:
            return
        error = event.worker.error
        if event.worker.group == "collector":
            self.notify(f"The collector stopped: {error}", severity="error", timeout=30)
        else:
            self.notify(str(error), title="Could not do that", severity="error", timeout=10)

    # -- views -------------------------------------------------------------------------------

    def action_events(self) -> None:
        if not isinstance(self.screen, EventsScreen):
            self.push_screen(EventsScreen(self.fleet, self.life))

    def action_audit(self) -> None:
        if not isinstance(self.screen, AuditScreen):
            self.push_screen(AuditScreen(lambda: self.plane, lambda: self.plane_problem))

    def action_costs(self) -> None:
        if not isinstance(self.screen, CostScreen):
            self.push_screen(CostScreen(lambda: self.plane, lambda: self.plane_problem))

    def action_save_session(self) -> None:
        """Write what this session did as a playbook (``tidectl play FILE --check`` plans it
        again)."""
        if not self.recording.steps:
            self.notify(
                "Nothing to save yet: bursts, drains, resumes and terminates done in this "
                "console are what a saved playbook holds.",
                severity="warning",
            )
            return
        user = getpass.getuser()
        cluster = self.config_path or Path("cluster.toml")
        try:
            path = self.recording.save(self.save_folder, cluster, user)
        except OSError as error:
            self.notify(
                f"The playbook cannot be written in {self.save_folder}: {error.strerror}",
                severity="error",
            )
            return
        count = len(self.recording.steps)
        self.notify(
            f"Saved {count} step(s) as {path}; tidectl play {path.name} --check shows its plan.",
            timeout=12,
        )

    def action_help(self) -> None:
        scopes = [
            ("everywhere", ConsoleApp.BINDINGS),
            ("fleet", FleetScreen.BINDINGS),
            ("fleet table", FleetTable.BINDINGS),
            ("node", NodeScreen.BINDINGS),
            ("events", EventsScreen.BINDINGS),
            ("audit", AuditScreen.BINDINGS),
            ("costs", CostScreen.BINDINGS),
            ("dialogs", ActionDialog.BINDINGS),
            ("confirm", ConfirmDialog.BINDINGS),
        ]
        self.push_screen(HelpScreen(bindings_table(scopes, self.keymap)))

    def _on_fleet_screen(self) -> FleetScreen:
        while not isinstance(self.screen, FleetScreen) and len(self.screen_stack) > 2:
            self.pop_screen()
        return self.fleet_screen

    def sort_by(self, key: str) -> None:
        self._on_fleet_screen().sort_by(key)

    def toggle_fold(self) -> None:
        self._on_fleet_screen().action_fold()

    def cycle_group(self) -> None:
        self._on_fleet_screen().action_group()

    def set_filter(self, text: str) -> None:
        screen = self._on_fleet_screen()
        box = screen.query_one("#filter")
        box.value = text  # type: ignore[attr-defined]
        box.display = bool(text)

    # -- lifecycle (through the control plane) ----------------------------------------------

    @on(LifecycleAsked)
    def _lifecycle(self, message: LifecycleAsked) -> None:
        self.actions.ask(message.action, message.node)

    def ask_burst(self) -> None:
        self.actions.ask("burst", None)

    # -- faults (the demo's simulated cluster) -----------------------------------------------

    def inject_selected(self) -> None:
        if isinstance(self.screen, NodeScreen):
            self.screen.action_inject()
        else:
            self._on_fleet_screen().action_inject()

    def clear_all_faults(self) -> None:
        if self.faults is not None:
            self._write_faults(None, None)

    @on(InjectFault)
    def _inject(self, message: InjectFault) -> None:
        if self.faults is None:
            self.notify(
                "Faults can be injected into the simulated cluster only (tidectl demo).",
                severity="warning",
            )
            return
        if message.fault is None:
            self._write_faults(message.node, None)
            return
        node = self.fleet.nodes.get(message.node)
        choices = fault_choices(node) if node is not None else []
        if not choices:
            self.notify(f"{message.node} has not sampled yet; try again in a moment.")
            return

        def chosen(choice: FaultChoice | None) -> None:
            if choice is not None:
                self._write_faults(message.node, choice.fault)

        self.push_screen(FaultMenu(message.node, choices), chosen)

    @work(thread=True, group="faults", exit_on_error=False)
    def _write_faults(self, node: str | None, fault: str | None) -> None:
        faults = self.faults
        assert faults is not None
        if node is None:
            faults.clear_all()
            said = "Cleared every injected fault."
        elif fault is None:
            faults.clear(node)
            said = f"Cleared the injected faults of {node}."
        else:
            faults.inject(node, fault)
            said = f"Injected {fault} into {node}; it shows within a tick or two."
        self.call_from_thread(self.notify, said)


async def _forever() -> None:
    while True:
        await asyncio.sleep(3600)


@contextlib.asynccontextmanager
async def _collecting(config: ClusterConfig, fleet: Fleet) -> AsyncIterator[object]:
    # Imported here, after the first frame: the transport pulls in asyncssh (a quarter of a
    # second of a console's start, before it could show anything).
    from tidectl.console.collectors import make_collector

    async with make_collector(config, fleet) as collector:
        yield collector


@contextlib.asynccontextmanager
async def _controlling(
    config: ClusterConfig, fleet: Fleet, app: ConsoleApp, options: Mapping[str, Any]
) -> AsyncIterator[FrontEndPlane | None]:
    """The cluster's control plane on ``fleet``, running; the collector alone (and None) when
    the config asks for what cannot run here."""
    from tidectl.console.control.assemble import AssemblyError, assemble

    try:
        plane = await assemble(
            config,
            fleet=fleet,
            in_process_sim=True,
            who="tidectl console",
            policies=True,
            **options,
        )
    except AssemblyError as error:
        app.no_plane(str(error))
        async with _collecting(config, fleet):
            yield None
        return
    async with plane:
        yield plane


@contextlib.asynccontextmanager
async def _attached(
    server: Path, config: ClusterConfig, fleet: Fleet, app: ConsoleApp, options: Mapping[str, Any]
) -> AsyncIterator[FrontEndPlane | None]:
    """The service's control plane, mirrored; when no service answers, the console's own
    (which the store's lock refuses while a service holds it: then the collector alone)."""
    from tidectl.console.server.attach import AttachedPlane
    from tidectl.console.server.client import ServiceUnavailable

    def say(sentence: str) -> None:
        app.notify(sentence, severity="warning", timeout=10)

    attached = AttachedPlane(server, fleet, on_status=say)
    try:
        await attached.__aenter__()
    except ServiceUnavailable as error:
        say(f"{error}. This console runs the control plane itself.")
        async with _controlling(config, fleet, app, options) as plane:
            yield plane
        return
    try:
        app.notify(f"Attached to the tidectl service on {server} as {attached.remote.user}.")
        yield attached
    finally:
        await attached.__aexit__(None, None, None)


def console_app(
    config: ClusterConfig,
    *,
    faults: SimFaults | None = None,
    workload: Workload | None = None,
    interval_s: float | None = None,
    server: Path | None = None,
) -> ConsoleApp:
    """The console over ``config``'s nodes, with the cluster's control plane once it runs.
    ``workload``: the sim scheduler's job stream (the demo's); ``interval_s``: seconds between
    reconcile passes (the plane's default when None); ``server``: the socket of a
    ``tidectl serve`` to attach to (default: ``[server] socket``, when set)."""
    fleet = Fleet(config.nodes, config.health)
    app = ConsoleApp(fleet, config.name, faults=faults, keymap=config.console.keymap)
    app.config_path = config.path.resolve()
    options: dict[str, Any] = {"workload": workload}
    if interval_s is not None:
        options["interval_s"] = interval_s
    socket = server or config.server.socket
    if socket is not None:
        app.source = lambda: _attached(socket, config, fleet, app, options)
    else:
        app.source = lambda: _controlling(config, fleet, app, options)
    return app


def run_console(
    config: ClusterConfig,
    *,
    faults: SimFaults | None = None,
    workload: Workload | None = None,
    server: Path | None = None,
) -> int:
    """Run the console until the operator quits; returns the exit status."""
    result = console_app(config, faults=faults, workload=workload, server=server).run()
    return 0 if result is None else result
