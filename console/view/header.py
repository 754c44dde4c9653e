"""The console's header: the cluster at a glance, from ``Fleet.summary()``."""

from __future__ import annotations

from rich.text import Text

from tidectl.console.fleet import FleetSummary
from tidectl.console.model import LinkState, Severity
from tidectl.console.view.badges import HEALTH_STYLE, HEALTH_SYMBOL, HEALTH_WORD, LINK_STYLE


def header_text(cluster: str, summary: FleetSummary) -> Text:
    """Two lines: nodes by site and link; GPUs, utilisation, and nodes by health."""
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
    return text
