"""What ``[[nodes]]`` means: node sets expanded into one :class:`NodeSpec` per node.

A ``[[nodes]]`` table names its nodes with a ClusterShell node set (``gpu[001-128]``) and says
how to reach them: an address pattern, a port or a first port to number from, a login name and
a site. Node sets are sized before ClusterShell expands them, so a typo cannot eat the memory.
"""

from __future__ import annotations

import re
import string
import typing
from collections.abc import Iterator
from typing import Any, Final

from ClusterShell.NodeSet import (
    RESOLVER_NOGROUP,
    NodeSet,
    NodeSetException,
)
from ClusterShell.RangeSet import RangeSetException

from tidectl.console.config.errors import ConfigError, as_toml, did_you_mean, on_line
from tidectl.console.config.model import NodeSpec, Site, SshSettings
from tidectl.console.config.readers import login_name
from tidectl.console.config.table import Table

__all__ = ["MAX_NODES", "read_nodes"]

#: Nodes one file may define, in all. Far above any single Slurm cluster; low enough that a
#: typo like ``gpu[1-10000000]`` fails at once instead of eating the machine's memory
#: (ClusterShell's RangeSet holds every index as a string).
MAX_NODES: Final = 100_000

_NODE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]*", re.ASCII)
_PLACEHOLDERS: Final = ("name", "index")


def read_nodes(
    tables: list[Table], ssh: SshSettings, sites: tuple[Site, ...], *, sites_declared: bool
) -> tuple[NodeSpec, ...]:
    """Every node of every ``[[nodes]]`` table, in file order; each node in one table only.

    ``sites_declared`` says whether ``sites`` came from ``[[sites]]`` tables or is the implicit
    default: an unknown site is then fixed differently (define it, or drop ``site``).
    """
    owner: dict[str, int] = {}  # node name -> index of the [[nodes]] that lists it
    node_sets: list[Any] = []
    specs: list[NodeSpec] = []
    for set_index, table in enumerate(tables):
        names_text = table.required_string("names", example='names = "gpu[001-128]"')
        site = table.string("site", None, example='site = "dc1"')
        pattern = table.string("address", "{name}", example='address = "{name}.ib.example"')
        port = table.integer("port", None, 1, 65535)
        port_base = table.integer("port_base", None, 1, 65535)
        user = login_name(table, "user", required=False) or ssh.user
        labels = _labels(table.table("labels"))
        table.finish()
        assert pattern is not None
        site = _site_of(table, site, sites, sites_declared=sites_declared)
        if port is not None and port_base is not None:
            raise table.error(
                "port_base",
                f"{table.title} has both port and port_base; keep port to give every node "
                "the same port, or port_base to number them from it",
            )
        _check_pattern(table, pattern)
        node_set = _node_set(table, names_text, budget=MAX_NODES - len(specs))
        names = list(node_set)
        if port_base is not None and port_base + len(names) - 1 > 65535:
            raise table.error(
                "port_base",
                f"port_base {port_base} + {len(names)} nodes runs past port 65535 "
                f"(in {table.title}); start at {65536 - len(names)} or lower",
            )
        # port_base numbers the ports; otherwise one port for all, the set's or [ssh]'s.
        first_port = port_base if port_base is not None else port or ssh.port
        port_step = 1 if port_base is not None else 0
        for index, name in enumerate(names):
            if name in owner:
                raise _listed_twice(tables, node_sets, owner[name], set_index, node_set)
            owner[name] = set_index
            specs.append(
                NodeSpec(
                    name=name,
                    address=_address(table, pattern, name, index),
                    port=first_port + index * port_step,
                    site=site,
                    user=user,
                    labels=dict(labels),
                )
            )
        node_sets.append(node_set)
    return tuple(specs)


def _site_of(
    table: Table, site: str | None, sites: tuple[Site, ...], *, sites_declared: bool
) -> str:
    names = [known.name for known in sites]
    if site is None:
        if len(names) == 1:
            return names[0]
        raise table.error(
            None,
            f"{table.title} has no site and the file defines {len(names)} "
            f"({', '.join(names)}); add a line like site = {as_toml(names[0])}",
        )
    if site not in names:
        if not sites_declared:
            fix = f'add a [[sites]] table with name = "{site}", or remove site'
        else:
            fix = f"the file's sites are {', '.join(names)}{did_you_mean(site, names)}"
        raise table.error("site", f'site "{site}" is not defined (in {table.title}); {fix}')
    return site


def _labels(table: Table | None) -> dict[str, str]:
    if table is None:
        return {}
    labels: dict[str, str] = {}
    for key in list(table.data):
        value = table.string(key, None, example=f'{key} = "..."')
        assert value is not None
        labels[key] = value
    return labels


def _check_pattern(table: Table, pattern: str) -> None:
    try:
        fields = [field for _, field, _, _ in string.Formatter().parse(pattern)]
    except ValueError:
        raise table.error(
            "address",
            f"address = {as_toml(pattern)} has an unmatched brace (in {table.title}); "
            "placeholders are {name} and {index}, and a literal brace is written {{ or }}",
        ) from None
    for field in fields:
        if field is not None and field not in _PLACEHOLDERS:
            raise table.error(
                "address",
                f"address = {as_toml(pattern)} has an unknown placeholder {{{field}}} "
                f"(in {table.title}); the placeholders are {{name}} and {{index}}"
                + did_you_mean(field, _PLACEHOLDERS),
            )


def _address(table: Table, pattern: str, name: str, index: int) -> str:
    try:
        address = pattern.format(name=name, index=index)
    except (ValueError, KeyError, IndexError) as exc:  # a format spec that does not fit
        raise table.error(
            "address",
            f"address = {as_toml(pattern)} cannot be filled in for node {name} "
            f"({exc}) (in {table.title}); check the format after the colon, as in "
            "{index:03d}",
        ) from None
    if not address.strip() or any(char.isspace() for char in address):
        raise table.error(
            "address",
            f"address = {as_toml(pattern)} gives {as_toml(address)} for node {name}, "
            f"which is not a host name (in {table.title})",
        )
    return address


def _node_set(table: Table, text: str, budget: int) -> Any:
    listed = _listed_size(text)
    if listed > budget:
        raise table.error(
            "names",
            f"names = {as_toml(text)} lists too many nodes (in {table.title}); "
            f"a file may define at most {MAX_NODES:,} nodes; check the ranges",
        )
    try:
        node_set = NodeSet(text, resolver=RESOLVER_NOGROUP)
    except (NodeSetException, RangeSetException) as exc:
        raise table.error(
            "names",
            f"names = {as_toml(text)} is not a node set (in {table.title}): "
            + _node_set_problem(exc),
        ) from None
    count = len(node_set)
    if count == 0:
        raise table.error(
            "names",
            f"names = {as_toml(text)} names no nodes (in {table.title}); give a node set like "
            '"gpu[001-128]"',
        )
    if count > budget:
        raise table.error(
            "names",
            f"names = {as_toml(text)} names {count:,} nodes (in {table.title}); "
            f"a file may define at most {MAX_NODES:,} nodes",
        )
    for name in _first(node_set, lambda n: _NODE_NAME.fullmatch(n) is None):
        why = (
            "node groups (@group) are not expanded here; list the nodes"
            if name.startswith("@")
            else 'a node name is letters, digits, "-", "_" and "."'
        )
        raise table.error(
            "names",
            f"names = {as_toml(text)} gives {as_toml(name)}, which is not a node name "
            f"(in {table.title}); {why}",
        )
    return node_set


def _listed_twice(
    tables: list[Table], node_sets: list[Any], first: int, second: int, node_set: Any
) -> ConfigError:
    both = node_sets[first].intersection(node_set)
    line = tables[second].file.line_of(("nodes", first, "names"))
    plural = len(both) != 1
    return tables[second].error(
        "names",
        f"node{'s' if plural else ''} {both} {'are' if plural else 'is'} listed in "
        f"[[nodes]] #{first + 1}{on_line(line)} and again in [[nodes]] #{second + 1}; "
        f'list each node once (a set can leave nodes out: "gpu[001-128]!gpu007")',
    )


def _first(node_set: Any, wrong: typing.Callable[[str], bool]) -> Iterator[str]:
    """At most one name of ``node_set`` for which ``wrong`` holds."""
    for name in node_set:
        if wrong(name):
            yield name
            return


_BRACKETS = re.compile(r"\[([^\]]*)\]")
_RANGE = re.compile(r"(\d+)\s*-\s*-?\s*(\d+)(?:\s*/\s*(\d+))?")


def _listed_size(text: str) -> int:
    """An upper bound of the indexes ClusterShell would create for ``text``, before it does."""
    total = 0
    for inside in _BRACKETS.findall(text):
        for low, high, step in _RANGE.findall(inside):
            if len(low) > 9 or len(high) > 9:
                return MAX_NODES + 1
            total += abs(int(high) - int(low)) // max(int(step or 1), 1) + 1
    return total


_NODE_SET_PROBLEMS: Final = (
    ("invalid values in range", "a range goes from high to low; write it low to high"),
    (
        "padding length mismatch",
        "the ends of a zero-padded range have different widths; write both ends with the same "
        "number of digits, like 001-128",
    ),
    ("empty range", "a range is empty; put numbers between the brackets and the commas"),
    ("missing bracket", 'a "[" is never closed; close it with "]"'),
    ("illegal closing bracket", 'a "]" has no "[" before it'),
    ("illegal opening bracket", 'a "[" is opened inside another; ranges do not nest'),
    (
        "cannot convert string to integer",
        'a range holds something other than numbers; write ranges like "[001-128]" or "[1,3,5-9]"',
    ),
    ("missing nodeset operand", 'an operator ("," "!" "&" "^") has nothing on one side'),
)


def _node_set_problem(exc: Exception) -> str:
    """ClusterShell's NodeSetParseError message, as a plain phrase."""
    detail = str(exc)
    for needle, phrase in _NODE_SET_PROBLEMS:
        if needle in detail:
            return phrase
    detail = detail.replace('"', "'")
    return f'{detail}; write it like "gpu[001-128]" or "gpu[001-064],login[1-2]"'
