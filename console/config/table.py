"""Reading one TOML table of ``cluster.toml``: typed values, checked ranges, no unknown keys.

Every table reader asks a :class:`Table` for its keys one by one; the table turns a value of the
wrong type or out of range into a :class:`ConfigError` on the key's line, and refuses the keys
nobody asked for. What a table's values mean together is left to the readers.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

from tidectl.console.config.errors import ConfigError, as_toml, did_you_mean, kind_of
from tidectl.console.config.locate import Locator, Where

__all__ = ["ConfigFile", "Table"]


class ConfigFile:
    """The file being read: its path, its folder, and errors that point at the line of a key.

    The lines are scanned for only when the first error is made: a file that loads never pays.
    """

    def __init__(self, text: str, path: Path) -> None:
        self.text = text
        self.path = path
        # Absolute, so that a later chdir cannot move what relative paths point at.
        self.folder = Path(os.path.abspath(path)).parent
        self._locator: Locator | None = None

    def line_of(self, where: Where) -> int | None:
        if self._locator is None:
            self._locator = Locator(self.text)
        return self._locator.line_of(where)

    def error(self, where: Where, message: str) -> ConfigError:
        return ConfigError(self.path, self.line_of(where), message)


class Table:
    """One TOML table being read. Each key is asked for once; a key never asked for is unknown.

    ``where`` locates it in the document, ``title`` is how a person sees it (``[ssh]``,
    ``[[nodes]] #2``) and ``prefix`` is put before key names in messages (``labels.``).
    """

    def __init__(
        self, file: ConfigFile, data: dict[str, Any], where: Where, title: str, prefix: str = ""
    ) -> None:
        self.file = file
        self.data = data
        self.where = where
        self.title = title
        self.prefix = prefix
        self.asked: list[str] = []

    # Errors

    def error(self, key: str | int | None, message: str) -> ConfigError:
        return self.file.error(self.where if key is None else (*self.where, key), message)

    def finish(self) -> None:
        """Refuse the keys nobody asked for (in file order: the first one is reported)."""
        for key in self.data:
            if key not in self.asked:
                known = ", ".join(self.asked)
                suggestion = did_you_mean(key, self.asked) or f"; {self.title} takes {known}"
                raise self.error(key, f'unknown key "{key}" in {self.title}{suggestion}')

    def _wrong_type(self, key: str, value: object, wanted: str, example: object) -> ConfigError:
        name = self.prefix + key
        advice = ""
        if isinstance(value, str) and not isinstance(example, str):
            if _looks_like(value, example):
                advice = f"; write it without quotes: {key} = {value.strip()}"
        elif isinstance(example, str) and isinstance(value, int | float):
            advice = f"; put it in quotes: {key} = {as_toml(as_toml(value))}"
        elif isinstance(example, int) and isinstance(value, float) and value.is_integer():
            advice = f"; write a whole number: {key} = {int(value)}"
        elif isinstance(example, list) and not isinstance(value, list):
            advice = f"; write a list: {key} = [{as_toml(value)}]"
        return self.error(
            key, f"{name} must be {wanted}, got {kind_of(value)} (in {self.title}){advice}"
        )

    def out_of_range(self, key: str, value: object, rule: str) -> ConfigError:
        shown = str(value) if len(str(value)) <= 24 else str(value)[:20] + "..."
        return self.error(key, f"{self.prefix}{key} must be {rule}, got {shown} (in {self.title})")

    # Readers. Each returns the default when the key is absent (TOML has no null, so absent
    # and None are the same thing).

    def take(self, key: str) -> Any:
        self.asked.append(key)
        return self.data.get(key)

    def string(
        self, key: str, default: str | None, *, example: str, prose: bool = False
    ) -> str | None:
        """A non-empty string, no control characters (``prose``: may be empty, have line breaks)."""
        value = self.take(key)
        if value is None:
            return default
        if not isinstance(value, str):
            raise self._wrong_type(key, value, "a string", example)
        if not value.strip() and not prose:
            raise self.error(
                key, f"{self.prefix}{key} is empty (in {self.title}); give a value, like {example}"
            )
        allowed = "\n\t" if prose else ""
        if any((ord(char) < 32 or char == "\x7f") and char not in allowed for char in value):
            raise self.error(
                key,
                f"{self.prefix}{key} contains a control character (in {self.title}); remove it",
            )
        return value

    def required_string(self, key: str, *, example: str) -> str:
        value = self.string(key, None, example=example)
        if value is None:
            raise self.error(None, f'{self.title} is missing "{key}"; add a line like {example}')
        return value

    def integer(self, key: str, default: int | None, lo: int, hi: int) -> int | None:
        value = self.take(key)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int):
            raise self._wrong_type(key, value, "an integer", 0)
        if not lo <= value <= hi:
            raise self.out_of_range(key, value, f"between {lo} and {hi}")
        return value

    def number(
        self,
        key: str,
        default: float,
        *,
        above: float | None = None,
        at_least: float | None = None,
        at_most: float | None = None,
    ) -> float:
        value = self.take(key)
        if value is None:
            return default
        if not _is_number(value):
            raise self._wrong_type(key, value, "a number", 0.0)
        assert isinstance(value, int | float)
        if isinstance(value, float) and not math.isfinite(value):
            raise self.out_of_range(key, as_toml(value), "a finite number")
        if above is not None and not value > above:
            rule = f"greater than {above:g}"
        elif at_least is not None and not value >= at_least:
            rule = f"at least {at_least:g}"
        elif at_most is not None and not value <= at_most:
            rule = f"at most {at_most:g}"
        else:
            try:
                return float(value)
            except OverflowError:
                rule = "a number of a sensible size"
        if at_least is not None and at_most is not None:
            rule = f"between {at_least:g} and {at_most:g}"
        raise self.out_of_range(key, value, rule)

    def boolean(self, key: str, default: bool) -> bool:
        value = self.take(key)
        if value is None:
            return default
        if not isinstance(value, bool):
            raise self._wrong_type(key, value, "true or false", True)
        return value

    def list_of(self, key: str, wanted: type) -> list[Any] | None:
        value = self.take(key)
        if value is None:
            return None
        words = {int: "a list of integers", str: "a list of strings"}[wanted]
        if not isinstance(value, list):
            raise self._wrong_type(key, value, words, [])
        for index, item in enumerate(value):
            if isinstance(item, bool) or not isinstance(item, wanted):
                raise self.file.error(
                    (*self.where, key, index),
                    f"{self.prefix}{key} must be {words}, but item {index + 1} is {kind_of(item)} "
                    f"(in {self.title})",
                )
        return value

    def table(self, key: str) -> Table | None:
        value = self.take(key)
        if value is None:
            return None
        if not isinstance(value, dict):
            raise self._wrong_type(key, value, "a table", {})
        return Table(self.file, value, (*self.where, key), self.title, f"{key}.")


def _looks_like(text: str, example: object) -> bool:
    try:
        number = float(text.strip())
    except ValueError:
        return False
    return not isinstance(example, int) or number.is_integer()


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
