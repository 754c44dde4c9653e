"""How health and link states look: a symbol and a word, and a colour on top.

States are never told by colour alone: each has a symbol and a word that read the same on a
monochrome terminal or under ``NO_COLOR``. The colours are Rich styles.
"""

from __future__ import annotations

from tidectl.console.lifecycle.states import State
from tidectl.console.model import LinkState, Severity

HEALTH_SYMBOL = {
    Severity.OK: "✔",
    Severity.UNKNOWN: "?",
    Severity.WARN: "▲",
    Severity.CRITICAL: "✖",
}
HEALTH_WORD = {
    Severity.OK: "ok",
    Severity.UNKNOWN: "unknown",
    Severity.WARN: "warn",
    Severity.CRITICAL: "crit",
}
HEALTH_STYLE = {
    Severity.OK: "green",
    Severity.UNKNOWN: "yellow dim",
    Severity.WARN: "yellow",
    Severity.CRITICAL: "bold red",
}
LINK_STYLE = {
    LinkState.CONNECTING: "cyan",
    LinkState.CONNECTED: "cyan",
    LinkState.DEPLOYING: "cyan",
    LinkState.STREAMING: "green",
    LinkState.STALE: "yellow",
    LinkState.UNREACHABLE: "red",
    LinkState.AUTH_FAILED: "bold red",
    LinkState.HOST_KEY_MISMATCH: "bold red reverse",
    LinkState.AGENT_FAILED: "red",
    LinkState.STOPPED: "dim",
}
#: Link words that fit the table's column; the full value is in the node's detail.
LINK_WORD = {
    LinkState.STREAMING: "streaming",
    LinkState.HOST_KEY_MISMATCH: "hostkey-bad",
}


#: Lifecycle states (the words are the states' own): taking jobs, on the move, draining,
#: needing someone.
LIFE_STYLE = {
    State.REQUESTED: "cyan dim",
    State.PROVISIONING: "cyan",
    State.BOOTSTRAPPING: "cyan",
    State.JOINING: "cyan",
    State.ACTIVE: "green",
    State.DRAINING: "yellow",
    State.DRAINED: "yellow dim",
    State.TERMINATING: "magenta",
    State.TERMINATED: "dim",
    State.FAILED: "bold red",
}


def health_badge(health: Severity) -> str:
    return f"{HEALTH_SYMBOL[health]} {HEALTH_WORD[health]}"


def link_word(link: LinkState) -> str:
    return LINK_WORD.get(link, link.value)
