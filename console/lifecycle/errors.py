"""What the lifecycle store refuses, each with a sentence a person can act on.

A refused *move* is :class:`~tidectl.console.lifecycle.states.IllegalTransition` (it belongs to
the table); these are the store's own refusals.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["NotAStore", "SchemaTooNew", "StoreError", "TokenReused", "UnknownRecord"]


class StoreError(Exception):
    """The store cannot do what was asked; ``str()`` says why and what to do."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class SchemaTooNew(StoreError):
    """The file was written by a newer tidectl. It was left untouched."""

    def __init__(self, path: Path, found: int, known: int) -> None:
        super().__init__(
            f"{path}: the store has schema version {found}, and this tidectl knows versions up "
            f"to {known}; it was written by a newer tidectl, so upgrade tidectl (the file was "
            "not changed)"
        )
        self.path = path
        self.found = found
        self.known = known


class NotAStore(StoreError):
    """The file is not a tidectl store (not SQLite, or someone else's tables)."""


class UnknownRecord(StoreError):
    """A node, intent or instance the store has no row for."""


class TokenReused(StoreError):
    """An idempotency token already used for a request with other parameters."""
