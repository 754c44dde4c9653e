"""The audit view's ``/`` filter: a few words, every one of which a record must match.

    actor:ana           records of that actor (asked of the control plane)
    action:drain        records of that action (asked of the control plane)
    since:2h            records from then: a duration back from each refresh, or a UTC time
    denied  gpu001      anything else: a substring of the seq, time, actor, front end,
                        action, targets, decision, rule, outcome or request id
                        (case-insensitive), among the records read
    !refused            ``!`` before a word negates it

``actor:``, ``action:`` and ``since:`` choose which records the control plane reads (the
newest 500 of those); the other words narrow what it returned. A word that cannot mean
anything (``since:yesterday``) is a ``FilterError`` with a sentence.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from tidectl.console.audit import AuditQuery, AuditRecord, parse_since
from tidectl.console.audit.query import SINCE_HELP
from tidectl.console.view.audit import targets_text
from tidectl.console.view.filter import FilterError

__all__ = ["AuditFilter", "parse_audit_filter"]

_Term = Callable[[AuditRecord], bool]
_ASKED = ("actor", "action", "since")


@dataclass(frozen=True, slots=True)
class AuditFilter:
    """A parsed filter: what the control plane is asked for, and the words kept here."""

    text: str = ""
    actor: str | None = None
    action: str | None = None
    #: As typed: a duration counts back from each refresh, not from when it was typed.
    since: str | None = None
    terms: tuple[_Term, ...] = ()

    def query(self, now: datetime) -> AuditQuery:
        since = parse_since(self.since, now) if self.since is not None else None
        return AuditQuery(since=since, actor=self.actor, action=self.action)

    def keeps(self, record: AuditRecord) -> bool:
        return all(term(record) for term in self.terms)

    @property
    def worded(self) -> bool:
        return bool(self.terms)


def parse_audit_filter(text: str, now: datetime) -> AuditFilter:
    """``text`` as a filter; ``now`` checks a ``since:`` can be read. Raises FilterError."""
    asked: dict[str, str] = {}
    terms: list[_Term] = []
    for word in text.split():
        field, sep, value = word.partition(":")
        if sep and field.lower() in _ASKED:
            key = field.lower()
            if not value:
                raise FilterError(f"{word!r} needs a value after the colon, e.g. {key}:x")
            if key in asked:
                raise FilterError(f"give one {key}: word, not {key}:{asked[key]} and {word}")
            if key == "since":
                try:
                    parse_since(value, now)
                except ValueError:
                    raise FilterError(f"{word!r}: {SINCE_HELP}") from None
            asked[key] = value
        else:
            terms.append(_term(word))
    return AuditFilter(
        text.strip(), asked.get("actor"), asked.get("action"), asked.get("since"), tuple(terms)
    )


def _term(word: str) -> _Term:
    if word.startswith("!") and len(word) > 1:
        inner = _term(word[1:])
        return lambda record: not inner(record)
    needle = word.lower()
    return lambda record: needle in _haystack(record)


def _haystack(record: AuditRecord) -> str:
    parts = [
        str(record.seq),
        record.at,
        record.actor,
        record.frontend,
        record.action,
        targets_text(record.targets),
        *record.targets,
        record.decision,
        record.rule,
        record.outcome,
        record.request_id,
    ]
    return " ".join(parts).lower()
