"""``ClusterPanel``: the fleet, its health and cost, and burst / drain / Adaptive, in a notebook.

Shaped after Dask's cluster widget: ipywidgets imported only when the panel is displayed
(without it, a static HTML summary), the widgets built once and cached, and refreshed by a
stoppable task on the kernel's own asyncio loop — never from a bare thread (ipywidgets
#4001). The same loop runs the control plane (or the link to ``tidectl serve``), so the panel
keeps updating between cells and while an ``await`` in another cell waits.

Every action goes through the control plane (``FrontEndPlane``), which checks the caller's
role, the budgets and the data's regions; a refusal or failure becomes a line in the panel,
never a traceback. Closing the panel stops its tasks and, when it started the control plane
(``open``, ``demo``), stops that too.
"""

from __future__ import annotations

import asyncio
import html
import logging
import os
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from tidectl.console.config.model import PoolSpec
from tidectl.console.control.caller import Caller, Frontend
from tidectl.console.control.errors import ControlError
from tidectl.console.fleet import Fleet
from tidectl.console.nodesets import fold
from tidectl.console.scheduler.base import Job
from tidectl.console.view.costs import headline
from tidectl.console.view.html import summary_html
from tidectl.widgets.model import PanelModel, TableLine, error_words, option_label
from tidectl.widgets.sources import Source, attached, embedded, given

if TYPE_CHECKING:
    from tidectl.console.view.plane import FrontEndPlane
    from tidectl.widgets.controls import PanelWidgets

__all__ = ["ClusterPanel", "PanelError"]

_log = logging.getLogger(__name__)

#: How often the panel reads the cost report for the summary's spend today.
SPEND_REFRESH_S: Final = 15.0
#: How often the jobs on the selected node are read again (a drain's preview).
JOBS_REFRESH_S: Final = 5.0
#: Messages kept on screen, newest first.
MESSAGES_KEPT: Final = 4
#: The table's height, in lines, at most.
TABLE_ROWS: Final = 20
_LEVEL_MARK: Final = {"info": "", "warning": "▲ ", "error": "✖ "}
_FALLBACK_NOTE: Final = (
    "A static summary: ipywidgets is not installed, so this panel cannot show its live "
    "table and controls (pip install 'tidectl[notebook]')."
)


class PanelError(Exception):
    """The panel cannot run as asked; ``str()`` says why and what to do."""


class ClusterPanel:
    """The notebook's view of one cluster. Make it with :meth:`open` (a cluster.toml),
    :meth:`demo` (a simulated cluster) or :meth:`for_plane` (a control plane you run); each
    starts its tasks on the running loop (a Jupyter kernel's). ``close()`` stops them."""

    def __init__(
        self,
        fleet: Fleet,
        cluster: str,
        source: Source,
        *,
        refresh_s: float = 1.0,
        caller: Caller | None = None,
        closers: Sequence[Callable[[], Awaitable[None]]] = (),
    ) -> None:
        self.model = PanelModel(fleet, cluster)
        self.refresh_s = refresh_s
        #: Who acts: the kernel's user, through the notebook front end.
        self.caller = caller or Caller.local(Frontend.NOTEBOOK)
        #: The control plane once it runs; None before, after, and when none can run here.
        self.plane: FrontEndPlane | None = None
        #: A word for the title: starting, live, fleet only, stopped, closed.
        self.status = "starting the control plane…"
        #: (level, sentence), newest first: what the panel said last.
        self.messages: list[tuple[str, str]] = []
        self.closed = False
        self._source = source
        self._closers = list(closers)
        self._widgets: PanelWidgets | None = None
        self._runner: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._started = asyncio.Event()
        self._unsubscribe: Callable[[], None] | None = None
        self._lines: dict[str, TableLine] = {}
        self._options: tuple[tuple[str, str], ...] = ()
        self._selected: str | None = None
        self._jobs: tuple[str, list[Job] | None, str | None] | None = None
        self._jobs_read_at = -float("inf")
        self._jobs_task: asyncio.Task[None] | None = None
        self._prices: dict[str, float | None] = {}
        #: The pool whose policy the Adaptive fields show: they are set again only when it
        #: changes, so a person's typing is not undone by the next refresh.
        self._adaptive_shown: PoolSpec | None = None
        #: Each pool's min_nodes before this panel turned Adaptive on: restored when off.
        self._floor_before: dict[str, int] = {}
        self._spend_read_at = -float("inf")
        self._syncing = False  # the panel itself is setting widget values: not a person
        self._unread = False  # the last lifecycle read failed (said once)

    # -- making one --------------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        config: str | os.PathLike[str],
        *,
        server: str | os.PathLike[str] | None = None,
        refresh_s: float = 1.0,
    ) -> ClusterPanel:
        """The panel on the cluster ``config`` (a cluster.toml) describes: attached to the
        ``tidectl serve`` on ``server`` (default: ``[server] socket``) when one answers, else
        running the cluster's control plane in this kernel. Raises ``ConfigError`` for a
        config that cannot be read, ``PanelError`` outside a running event loop."""
        from tidectl.console.config.loader import load_config

        loop = _running_loop()
        cluster = load_config(Path(config))
        fleet = Fleet(cluster.nodes, cluster.health)
        socket = Path(server) if server is not None else cluster.server.socket
        source = attached(socket, cluster, fleet) if socket else embedded(cluster, fleet)
        panel = cls(fleet, cluster.name, source, refresh_s=refresh_s)
        panel.start(loop)
        return panel

    @classmethod
    def demo(
        cls,
        nodes: int = 8,
        *,
        seed: int = 0,
        fault_rate_per_hour: float = 0.0,
        refresh_s: float = 1.0,
    ) -> ClusterPanel:
        """The panel on ``tidectl demo``'s simulated cluster (real SSH on 127.0.0.1, the sim
        cloud pool ``burst`` and the sim scheduler's jobs), which it stops when closed. Takes
        a few seconds: the cluster's server starts before this returns. Raises ``DemoError``
        when it cannot start."""
        from tidectl.console.demo import DEMO_WORKLOAD, DemoCluster

        loop = _running_loop()
        cluster = DemoCluster(nodes, seed=seed, fault_rate_per_hour=fault_rate_per_hour)
        cluster.__enter__()  # here, on the kernel's main thread, which outlives the panel

        async def stop_cluster() -> None:
            await asyncio.to_thread(cluster.close)

        try:
            config = cluster.config
            fleet = Fleet(config.nodes, config.health)
            source = embedded(config, fleet, workload=DEMO_WORKLOAD)
            panel = cls(fleet, config.name, source, refresh_s=refresh_s, closers=[stop_cluster])
        except BaseException:
            cluster.close()
            raise
        panel.start(loop)
        return panel

    @classmethod
    def for_plane(
        cls,
        plane: FrontEndPlane,
        fleet: Fleet,
        cluster: str,
        *,
        refresh_s: float = 1.0,
        caller: Caller | None = None,
    ) -> ClusterPanel:
        """The panel on a control plane you run (and stop): ``fleet`` is the one it fills."""
        panel = cls(fleet, cluster, given(plane), refresh_s=refresh_s, caller=caller)
        panel.start(_running_loop())
        return panel

    # -- running -----------------------------------------------------------------------------

    def start(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        """Start the panel's task on ``loop`` (default: the running one)."""
        if self._runner is not None:
            return
        loop = loop or _running_loop()
        self._unsubscribe = self.model.fleet.subscribe(self.model.note_fleet)
        self._runner = loop.create_task(self._run(), name="tidectl panel")

    async def ready(self, timeout_s: float = 60.0) -> None:
        """Wait until the control plane runs (or could not start: see ``messages``)."""
        async with asyncio.timeout(timeout_s):
            await self._started.wait()

    async def settle(self) -> None:
        """Wait until the actions under way (and the reads they started) have finished."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    def close(self) -> asyncio.Task[None]:
        """Stop the panel: its tasks, the control plane it started, its widgets. Returns the
        task doing it (``await panel.aclose()`` does the same and waits)."""
        return asyncio.get_running_loop().create_task(self.aclose())

    async def aclose(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.status = "closed"
        if self._unsubscribe is not None:
            self._unsubscribe()
        tasks = [t for t in (self._runner, *self._tasks) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for close in self._closers:
            try:
                await close()
            except Exception:  # closing goes on: the rest must still stop
                _log.exception("closing the notebook panel")
        if self._widgets is not None:
            self._widgets.close_all()
            self._widgets = None

    async def _run(self) -> None:
        try:
            async with self._source(self._warn) as plane:
                if plane is None:
                    self.status = "fleet only"
                else:
                    self.plane = plane
                    self.model.life.attach(plane)
                    self.status = _live(plane)
                    self._price_of(self._pool_name())
                self._started.set()
                while True:  # poll, render, re-arm: one pass never overlaps the next
                    self.refresh()
                    await asyncio.sleep(self.refresh_s)
        except ControlError as error:
            self.say(error_words(error), "error")
        except Exception as error:
            _log.exception("the notebook panel's control plane stopped")
            self.say(f"The control plane stopped: {type(error).__name__}: {error}", "error")
        finally:
            self.plane = None
            if self.model.life.attached:
                self.model.detach()
            if not self.closed:
                self.status = "stopped"
                self._render()
            self._started.set()

    def refresh(self) -> None:
        """Read the lifecycle again and show what changed (every ``refresh_s``; an action
        calls it at once when it returns)."""
        if self.model.life.attached:
            try:
                self.model.poll()
                self._unread = False
            except Exception as error:  # a read that fails must not stop the panel
                if not self._unread:
                    self.say(f"The lifecycle cannot be read: {error}", "error")
                self._unread = True
            self._read_spend_now_and_then()
            self._read_jobs_now_and_then()
        try:
            self._render()
        except Exception as error:  # a view that cannot be drawn: said, and tried next tick
            _log.exception("the notebook panel could not be drawn")
            self.say(f"The panel could not be drawn: {type(error).__name__}: {error}", "error")

    def _spawn(self, work: Callable[[], Awaitable[None]], what: str) -> asyncio.Task[None]:
        """Run ``work()`` as a task of the panel's: cancelled on close, its errors said. (The
        coroutine is made inside the task: one cancelled before it starts leaves none behind.)"""
        task = asyncio.get_running_loop().create_task(self._guarded(work, what))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _guarded(self, work: Callable[[], Awaitable[None]], what: str) -> None:
        try:
            await work()
        except ControlError as error:
            self.say(error_words(error), "error")
        except Exception as error:
            _log.exception("the notebook panel's %s failed", what)
            self.say(f"The {what} failed: {type(error).__name__}: {error}", "error")

    # -- saying ------------------------------------------------------------------------------

    def say(self, sentence: str, level: str = "info") -> None:
        """Show ``sentence`` at the top of the panel's messages."""
        self.messages.insert(0, (level, sentence))
        del self.messages[MESSAGES_KEPT:]
        if self._widgets is not None and not self.closed:
            self._widgets.message.value = self._messages_html()

    def _warn(self, sentence: str) -> None:
        self.say(sentence, "warning")

    def _messages_html(self) -> str:
        return "".join(
            f'<div class="tidectl-message-{level}">{_LEVEL_MARK[level]}{html.escape(text)}</div>'
            for level, text in self.messages
        )

    # -- showing -----------------------------------------------------------------------------

    @property
    def widget(self) -> Any:
        """The panel's ipywidgets box, built once (raises ImportError without ipywidgets)."""
        if self.closed:
            raise PanelError("this panel is closed; open another with ClusterPanel.open(...)")
        if self._widgets is None:
            from tidectl.widgets.controls import build_widgets

            self._widgets = build_widgets()
            self._wire(self._widgets)
            self._render()
        return self._widgets.root

    @property
    def controls(self) -> PanelWidgets | None:
        """The panel's widgets by name (``table``, ``burst``, ``adaptive``…) once it has been
        displayed (or ``widget`` read): for scripts and tests that drive it."""
        return self._widgets

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any]:
        """The live panel; without ipywidgets (or once closed), the static summary."""
        try:
            bundle: dict[str, Any] = self.widget._repr_mimebundle_(**kwargs)
        except (ImportError, PanelError):
            return {"text/plain": repr(self), "text/html": self._repr_html_()}
        return bundle

    def _repr_html_(self) -> str:
        pools = self.plane.pools() if self.plane is not None else ()
        note = "This panel is closed." if self.closed else _FALLBACK_NOTE
        model = self.model
        return summary_html(
            model.cluster, model.fleet.summary(), model.life.summary(), pools, note=note
        )

    def __repr__(self) -> str:
        return f"<ClusterPanel {self.model.cluster}: {self.status}>"

    def _render(self) -> None:
        ws = self._widgets
        if ws is None or self.closed:
            return
        self._syncing = True
        try:
            ws.title.value = (
                f"<b>tidectl · {html.escape(self.model.cluster)}</b> "
                f"<span style='opacity: 0.7'>{html.escape(self.status)}</span>"
            )
            ws.summary.value = self.model.summary_html()
            self._render_table(ws)
            self._render_detail(ws)
            self._render_pools(ws)
            self._render_burst(ws)
            self._render_drain(ws)
            self._render_adaptive(ws)
            ws.message.value = self._messages_html()
        finally:
            self._syncing = False

    def _render_table(self, ws: PanelWidgets) -> None:
        from tidectl.widgets.controls import pre

        lines = self.model.lines()
        self._lines = {line.key: line for line in lines}
        options = tuple((option_label(line.text), line.key) for line in lines)
        ws.heading.value = pre(html.escape(self.model.heading()))
        if options != self._options:
            self._options = options
            ws.table.options = options
            ws.table.rows = max(4, min(TABLE_ROWS, len(options)))
        if self._selected not in self._lines:
            self._selected = None
        ws.table.value = self._selected

    def _render_detail(self, ws: PanelWidgets) -> None:
        ws.detail.value = self.model.detail_html(self._line())

    def _render_pools(self, ws: PanelWidgets) -> None:
        names = tuple(pool.name for pool in self._pools())
        if tuple(ws.pool.options) != names:
            ws.pool.options = names
        if names and ws.pool.value not in names:
            ws.pool.value = names[0]  # a Dropdown whose options came later selects none
        ws.pool.disabled = not names

    def _render_burst(self, ws: PanelWidgets) -> None:
        pool = self._pool()
        if pool is None or self.plane is None:
            ws.burst.disabled = True
            ws.burst.description = "Burst"
            ws.burst_words.value = html.escape(
                "No pool to burst into." if self.plane is not None else ""
            )
            return
        ws.count.max = max(1, pool.max_nodes)
        priced = pool.name in self._prices
        price = self._prices.get(pool.name)
        form = self.model.burst_form(pool, ws.count.value, price, priced)
        ws.burst.description = self.model.burst_button(form, price)
        ws.burst.disabled = not form.ready
        words = form.cost if form.ready else (form.problem or "")
        ws.burst_words.value = html.escape(words)

    def _render_drain(self, ws: PanelWidgets) -> None:
        line = self._line()
        jobs, problem = self._jobs_of(line)
        words = self.model.drain_words(line, jobs, problem)
        ws.drain.disabled = self.plane is None or not words.ready
        ws.drain_words.value = f"<pre style='margin: 0'>{html.escape(words.text)}</pre>"

    def _render_adaptive(self, ws: PanelWidgets) -> None:
        pool = self._pool()
        ws.adaptive.disabled = ws.min_nodes.disabled = ws.max_nodes.disabled = (
            pool is None or self.plane is None
        )
        ws.adaptive_words.value = html.escape(self.model.adaptive_words(pool))
        if pool is None or pool == self._adaptive_shown:
            return
        self._adaptive_shown = pool
        ws.adaptive.value = pool.policy.burst_on_pressure
        ws.max_nodes.value = pool.max_nodes
        ws.min_nodes.value = pool.policy.min_nodes

    # -- the widgets' events -----------------------------------------------------------------

    def _wire(self, ws: PanelWidgets) -> None:
        ws.close.on_click(lambda _: self.close())
        ws.table.observe(self._selected_line, names="value")
        ws.fold.observe(self._fold, names="value")
        ws.pool.observe(self._pool_chosen, names="value")
        ws.count.observe(lambda _: self._person(lambda: self._render_burst(ws)), names="value")
        ws.burst.on_click(lambda _: self._burst())
        ws.drain.on_click(lambda _: self._drain())
        ws.adaptive.observe(lambda _: self._person(self._adapt), names="value")
        ws.min_nodes.observe(lambda _: self._person(self._adapt_if_on), names="value")
        ws.max_nodes.observe(lambda _: self._person(self._adapt_if_on), names="value")

    def _person(self, act: Callable[[], None]) -> None:
        """Run ``act`` for a change a person made (not one the panel's render made)."""
        if not self._syncing and not self.closed:
            act()

    def _selected_line(self, change: dict[str, Any]) -> None:
        if self._syncing or self.closed:
            return
        self._selected = change["new"]
        self._jobs = None
        self._jobs_read_at = -float("inf")
        self._read_jobs_now_and_then()
        self._render()

    def _fold(self, change: dict[str, Any]) -> None:
        if not self._syncing and self.model.table.folded != bool(change["new"]):
            self.model.table.toggle_fold()
            self._render()

    def _pool_chosen(self, change: dict[str, Any]) -> None:
        if self._syncing or self.closed:
            return
        self._price_of(change["new"])
        self._render()

    # -- the actions -------------------------------------------------------------------------

    def _burst(self) -> None:
        ws, plane, pool = self._widgets, self.plane, self._pool()
        if ws is None or plane is None or pool is None:
            self.say("The control plane is not running: nothing can be burst.", "warning")
            return
        price = self._prices.get(pool.name)
        form = self.model.burst_form(pool, ws.count.value, price, pool.name in self._prices)
        if form.count is None:
            self.say(form.problem or "Nothing to burst.", "warning")
            return
        count = form.count

        async def burst() -> None:
            try:
                result = await plane.burst(self.caller, pool.name, count=count)
            finally:
                self.refresh()
            self.say(_sentence(result.sentence, f"Burst of {count} into {pool.name} asked."))

        self._spawn(burst, f"burst of {count} into {pool.name}")

    def _drain(self) -> None:
        plane, line = self.plane, self._line()
        jobs, problem = self._jobs_of(line)
        words = self.model.drain_words(line, jobs, problem)
        if plane is None or line is None or not words.ready:
            self.say(words.text, "warning")
            return
        nodes = list(line.nodes)
        reason = f"drained by {self.caller.user} via tidectl notebook"

        async def drain() -> None:
            try:
                result = await plane.drain(self.caller, nodes, reason=reason)
            finally:
                self.refresh()
            self.say(_sentence(result.sentence, f"Drain of {fold(nodes)} asked."))

        self._spawn(drain, f"drain of {len(nodes)} node(s)")

    def _adapt_if_on(self) -> None:
        if self._widgets is not None and self._widgets.adaptive.value:
            self._adapt()

    def _adapt(self) -> None:
        ws, plane, pool = self._widgets, self.plane, self._pool()
        if ws is None or plane is None or pool is None:
            return
        on = bool(ws.adaptive.value)
        low, high = int(ws.min_nodes.value), int(ws.max_nodes.value)
        if on and not pool.policy.burst_on_pressure:
            # Off again gives the pool back the floor it had (the policy keeps min_nodes
            # even when not adaptive): not a minimum someone set only for adapting.
            self._floor_before.setdefault(pool.name, pool.policy.min_nodes)
        floor = self._floor_before.pop(pool.name, None) if not on else None

        async def adapt() -> None:
            try:
                if on:
                    changed = await plane.set_pool_policy(
                        self.caller,
                        pool.name,
                        min_nodes=low,
                        max_nodes=high,
                        burst_on_pressure=True,
                    )
                else:
                    changed = await plane.set_pool_policy(
                        self.caller, pool.name, min_nodes=floor, burst_on_pressure=False
                    )
            finally:
                self._adaptive_shown = None  # a refused change shows the policy as it is
                self._render()
            self.say(self.model.adaptive_words(changed))

        self._spawn(adapt, f"policy change of pool {pool.name}")

    # -- reads -------------------------------------------------------------------------------

    def _pools(self) -> tuple[PoolSpec, ...]:
        return self.plane.pools() if self.plane is not None else ()

    def _pool_name(self) -> str | None:
        ws = self._widgets
        chosen = ws.pool.value if ws is not None else None
        pools = self._pools()
        if chosen is not None and any(p.name == chosen for p in pools):
            return str(chosen)
        return pools[0].name if pools else None

    def _pool(self) -> PoolSpec | None:
        name = self._pool_name()
        return next((p for p in self._pools() if p.name == name), None)

    def _line(self) -> TableLine | None:
        return self._lines.get(self._selected) if self._selected is not None else None

    def _price_of(self, pool: str | None) -> None:
        plane = self.plane
        if plane is None or pool is None or pool in self._prices:
            return

        async def read() -> None:
            self._prices[pool] = await plane.price_per_hour(pool)
            self._render()

        self._spawn(read, f"price read of pool {pool}")

    def _jobs_of(self, line: TableLine | None) -> tuple[list[Job] | None, str | None]:
        if line is None or self._jobs is None or self._jobs[0] != line.key:
            return None, None
        return self._jobs[1], self._jobs[2]

    def _read_jobs_now_and_then(self) -> None:
        plane, line = self.plane, self._line()
        if plane is None or line is None or not line.nodes:
            return
        if time.monotonic() - self._jobs_read_at < JOBS_REFRESH_S:
            return
        self._jobs_read_at = time.monotonic()
        if self._jobs_task is not None:
            self._jobs_task.cancel()

        async def read() -> None:
            try:
                jobs = await plane.jobs_on(list(line.nodes))
            except ControlError as error:
                self._jobs = (line.key, None, str(error))
            else:
                self._jobs = (line.key, jobs, None)
            self._render()

        self._jobs_task = self._spawn(read, "read of the jobs on the selection")

    def _read_spend_now_and_then(self) -> None:
        plane = self.plane
        if plane is None or time.monotonic() - self._spend_read_at < SPEND_REFRESH_S:
            return
        self._spend_read_at = time.monotonic()

        async def read() -> None:
            try:
                report = await plane.cost_report(self.caller)
            except ControlError:
                self.model.life.spend = None  # a caller without the role sees no spend
                return
            if self.model.life.attached:
                self.model.life.spend = headline(report)

        self._spawn(read, "read of the costs")


def _live(plane: FrontEndPlane) -> str:
    from tidectl.console.server.attach import AttachedPlane

    if isinstance(plane, AttachedPlane):
        return f"live, attached to the tidectl service on {plane.path}"
    return "live"


def _sentence(said: str, otherwise: str) -> str:
    text = said or otherwise
    return text[:1].upper() + text[1:]


def _running_loop() -> asyncio.AbstractEventLoop:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        raise PanelError(
            "ClusterPanel runs its control plane on the running asyncio loop, and none runs "
            "here: use it in a Jupyter notebook (whose kernel runs one), or from a coroutine "
            "(asyncio.run)"
        ) from None
