"""The locator on its own: every key of any valid document gets the line it is written on."""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterator
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.console.test_config import _toml_string, _toml_value
from tidectl.console.config.locate import Locator

_BARE = re.compile(r"[A-Za-z0-9_-]+")
_keys = st.text(alphabet=st.sampled_from("ab_-1 .\"'\\é#="), min_size=1, max_size=4)
_leaves = st.integers() | st.booleans() | st.text(max_size=8) | st.floats(allow_nan=False)
_inline = st.recursive(
    _leaves,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_keys, inner, max_size=3),
    max_leaves=6,
)
_tables = st.recursive(
    st.dictionaries(_keys, _inline, max_size=3),
    lambda inner: st.dictionaries(
        _keys, _inline | inner | st.lists(inner, min_size=1, max_size=2), max_size=3
    ),
    max_leaves=8,
)


def _key_text(key: str) -> str:
    return key if _BARE.fullmatch(key) else _toml_string(key)


def _write_tables(table: dict[str, Any], path: list[str], out: list[str]) -> None:
    """TOML with [headers] and [[arrays of tables]] (inline values for everything else)."""
    nested = {}
    for key, value in table.items():
        is_table = isinstance(value, dict) and not _inline_only(value)
        is_array = isinstance(value, list) and value and all(isinstance(v, dict) for v in value)
        if is_table or is_array:
            nested[key] = value
        else:
            out.append(f"{_key_text(key)} = {_toml_value(value)}  # {key!r}")
    for key, value in nested.items():
        header = ".".join(_key_text(part) for part in [*path, key])
        for entry in value if isinstance(value, list) else [value]:
            out.append(f"[[{header}]]" if isinstance(value, list) else f"[{header}]")
            _write_tables(entry, [*path, key], out)


def _inline_only(value: dict[str, Any]) -> bool:
    return not value  # an empty table is written inline, as {}


def _paths(value: Any, where: tuple[str | int, ...] = ()) -> Iterator[tuple[str | int, ...]]:
    if where:
        yield where
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _paths(item, (*where, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _paths(item, (*where, index))


@settings(max_examples=60, deadline=None)
@given(document=_tables)
def test_the_locator_finds_every_key_of_any_document(document: dict[str, Any]) -> None:
    lines: list[str] = []
    _write_tables(document, [], lines)
    text = "\n".join(lines) + "\n"
    parsed = tomllib.loads(text)

    located = Locator(text).lines

    for where in _paths(parsed):
        assert where in located, (where, text)
        if (
            isinstance(where[-1], str)
            and where[:-1]
            and not isinstance(_get(parsed, where), dict | list)
        ):
            # A scalar: its line holds its key (the writer ends each line with the key's repr).
            assert repr(where[-1]) in lines[located[where] - 1] or "{" in lines[located[where] - 1]


def _get(document: Any, where: tuple[str | int, ...]) -> Any:
    for part in where:
        document = document[part]
    return document
