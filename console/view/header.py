"""The console's header: the cluster at a glance, from ``Fleet.summary()`` and, with a
control plane, its cloud nodes, what they cost an hour and have cost today (against the
budgets), and the jobs waiting for nodes."""

from __future__ import annotations

from rich.text import Text

from tidectl.console.fleet import FleetSummary
from tidectl.console.lifecycle.states import State
from tidectl.console.model import LinkState, Severity
from tidectl.console.view.badges import (
    HEALTH_STYLE,
    HEALTH_SYMBOL,
    HEALTH_WORD,
    LIFE_STYLE,
    LINK_STYLE,
)
from tidectl.console.view.life import LifeSummary


def money_per_hour(dollars: float) -> str:
    return f"${dollars:,.2f}/h"


def header_text(cluster: str, summary: FleetSummary, life: LifeSummary | None = None) -> Text:
    """Two lines: nodes by site and link (and, with ``life``, cloud nodes by lifecycle state
    and the burn rate); GPUs, utilisation, and nodes by health."""
    text = Text(no_wrap=True, overflow="ellipsis")
    text.append(f"tidectl · {cluster}", style="bold")
    text.append(f"  {summary.nodes} nodes")
    if len(summary.by_site) > 1 or summary.by_site:
        sites = ", ".join(f"{site} {n}" for site, n in sorted(summary.by_site.items()))
        text.append(f" ({sites})")
    text.append(" · ")
    links = sorted(summary.by_link.items(), key=lambda item: list(LinkState).index(item[0]))
    for i, (link, n) in enumerate(links):
        if i:
            text.append(", ")
        text.append(f"{n} {link.value}", style=LINK_STYLE[link])
    if life is not None:
        _append_life(text, life)
    text.append("\n")
    text.append(f"GPUs {summary.gpus_total}, {summary.gpus_in_use} in use")
    util = summary.gpu_util_mean
    text.append(" · mean util " + ("-" if util is None else f"{util:.0f}%"))
    text.append(" · ")
    for i, level in enumerate((Severity.CRITICAL, Severity.WARN, Severity.UNKNOWN, Severity.OK)):
        if i:
            text.append("  ")
        n = summary.by_health.get(level, 0)
        style = HEALTH_STYLE[level] if n else "dim"
        text.append(f"{HEALTH_SYMBOL[level]} {n} {HEALTH_WORD[level]}", style=style)
    if life is not None and life.pending is not None and life.pending.jobs:
        pending = life.pending
        text.append(f" · pending {pending.jobs} jobs, {pending.gpus} GPUs", style="bold")
    return text


def _append_life(text: Text, life: LifeSummary) -> None:
    text.append(f" · cloud {life.cloud_nodes}")
    if life.cloud:
        text.append(" (")
        states = [state for state in State if life.cloud.get(state)]  # in lifecycle order
        for i, state in enumerate(states):
            if i:
                text.append(", ")
            text.append(f"{life.cloud[state]} {state.value}", style=LIFE_STYLE[state])
        text.append(")")
    text.append(" · burn ")
    text.append(money_per_hour(life.burn_rate), style="bold" if life.burn_rate else "")
    if life.spend is not None:
        text.append(" · ")
        text.append_text(life.spend.text())
