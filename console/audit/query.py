"""Which records a reader wants: since when, whose, of which action; and the newest of them.

``tidectl audit show`` and the console's audit view (through ``ControlPlane.audit_records``)
choose records the same way, here. A record's ``at`` is a fixed-width UTC time, so "since"
compares the strings: no record's time has to be parsed to be kept or left out.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final

from tidectl.console.audit.record import AuditRecord, timestamp

__all__ = ["SINCE_HELP", "AuditQuery", "newest", "parse_since"]

#: What a ``since`` may be, for the sentence of a refusal.
SINCE_HELP: Final = (
    "give a time (2025-11-29T05:00Z, 2025-11-29) or a duration back from now (90s, 15m, 2h, 7d, 1w)"
)
_DURATION: Final = re.compile(r"(\d+)([smhdw])")
_UNIT_S: Final = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


@dataclass(frozen=True, slots=True)
class AuditQuery:
    """Records written at or after ``since`` (a naive time is UTC), by ``actor``, of
    ``action``; None leaves that out of the choice."""

    since: datetime | None = None
    actor: str | None = None
    action: str | None = None

    def __post_init__(self) -> None:
        if self.since is not None and self.since.tzinfo is None:
            object.__setattr__(self, "since", self.since.replace(tzinfo=UTC))

    @property
    def narrows(self) -> bool:
        """Whether any record could be left out."""
        return (self.since, self.actor, self.action) != (None, None, None)

    def matches(self, record: AuditRecord, *, after: str | None = None) -> bool:
        """Whether ``record`` is wanted; ``after``: ``since`` as a record's ``at`` (computed
        once by a caller that tests many records)."""
        if after is None and self.since is not None:
            after = timestamp(self.since)
        return (
            (self.actor is None or record.actor == self.actor)
            and (self.action is None or record.action == self.action)
            and (after is None or record.at >= after)
        )


def newest(
    records: Iterable[AuditRecord], query: AuditQuery, limit: int | None = None
) -> tuple[list[AuditRecord], int]:
    """The last ``limit`` records ``query`` matches (all of them when None), oldest first,
    and how many matched in all."""
    if limit is not None and limit < 0:
        raise ValueError(f"limit must be 0 or more, not {limit}")
    after = timestamp(query.since) if query.since is not None else None
    kept: deque[AuditRecord] = deque(maxlen=limit)
    matched = 0
    for record in records:
        if query.matches(record, after=after):
            matched += 1
            kept.append(record)
    return list(kept), matched


def parse_since(value: str, now: datetime) -> datetime:
    """A ``since`` as written: an ISO-8601 time (UTC unless it says otherwise) or a duration
    back from ``now`` (``90s``, ``15m``, ``2h``, ``7d``, ``1w``). Raises ValueError with
    :data:`SINCE_HELP` for anything else."""
    duration = _DURATION.fullmatch(value.strip())
    if duration is not None:
        return now - timedelta(seconds=int(duration[1]) * _UNIT_S[duration[2]])
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        raise ValueError(SINCE_HELP) from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment
