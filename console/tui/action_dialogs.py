"""The lifecycle actions' dialogs: burst (pool, count, cost), drain (jobs, reason), confirm.

Each dismisses with what the operator asked for (or None on Esc); the app carries it out
through the control plane. What they say comes from ``view.actions``.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import ClassVar, TypeVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Select, Static

from tidectl.console.config.model import PoolSpec
from tidectl.console.cost.budgets import BudgetStatus
from tidectl.console.lifecycle.records import NodeRecord
from tidectl.console.scheduler.base import Job
from tidectl.console.view.actions import (
    BurstForm,
    burst_form,
    drain_heading,
    job_line,
    live_in,
)

_R = TypeVar("_R")

PriceOf = Callable[[str], Awaitable[float | None]]
#: Every budget's status now (for the projection); raises what the plane raises.
BudgetsOf = Callable[[], Awaitable[Sequence[BudgetStatus]]]


@dataclass(frozen=True, slots=True)
class BurstRequest:
    pool: str
    count: int


class ActionDialog(ModalScreen[_R]):
    """A dialog Esc cancels (it dismisses with None)."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "Cancel", id="dialog.cancel"),
    ]

    def action_cancel(self) -> None:
        self.dismiss(None)


class BurstDialog(ActionDialog[BurstRequest | None]):
    """Pick a pool and a count; the cost an hour, and when the budgets would be reached at
    that burn, follow the count as it is typed."""

    def __init__(
        self,
        pools: Sequence[PoolSpec],
        records: Sequence[NodeRecord],
        price_of: PriceOf,
        budgets_of: BudgetsOf | None = None,
    ) -> None:
        super().__init__()
        self.pools = {pool.name: pool for pool in pools}
        self.records = list(records)
        self.price_of = price_of
        self.budgets_of = budgets_of
        #: The budgets' statuses, once read (None: not yet, or they could not be).
        self.budgets: Sequence[BudgetStatus] | None = None
        self.prices: dict[str, float | None] = {}
        self._asking: set[str] = set()  # pools whose price is being asked
        self.form: BurstForm | None = None

    def compose(self) -> ComposeResult:
        first = next(iter(self.pools))
        with Vertical(id="burst", classes="dialog"):
            yield Static(
                "Burst: add cloud nodes to a pool  (Enter bursts, Tab moves, Esc cancels)",
                classes="title",
            )
            yield Select(
                [(self._label(pool), pool.name) for pool in self.pools.values()],
                value=first,
                allow_blank=False,
                id="pool",
            )
            yield Input(value="1", placeholder="how many nodes", id="count", type="text")
            yield Static(id="cost")
            yield Static(id="projection")
            yield Static(id="problem", classes="problem")

    def _label(self, pool: PoolSpec) -> str:
        live = live_in(pool.name, self.records)
        return f"{pool.name}  ({pool.provider}, {live} of {pool.max_nodes} nodes)"

    def on_mount(self) -> None:
        self.query_one("#count", Input).focus()
        if self.budgets_of is not None:
            self.run_worker(self._ask_budgets(self.budgets_of), group="budgets")
        self._show()

    @property
    def pool(self) -> PoolSpec:
        value = self.query_one("#pool", Select).value
        return self.pools[str(value)]

    @on(Select.Changed, "#pool")
    @on(Input.Changed, "#count")
    def _show(self) -> None:
        pool = self.pool
        if pool.name not in self.prices and pool.name not in self._asking:
            # Once per pool, not per keystroke: a price asked of a service is a round trip.
            self._asking.add(pool.name)
            self.run_worker(self._ask_price(pool.name), group="price")
        self.form = burst_form(
            pool,
            self.query_one("#count", Input).value,
            live=live_in(pool.name, self.records),
            price=self.prices.get(pool.name),
            priced=pool.name in self.prices,
            budgets=self.budgets,
        )
        self.query_one("#cost", Static).update(self.form.cost)
        self.query_one("#projection", Static).update(self.form.projection)
        self.query_one("#problem", Static).update(self.form.problem or "")

    async def _ask_price(self, pool: str) -> None:
        try:
            price = await self.price_of(pool)
        except Exception:  # a price is a courtesy: its absence is said, not raised
            price = None
        self.prices[pool] = price
        self._show()

    async def _ask_budgets(self, budgets_of: BudgetsOf) -> None:
        try:
            self.budgets = await budgets_of()
        except Exception:  # a projection is a courtesy, like the price: left out if unread
            return
        self._show()

    @on(Input.Submitted, "#count")
    def _submit(self) -> None:
        self._show()
        form = self.form
        if form is not None and form.count is not None:
            self.dismiss(BurstRequest(form.pool, form.count))
        else:
            self.app.bell()


class DrainDialog(ActionDialog[str | None]):
    """The jobs a drain of ``node`` lets finish, and the reason; dismisses with the reason."""

    def __init__(
        self, node: str, jobs: Sequence[Job], reason: str, problem: str | None = None
    ) -> None:
        super().__init__()
        self.node = node
        self.jobs = list(jobs)
        self.reason = reason
        self.problem = problem

    def compose(self) -> ComposeResult:
        with Vertical(id="drain", classes="dialog"):
            yield Static(f"Drain {self.node}  (Enter drains, Esc cancels)", classes="title")
            if self.problem:
                yield Static(f"The jobs on it cannot be listed: {self.problem}", id="jobs")
            else:
                lines = [drain_heading(self.node, self.jobs)]
                now = time.time()  # Slurm's and the sim scheduler's clock: the wall's
                lines += [f"  {job_line(job, now)}" for job in self.jobs]
                yield Static("\n".join(lines), id="jobs")
            yield Static("Reason (the scheduler shows it):")
            yield Input(value=self.reason, id="reason")
            yield Static(id="problem", classes="problem")

    def on_mount(self) -> None:
        self.query_one("#reason", Input).focus()

    @on(Input.Submitted, "#reason")
    def _submit(self, event: Input.Submitted) -> None:
        reason = event.value.strip()
        if not reason:
            self.query_one("#problem", Static).update("Give a reason: the scheduler shows it.")
            self.app.bell()
            return
        self.dismiss(reason)


class TerminateDialog(ActionDialog[str | None]):
    """What a terminate ends (its preview: ``lines``, from ``view.actions``) and the reason it
    needs, typed by the operator; dismisses with the reason."""

    def __init__(self, lines: Sequence[str]) -> None:
        super().__init__()
        self.lines = list(lines)

    def compose(self) -> ComposeResult:
        with Vertical(id="terminate", classes="dialog"):
            yield Static(f"{self.lines[0]}  (Enter terminates, Esc cancels)", classes="title")
            yield Static("\n".join(self.lines[1:]))
            yield Static("Reason (kept in the audit log and in the node's history):")
            yield Input(placeholder="why it ends", id="reason")
            yield Static(id="problem", classes="problem")

    def on_mount(self) -> None:
        self.query_one("#reason", Input).focus()

    @on(Input.Submitted, "#reason")
    def _submit(self, event: Input.Submitted) -> None:
        reason = event.value.strip()
        if not reason:
            self.query_one("#problem", Static).update(
                "Give a reason: a terminate is destructive, and is recorded with it."
            )
            self.app.bell()
            return
        self.dismiss(reason)


class HostKeyDialog(ActionDialog[bool | None]):
    """A node's presented host key (``view.host_key``) and the word that trusts it; dismisses
    with True only once the word is typed."""

    def __init__(self, lines: Sequence[str], word: str) -> None:
        super().__init__()
        self.lines = list(lines)
        self.word = word

    def compose(self) -> ComposeResult:
        with Vertical(id="host-key", classes="dialog"):
            yield Static(f"{self.lines[0]}  (Esc cancels)", classes="title")
            yield Static("\n".join(self.lines[1:]))
            yield Input(placeholder=f"type {self.word} to accept", id="word")
            yield Static(id="problem", classes="problem")

    def on_mount(self) -> None:
        self.query_one("#word", Input).focus()

    @on(Input.Submitted, "#word")
    def _submit(self, event: Input.Submitted) -> None:
        if event.value.strip() != self.word:
            self.query_one("#problem", Static).update(
                f"Type {self.word} to trust this key, or press Esc: nothing is trusted otherwise."
            )
            self.app.bell()
            return
        self.dismiss(True)


class ConfirmDialog(ActionDialog[bool | None]):
    """A question; Enter or y says yes, Esc says no."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter,y", "confirm", "Yes", id="confirm.yes"),
    ]

    def __init__(self, lines: Sequence[str]) -> None:
        super().__init__()
        self.lines = list(lines)

    def compose(self) -> ComposeResult:
        with Vertical(id="confirm", classes="dialog"):
            yield Static(self.lines[0], classes="title")
            yield Static("\n".join(self.lines[1:]))
            yield Static("Enter or y: yes.  Esc: no.", classes="hint")

    def action_confirm(self) -> None:
        self.dismiss(True)
