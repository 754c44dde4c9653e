"""The ``/`` filter of the fleet table: a few words, every one of which a row must match.

    gpu[001-064]        nodes of a node set (any word with ``[`` or ``,``)
    health:crit  h:warn health (a prefix of ok, unknown, warn, critical)
    site:dc1  pool:a100 site or pool (prefix)
    link:unreach        connection state (prefix)
    life:drain          lifecycle state (prefix; ``life:-`` for nodes the store does not know)
    code:ib             a finding code (prefix: ``code:ib`` matches every ib.* finding)
    xid                 anything else: a substring of name, site, pool, link, codes or the
                        worst finding's sentence (case-insensitive)
    !health:ok          ``!`` before a word negates it

An empty filter matches everything. A word that cannot mean anything (``health:purple``, a
broken node set) is a ``FilterError`` with a sentence, and the table keeps its last filter.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from tidectl.console.lifecycle.states import State
from tidectl.console.model import LinkState, Severity
from tidectl.console.nodesets import NodeSetError, expand
from tidectl.console.view.rows import NodeRow

Predicate = Callable[[NodeRow], bool]

FIELDS = ("health", "h", "site", "pool", "link", "life", "code")


class FilterError(ValueError):
    """A filter word that means nothing; the message says which and what would."""


@dataclass(frozen=True, slots=True)
class Filter:
    text: str
    terms: tuple[Predicate, ...] = ()

    def matches(self, row: NodeRow) -> bool:
        return all(term(row) for term in self.terms)

    @property
    def empty(self) -> bool:
        return not self.terms


def parse_filter(text: str) -> Filter:
    terms = tuple(_term(word) for word in text.split())
    return Filter(text.strip(), terms)


def _term(word: str) -> Predicate:
    if word.startswith("!") and len(word) > 1:
        inner = _term(word[1:])
        return lambda row: not inner(row)
    field, sep, value = word.partition(":")
    if sep and field.lower() in FIELDS:
        return _field_term(field.lower(), value.lower(), word)
    if "[" in word or "," in word:
        try:
            names = frozenset(expand(word))
        except NodeSetError as exc:
            raise FilterError(f"{word!r} is not a node set: {exc}") from exc
        return lambda row: row.name in names
    needle = word.lower()
    return lambda row: needle in _haystack(row)


def _field_term(field: str, value: str, word: str) -> Predicate:
    if not value:
        raise FilterError(f"{word!r} needs a value after the colon, e.g. {field}:x")
    if field in ("health", "h"):
        levels = {s for s in Severity if s.word.startswith(value)}
        if not levels:
            words = ", ".join(s.word for s in Severity)
            raise FilterError(f"{word!r}: no health starts with {value!r} (health is {words})")
        return lambda row: row.health in levels
    if field == "link":
        states = {s for s in LinkState if s.value.startswith(value)}
        if not states:
            words = ", ".join(s.value for s in LinkState)
            raise FilterError(f"{word!r}: no link state starts with {value!r} ({words})")
        return lambda row: row.link in states
    if field == "life":
        return _life_term(value, word)
    if field == "site":
        return lambda row: row.site.lower().startswith(value)
    if field == "pool":
        return lambda row: row.pool.lower().startswith(value)
    return lambda row: any(code.startswith(value) for code in row.codes)


def _life_term(value: str, word: str) -> Predicate:
    if value == "-":
        return lambda row: row.life is None
    lives = {s for s in State if s.value.startswith(value)}
    if not lives:
        words = ", ".join(s.value for s in State)
        raise FilterError(
            f"{word!r}: no lifecycle state starts with {value!r} ({words}, or - for none)"
        )
    return lambda row: row.life in lives


def _haystack(row: NodeRow) -> str:
    parts = [row.name, row.site, row.pool, row.link.value, row.health.word, *row.codes]
    if row.life is not None:
        parts.append(row.life.value)
    if row.worst:
        parts.append(row.worst)
    return " ".join(parts).lower()
