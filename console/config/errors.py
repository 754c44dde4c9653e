"""What a refused ``cluster.toml`` looks like: one :class:`ConfigError`, and the helpers that
phrase values and suggestions in its sentences the same way everywhere."""

from __future__ import annotations

import difflib
import os
import typing
from pathlib import Path
from typing import Final

__all__ = ["ConfigError", "as_toml", "did_you_mean", "kind_of", "on_line"]


class ConfigError(Exception):
    """``cluster.toml`` cannot be used.

    ``path`` is the file as the caller named it, ``line`` is 1-based (None when the problem is
    the file as a whole, such as a missing table), ``message`` is a sentence saying what is
    wrong and what to do. ``str()`` is ``"{path}:{line}: {message}"``, the form editors and
    terminals turn into a link.
    """

    def __init__(self, path: str | os.PathLike[str], line: int | None, message: str) -> None:
        super().__init__(path, line, message)
        self.path = Path(path)
        self.line = line
        self.message = message

    def __str__(self) -> str:
        where = str(self.path) if self.line is None else f"{self.path}:{self.line}"
        return f"{where}: {self.message}"


_KINDS: Final = (
    (bool, "a boolean"),  # before int: a bool is an int to Python
    (int, "an integer"),
    (float, "a decimal number"),
    (str, "a string"),
    (list, "a list"),
    (dict, "a table"),
)


def kind_of(value: object) -> str:
    """What a TOML value is, in words, with its article."""
    for kind, words in _KINDS:
        if isinstance(value, kind):
            return words
    return "a date or time"


def as_toml(value: object) -> str:
    """A value as it would be written in TOML (for examples in messages)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return str(value)


def did_you_mean(word: str, choices: typing.Iterable[str]) -> str:
    """``'; did you mean "x"?'`` for the closest of ``choices``, or nothing when none is close."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f'; did you mean "{close[0]}"?' if close else ""


def on_line(line: int | None) -> str:
    """``" (line N)"`` to point at an earlier mention, or nothing when its line is unknown."""
    return "" if line is None else f" (line {line})"
