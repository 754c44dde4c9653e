"""A playbook's YAML, read into values that remember their line.

PyYAML composes the text into nodes that carry their position; each node becomes a
:class:`Y`: the plain value (a scalar as YAML types it, a ``dict`` of ``Y`` or a ``list`` of
``Y``) and its 1-based line, so every later complaint can name the line it is about. Things
YAML itself lets pass and a playbook must not are refused here: a key given twice, a key that
is not a plain name (most often an unquoted ``{{ template }}``, which YAML reads as a
mapping), and more than one document.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tidectl.playbooks.errors import SchemaError

__all__ = ["Y", "compose"]


@dataclass(frozen=True, slots=True)
class Y:
    """One value of the document and the line it starts on; a mapping also knows the line of
    each of its keys."""

    value: Any
    line: int
    key_lines: dict[str, int] = field(default_factory=dict)

    def plain(self) -> Any:
        """The value with every ``Y`` inside unwrapped (for a variable's default)."""
        if isinstance(self.value, dict):
            return {k: v.plain() for k, v in self.value.items()}
        if isinstance(self.value, list):
            return [v.plain() for v in self.value]
        return self.value


def compose(text: str, path: Path) -> Y:
    """The document in ``text`` (from ``path``, named in errors); raises ``SchemaError``."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        line = mark.line + 1 if mark is not None else 1
        problem = error.problem or error.context or "unreadable"
        raise SchemaError(
            path,
            line,
            f"this is not valid YAML ({problem}); a value that starts with {{{{ must be "
            'quoted, like "{{ pool }}"',
        ) from None
    except yaml.YAMLError as error:  # no position: a stream-level problem
        raise SchemaError(path, 1, f"this is not valid YAML ({error})") from None
    if node is None:
        raise SchemaError(path, 1, "the playbook is empty; it needs at least name: and steps:")
    return _Composer(path).value(node)


class _Composer:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._scalars = yaml.constructor.SafeConstructor()

    def value(self, node: yaml.Node) -> Y:
        line = node.start_mark.line + 1
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node, line)
        if isinstance(node, yaml.SequenceNode):
            return Y([self.value(item) for item in node.value], line)
        assert isinstance(node, yaml.ScalarNode)
        try:
            scalar = self._scalars.construct_object(node, deep=True)
        except yaml.constructor.ConstructorError as error:
            raise SchemaError(
                self.path, line, f"this value cannot be read ({error.problem})"
            ) from None
        if not isinstance(scalar, str | int | float | bool) and scalar is not None:
            # Dates and binary: nothing in a playbook is one; a string is what was meant.
            scalar = str(node.value)
        return Y(scalar, line)

    def _mapping(self, node: yaml.MappingNode, line: int) -> Y:
        values: dict[str, Y] = {}
        key_lines: dict[str, int] = {}
        for key_node, value_node in node.value:
            key_line = key_node.start_mark.line + 1
            if not isinstance(key_node, yaml.ScalarNode):
                raise SchemaError(
                    self.path,
                    key_line,
                    "a key here is not a plain name; a value that starts with {{ must be "
                    'quoted, like ensure: "{{ nodes }}"',
                )
            key = str(key_node.value)
            if key == "<<":
                raise SchemaError(
                    self.path, key_line, "merge keys (<<) are not supported; write the keys out"
                )
            if key in values:
                raise SchemaError(
                    self.path,
                    key_line,
                    f"{key!r} is given twice here (also on line {key_lines[key]}); keep one",
                )
            values[key] = self.value(value_node)
            key_lines[key] = key_line
        return Y(values, line, key_lines)
