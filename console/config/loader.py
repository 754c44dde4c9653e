"""Reading ``cluster.toml``: TOML text in, a checked :class:`ClusterConfig` out.

Anything the loader cannot make sense of becomes one :class:`ConfigError` that names the file,
the line and, in a sentence, what is wrong and what to do. Unknown keys are errors (a typo must
never silently fall back to a default), and so is every value outside what the rest of the
control plane can work with.

This module reads the file and its top-level tables; what each table means is read by
:mod:`~tidectl.console.config.readers` and :mod:`~tidectl.console.config.nodes`, a value at a
time through :class:`~tidectl.console.config.table.Table`, and the line of a key is found by
:mod:`~tidectl.console.config.locate` only when there is an error to report.
"""

from __future__ import annotations

import difflib
import os
import re
import tomllib
from pathlib import Path
from typing import Any, Final

from tidectl.console.config.budgets import read_budgets, read_policies
from tidectl.console.config.collector import read_collector
from tidectl.console.config.data_classes import check_pool_classes, read_data_classes
from tidectl.console.config.errors import ConfigError, kind_of
from tidectl.console.config.keymap import read_console
from tidectl.console.config.model import ClusterConfig
from tidectl.console.config.nodes import MAX_NODES, read_nodes
from tidectl.console.config.pools import read_pools, read_scheduler
from tidectl.console.config.readers import read_agent, read_health, read_sites, read_ssh
from tidectl.console.config.roles import read_roles
from tidectl.console.config.server import read_server
from tidectl.console.config.store import read_audit, read_store
from tidectl.console.config.table import ConfigFile, Table

__all__ = ["MAX_NODES", "ConfigError", "load_config", "parse_config"]

_HINT_DOC: Final = "see docs/config.md"


def load_config(path: str | os.PathLike[str]) -> ClusterConfig:
    """Read and check the ``cluster.toml`` at ``path``; raise :class:`ConfigError` if unusable."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(
            path, None, f"no such file; pass the path of your cluster.toml ({_HINT_DOC})"
        ) from None
    except IsADirectoryError:
        raise ConfigError(
            path, None, "this is a folder; pass the path of the cluster.toml file in it"
        ) from None
    except OSError as exc:
        raise ConfigError(
            path, None, f"cannot read it ({exc.strerror}); check the file's permissions"
        ) from None
    try:
        # utf-8-sig: a byte-order mark some Windows editors add is not an error.
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise ConfigError(
            path, line, "this is not UTF-8 text; save the file as UTF-8 (TOML must be UTF-8)"
        ) from None
    return parse_config(text, path)


def parse_config(text: str, path: Path) -> ClusterConfig:
    """Check ``text`` as if read from ``path``: relative paths in it resolve against its folder."""
    path = Path(path)
    document = _parse_toml(text, path)
    return _read_document(ConfigFile(text, path), document)


# ---------------------------------------------------------------------------------------------
# TOML syntax


def _parse_toml(text: str, path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise _syntax_error(text, path, exc) from None
    except ValueError:  # not a TOMLDecodeError: Python's limit on digits in an integer
        long_number = _LONG_NUMBER.search(text)
        line = text.count("\n", 0, long_number.start()) + 1 if long_number else None
        raise ConfigError(
            path, line, "a number here has thousands of digits; no setting needs one that large"
        ) from None
    except RecursionError:
        raise ConfigError(
            path, None, "lists or inline tables are nested too deeply to read; flatten them"
        ) from None


_LONG_NUMBER = re.compile(r"[0-9_]{4000,}")


_TOML_COORDINATES = re.compile(
    r"^(?P<what>.*) \(at (?:line (?P<line>\d+), column (?P<col>\d+)|end of document)\)$",
    re.DOTALL,
)


def _syntax_error(text: str, path: Path, exc: tomllib.TOMLDecodeError) -> ConfigError:
    """tomllib's message, with its coordinates moved into our ``path:line:`` form."""
    match = _TOML_COORDINATES.match(str(exc))
    what = match["what"] if match else str(exc)
    line: int | None
    # Python 3.14 puts the coordinates on the exception; 3.11 only has them in the text.
    if isinstance(getattr(exc, "lineno", None), int):
        line, column = exc.lineno, exc.colno  # type: ignore[attr-defined,unused-ignore]
    elif match and match["line"]:
        line, column = int(match["line"]), int(match["col"])
    else:
        line, column = text.count("\n") + 1, None  # "at end of document"
    where = f" at column {column}" if column is not None else " at the end of the file"
    if what.startswith(("Cannot declare", "Cannot overwrite", "Duplicate", "Cannot redefine")):
        advice = "a key or table is given twice; keep one of them"
    elif what.startswith("Cannot mutate"):
        advice = "an inline table cannot be extended later; put all its keys inside its braces"
    elif what.startswith(("Unterminated", "Unclosed")) or what == r"Illegal character '\n'":
        advice = (
            "something opened there is never closed: a string must end on the line it starts "
            '(use triple quotes for longer ones), a list or inline table needs its "]" or "}"'
        )
    elif column is None:
        advice = "the file ends in the middle of something: close the last string, list or table"
    else:
        advice = 'check the quotes, brackets and "=" there; strings need quotes, numbers do not'
    what = what[:1].lower() + what[1:]
    return ConfigError(path, line, f"this is not valid TOML ({what}{where}); {advice}")


# ---------------------------------------------------------------------------------------------
# The top-level tables


_TABLES: Final = (
    "cluster",
    "ssh",
    "agent",
    "sites",
    "nodes",
    "health",
    "console",
    "scheduler",
    "pools",
    "store",
    "server",
    "roles",
    "data_classes",
    "audit",
    "budgets",
    "policies",
    "collector",
)
_TABLE_TITLES: Final = {
    "cluster": "[cluster]",
    "ssh": "[ssh]",
    "agent": "[agent]",
    "sites": "[[sites]]",
    "nodes": "[[nodes]]",
    "health": "[health]",
    "console": "[console]",
    "scheduler": "[scheduler]",
    "pools": "[[pools]]",
    "store": "[store]",
    "server": "[server]",
    "roles": "[roles]",
    "data_classes": "[[data_classes]]",
    "audit": "[audit]",
    "budgets": "[[budgets]]",
    "policies": "[policies]",
    "collector": "[collector]",
}


def _read_document(file: ConfigFile, document: dict[str, Any]) -> ClusterConfig:
    """One parsed document as a ClusterConfig, or the first ConfigError it meets.

    Tables are checked in a fixed order (top level, [cluster], [ssh], [agent], [[sites]],
    [[nodes]], [health]); within a table, the values of known keys first, then unknown keys,
    then what depends on several keys or on the disk (files that must exist).
    """
    _refuse_unknown_tables(file, document)
    root = Table(file, document, (), "the file")
    cluster = _section(file, root, "cluster", example='[cluster] with name = "onprem-a"')
    assert cluster is not None
    name = cluster.required_string("name", example='name = "onprem-a"')
    cluster.finish()
    ssh_table = _section(
        file, root, "ssh", example='[ssh] with user = "..." and known_hosts = "known_hosts"'
    )
    assert ssh_table is not None
    ssh = read_ssh(ssh_table)
    agent = read_agent(_section(file, root, "agent"))
    site_tables = _entries(file, root, "sites")
    sites = read_sites(site_tables)
    node_tables = _entries(file, root, "nodes")
    if not node_tables:
        raise ConfigError(
            file.path,
            None,
            "the file defines no nodes; add at least one [[nodes]] table with a node set, "
            'like names = "gpu[001-128]"',
        )
    nodes = read_nodes(node_tables, ssh, sites, sites_declared=bool(site_tables))
    health = read_health(_section(file, root, "health"))
    console = read_console(_section(file, root, "console"))
    scheduler = read_scheduler(_section(file, root, "scheduler"))
    pool_tables = _entries(file, root, "pools")
    pools = read_pools(pool_tables)
    store = read_store(_section(file, root, "store"))
    server = read_server(_section(file, root, "server"))
    roles = read_roles(_section(file, root, "roles"))
    data_classes = read_data_classes(_entries(file, root, "data_classes"))
    check_pool_classes(pools, data_classes, pool_tables)
    audit = read_audit(_section(file, root, "audit"))
    budgets = read_budgets(_entries(file, root, "budgets"), pools)
    policies = read_policies(_section(file, root, "policies"))
    collector = read_collector(_section(file, root, "collector"))
    return ClusterConfig(
        name=name,
        path=Path(os.path.abspath(file.path)),
        ssh=ssh,
        agent=agent,
        sites=sites,
        nodes=nodes,
        health=health,
        console=console,
        pools=pools,
        scheduler=scheduler,
        store=store,
        server=server,
        roles=roles,
        data_classes=data_classes,
        audit=audit,
        budgets=budgets,
        policies=policies,
        collector=collector,
    )


def _refuse_unknown_tables(file: ConfigFile, document: dict[str, Any]) -> None:
    takes = ", ".join(_TABLE_TITLES.values())
    for key, value in document.items():
        if key in _TABLES:
            continue
        close = difflib.get_close_matches(key, _TABLES, n=1, cutoff=0.6)
        advice = f"; did you mean {_TABLE_TITLES[close[0]]}?" if close else ""
        if isinstance(value, dict):
            what = f"unknown table [{key}]"
        elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            what = f"unknown table [[{key}]]"
        else:  # a key before the first table header: tables are what it could have meant
            what, advice = f'unknown key "{key}" outside any table', ""
        raise file.error((key,), what + (advice or f"; the file takes {takes}"))


def _section(
    file: ConfigFile, root: Table, key: str, *, example: str | None = None
) -> Table | None:
    """``[key]``: None when absent and optional (``example`` None)."""
    value = root.take(key)
    if value is None:
        if example is None:
            return None
        raise ConfigError(file.path, None, f"the file has no [{key}] table; add {example}")
    if isinstance(value, list):
        raise file.error(
            (key,), f"[{key}] must be one table, written [{key}], not a list or [[{key}]]"
        )
    if not isinstance(value, dict):
        raise file.error((key,), f"{key} must be a table, written [{key}] on a line of its own")
    return Table(file, value, (key,), f"[{key}]")


def _entries(file: ConfigFile, root: Table, key: str) -> list[Table]:
    """``[[key]]``: one table per entry, in file order."""
    value = root.take(key)
    if value is None:
        return []
    if isinstance(value, dict):
        raise file.error(
            (key,), f"{key} is a list of tables: write [[{key}]], with double brackets"
        )
    if not isinstance(value, list):
        raise file.error((key,), f"{key} must be a list of tables, written [[{key}]]")
    tables = []
    for index, entry in enumerate(value):
        if not isinstance(entry, dict):
            raise file.error(
                (key, index),
                f"entry {index + 1} of {key} is {kind_of(entry)}; each must be a table, "
                f"written [[{key}]]",
            )
        tables.append(Table(file, entry, (key, index), f"[[{key}]] #{index + 1}"))
    return tables
