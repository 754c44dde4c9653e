"""Variables in a playbook: ``{{ name }}`` in any string, filled in before anything runs.

A value that is a template and nothing else takes the variable's own type (``ensure:
"{{ nodes }}"`` is the number 4, not the text "4"); a template inside a longer string is
written into it. A variable given on the command line (``--var nodes=4``) is read as a YAML
scalar, so it gets the same type it would have in the file. A name no variable has is an
error on the line that uses it, before anything runs. Names in ``later`` (the run's own facts,
which ``notify`` messages may use) are left as they are, for the step to fill in.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

import yaml

from tidectl.playbooks.errors import PlaybookError, SchemaError
from tidectl.playbooks.source import Y

__all__ = ["fill", "fill_text", "parse_assignment"]

_TEMPLATE = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
_WHOLE = re.compile(r"\s*\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}\s*")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def parse_assignment(text: str) -> tuple[str, Any]:
    """``NAME=VALUE`` from ``--var``, the value read as YAML reads a scalar (``4`` is a
    number, ``true`` a boolean, anything else text). Raises ``PlaybookError``."""
    name, sep, raw = text.partition("=")
    name = name.strip()
    if not sep or not _NAME.fullmatch(name):
        raise PlaybookError(
            f"--var {text!r} is not NAME=VALUE with a variable's name (letters, digits, _)"
        )
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    if not isinstance(value, str | int | float | bool):
        value = raw  # a list or mapping was not meant: keep the text
    return name, value


def fill(y: Y, variables: Mapping[str, Any], path: Path, later: Collection[str] = ()) -> Y:
    """``y`` with every template filled from ``variables``; raises ``SchemaError``."""
    if isinstance(y.value, dict):
        return Y(
            {k: fill(v, variables, path, later) for k, v in y.value.items()}, y.line, y.key_lines
        )
    if isinstance(y.value, list):
        return Y([fill(v, variables, path, later) for v in y.value], y.line)
    if not isinstance(y.value, str) or "{{" not in y.value:
        return y
    return Y(_fill_string(y.value, variables, path, y.line, later), y.line)


def fill_text(text: str, facts: Mapping[str, Any]) -> str:
    """A string's remaining templates filled from ``facts`` (at run time); unknown ones stay."""
    return _TEMPLATE.sub(lambda m: _text(facts[m[1]]) if m[1] in facts else m[0], text)


def _fill_string(
    text: str, variables: Mapping[str, Any], path: Path, line: int, later: Collection[str]
) -> Any:
    for match in re.finditer(r"\{\{(.*?)(\}\}|$)", text):
        if not _TEMPLATE.fullmatch(match[0]):
            raise SchemaError(
                path,
                line,
                f"{match[0]!r} is not a template; write a variable's name between double "
                "braces, like {{ pool }}",
            )
        name = _TEMPLATE.fullmatch(match[0])[1]  # type: ignore[index]
        if name not in variables and name not in later:
            known = ", ".join(sorted(variables)) or "none"
            raise SchemaError(
                path,
                line,
                f"{{{{ {name} }}}} names no variable; declare it under vars: (variables: {known})",
            )
    whole = _WHOLE.fullmatch(text)
    if whole is not None and whole[1] in variables:
        return variables[whole[1]]
    return _TEMPLATE.sub(lambda m: _text(variables[m[1]]) if m[1] in variables else m[0], text)


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
