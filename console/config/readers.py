"""What ``[ssh]``, ``[agent]``, ``[[sites]]`` and ``[health]`` mean: one reader per table.

Each reader asks its :class:`Table` for every key it knows (in a fixed order, so the first
problem in a table is the one reported), lets the table refuse the rest, then checks what
depends on several keys or on the disk (files that must exist). ``[[nodes]]``, the largest,
has its own module, :mod:`tidectl.console.config.nodes`.
"""

from __future__ import annotations

import dataclasses
import os
import re
import typing
from pathlib import Path
from typing import Any, Final

from tidectl.agents.probes.registry import PROBE_NAMES
from tidectl.console.config.errors import as_toml, did_you_mean, on_line
from tidectl.console.config.model import AgentSettings, Site, SshSettings
from tidectl.console.config.table import Table
from tidectl.console.thresholds import HealthThresholds

__all__ = ["DEFAULT_SITE", "login_name", "read_agent", "read_health", "read_sites", "read_ssh"]

#: The name the one implicit site gets when a file defines no ``[[sites]]``.
DEFAULT_SITE: Final = "default"

_CODE = re.compile(r"[a-z][a-z0-9_]*(\.[a-z0-9_]+)+", re.ASCII)

#: Bounds of [health] numbers beyond "not negative".
_HEALTH_BOUNDS: Final[dict[str, dict[str, float]]] = {
    "gpu_power_warn_fraction": {"above": 0.0},
    "stale_after_intervals": {"at_least": 1.0},
}


def _default(model: type, name: str) -> Any:
    """A model field's default: the model stays the one place defaults are written."""
    for field in dataclasses.fields(model):
        if field.name == name:
            return field.default
    raise AttributeError(f"{model.__name__} has no field {name}")


# ---------------------------------------------------------------------------------------------
# [ssh]


def read_ssh(table: Table) -> SshSettings:
    def seconds(key: str) -> float:
        return table.number(key, _default(SshSettings, key), above=0.0)

    user = login_name(table, "user", required=True)
    assert user is not None
    identity_text = table.string("identity_file", None, example='identity_file = "keys/id_ed25519"')
    known_hosts_text = table.required_string("known_hosts", example='known_hosts = "known_hosts"')
    jump_host = table.string("jump_host", None, example='jump_host = "ops@bastion.example:22"')
    port = table.integer("port", _default(SshSettings, "port"), 1, 65535)
    connect_timeout_s = seconds("connect_timeout_s")
    login_timeout_s = seconds("login_timeout_s")
    keepalive_interval_s = seconds("keepalive_interval_s")
    keepalive_count_max = table.integer(
        "keepalive_count_max", _default(SshSettings, "keepalive_count_max"), 1, 1000
    )
    fanout = table.integer("fanout", _default(SshSettings, "fanout"), 1, 4096)
    reconnect_min_s = seconds("reconnect_min_s")
    reconnect_max_s = seconds("reconnect_max_s")
    table.finish()
    if reconnect_max_s < reconnect_min_s:
        raise table.error(
            "reconnect_max_s" if "reconnect_max_s" in table.data else "reconnect_min_s",
            f"reconnect_max_s ({reconnect_max_s:g}) must be at least reconnect_min_s "
            f"({reconnect_min_s:g}) (in [ssh]): the backoff grows from the one to the other",
        )
    if jump_host is not None:
        _check_jump_host(table, jump_host)
    known_hosts = existing_file(
        table,
        "known_hosts",
        known_hosts_text,
        "create it with the nodes' host keys (for example ssh-keyscan -H NODE >> {path}, "
        "then compare ssh-keygen -lf {path} with fingerprints obtained out of band), "
        "or point known_hosts at an existing file",
    )
    identity_file = None
    if identity_text is not None:
        identity_file = existing_file(
            table,
            "identity_file",
            identity_text,
            "create a key with ssh-keygen -t ed25519 -f {path} and add {path}.pub to "
            "~/.ssh/authorized_keys on the nodes, or remove identity_file to use ssh-agent "
            "and your default keys",
        )
    assert port is not None and fanout is not None and keepalive_count_max is not None
    return SshSettings(
        user=user,
        identity_file=identity_file,
        known_hosts=known_hosts,
        jump_host=jump_host,
        port=port,
        connect_timeout_s=connect_timeout_s,
        login_timeout_s=login_timeout_s,
        keepalive_interval_s=keepalive_interval_s,
        keepalive_count_max=keepalive_count_max,
        fanout=fanout,
        reconnect_min_s=reconnect_min_s,
        reconnect_max_s=reconnect_max_s,
    )


def login_name(table: Table, key: str, *, required: bool) -> str | None:
    example = f'{key} = "tidectl"'
    user = (
        table.required_string(key, example=example)
        if required
        else table.string(key, None, example=example)
    )
    if user is not None and (any(char.isspace() for char in user) or "@" in user):
        raise table.error(
            key,
            f"{table.prefix}{key} = {as_toml(user)} is not a login name (in {table.title}); "
            "give only the name, without spaces or @host",
        )
    return user


def _check_jump_host(table: Table, jump_host: str) -> None:
    user, at, host_port = jump_host.rpartition("@")
    host, colon, port = host_port.partition(":")
    port_ok = not colon or (
        re.fullmatch(r"[0-9]{1,5}", port) is not None and 1 <= int(port) <= 65535
    )
    if (at and not user) or not host or not port_ok or any(c.isspace() for c in jump_host):
        raise table.error(
            "jump_host",
            f"jump_host = {as_toml(jump_host)} is not [user@]host[:port] (in [ssh]); "
            'write it like "ops@bastion.example:22" (the port is 1-65535)',
        )


def resolve_path(table: Table, key: str, text: str) -> Path:
    """``text`` as a path: ``~`` expanded, a relative one relative to the file's folder."""
    try:
        path = Path(text).expanduser()
    except RuntimeError:  # ~someone with no such user, or no home directory at all
        raise table.error(
            key, f"{key} = {as_toml(text)}: cannot expand ~ here; write the full path"
        ) from None
    return path if path.is_absolute() else table.file.folder / path


def existing_file(table: Table, key: str, text: str, how_to_fix: str) -> Path:
    """``text`` as a path (see :func:`resolve_path`) that must exist."""
    path = resolve_path(table, key, text)
    try:
        is_dir, is_file = path.is_dir(), path.is_file()
    except OSError as exc:  # a folder on the way we may not enter, a name too long
        raise table.error(
            key, f"{key} {path} cannot be looked at ({exc.strerror}); check the path"
        ) from None
    if is_dir:
        raise table.error(key, f"{key} {path} is a folder; point {key} at a file")
    if not is_file:
        fix = how_to_fix.format(path=path)
        raise table.error(key, f"{key} {path} does not exist; {fix}")
    if not os.access(path, os.R_OK):
        raise table.error(
            key, f"{key} {path} cannot be read by this user; check its owner and permissions"
        )
    return path


# ---------------------------------------------------------------------------------------------
# [agent]


def read_agent(table: Table | None) -> AgentSettings:
    if table is None:
        return AgentSettings()
    interval_s = table.number(
        "interval_s", _default(AgentSettings, "interval_s"), at_least=0.1, at_most=3600.0
    )
    python = table.string("python", _default(AgentSettings, "python"), example='python = "python3"')
    remote_dir = table.string(
        "remote_dir",
        _default(AgentSettings, "remote_dir"),
        example='remote_dir = ".cache/tidectl"',
    )
    probes_text = table.string(
        "probes", _default(AgentSettings, "probes"), example='probes = "all"'
    )
    table.finish()
    assert python is not None and remote_dir is not None and probes_text is not None
    return AgentSettings(
        interval_s=interval_s,
        python=python,
        remote_dir=remote_dir,
        probes=_probes(table, probes_text),
    )


def _probes(table: Table, text: str) -> str:
    """ "all", or the named probes in record order ("ib,gpu" -> "gpu,ib")."""
    if text.strip() == "all":
        return "all"
    wanted = [part.strip() for part in text.split(",")]
    for name in wanted:
        if name not in PROBE_NAMES:
            what = f'unknown probe "{name}"' if name else "an empty probe name"
            raise table.error(
                "probes",
                f'probes has {what} (in [agent]); write "all" or some of '
                f"{','.join(PROBE_NAMES)}, separated by commas{did_you_mean(name, PROBE_NAMES)}",
            )
    return ",".join(name for name in PROBE_NAMES if name in wanted)


# ---------------------------------------------------------------------------------------------
# [[sites]]


def read_sites(tables: list[Table]) -> tuple[Site, ...]:
    """The sites in file order, names unique; one implicit :data:`DEFAULT_SITE` if none."""
    if not tables:
        return (Site(DEFAULT_SITE),)
    sites: list[Site] = []
    for table in tables:
        name = table.required_string("name", example='name = "dc1"')
        description = table.string("description", "", example='description = "..."', prose=True)
        table.finish()
        for index, earlier in enumerate(sites):
            if earlier.name == name:
                first = table.file.line_of(("sites", index, "name"))
                raise table.error(
                    "name",
                    f'site "{name}" is defined twice (first in [[sites]] #{index + 1}'
                    f"{on_line(first)}); give each site its own name",
                )
        assert description is not None
        sites.append(Site(name, description))
    return tuple(sites)


# ---------------------------------------------------------------------------------------------
# [health]


def read_health(table: Table | None) -> HealthThresholds:
    if table is None:
        return HealthThresholds()
    types = typing.get_type_hints(HealthThresholds)
    defaults = HealthThresholds()
    values: dict[str, Any] = {}
    for field in dataclasses.fields(HealthThresholds):
        name, kind = field.name, types[field.name]
        given = name in table.data
        if kind is float:
            bounds = _HEALTH_BOUNDS.get(name, {"at_least": 0.0})
            if name.endswith("_pct"):
                bounds = {**bounds, "at_most": 100.0}
            value: Any = table.number(name, getattr(defaults, name), **bounds)
        elif kind == tuple[int, ...]:
            items = table.list_of(name, int)
            for index, code in enumerate(items or ()):
                if code < 0:
                    raise table.file.error(
                        ("health", name, index),
                        f"{name} has {code}, which is not an XID (in [health]); XIDs are positive",
                    )
            value = tuple(items or ())
        elif kind == tuple[str, ...]:
            items = table.list_of(name, str)
            for index, code in enumerate(items or ()):
                if _CODE.fullmatch(code) is None:
                    raise table.file.error(
                        ("health", name, index),
                        f"{name} has {as_toml(code)}, which is not a finding code "
                        '(in [health]); codes look like "gpu.xid" or "ib.port_down"',
                    )
            value = tuple(items or ())
        else:  # a new field the file format does not know how to write yet
            raise TypeError(f"HealthThresholds.{name}: no TOML form for {kind}")
        if given:
            values[name] = value
    table.finish()
    health = HealthThresholds(**values)
    _check_health(table, health)
    return health


def _check_health(table: Table, health: HealthThresholds) -> None:
    for warn in (field.name for field in dataclasses.fields(health)):
        critical = warn.replace("_warn", "_critical")
        if "_warn" not in warn or not hasattr(health, critical):
            continue
        low, high = getattr(health, warn), getattr(health, critical)
        if low < high:
            continue
        default = {name: "" if name in table.data else ", the default" for name in (warn, critical)}
        raise table.error(
            warn if warn in table.data else critical,
            f"{warn} ({low:g}{default[warn]}) must be below {critical} "
            f"({high:g}{default[critical]}) (in [health]): a warning comes before the "
            "critical state",
        )
    both = sorted(set(health.xid_critical_codes) & set(health.xid_ignored_codes))
    if both:
        raise table.error(
            "xid_ignored_codes" if "xid_ignored_codes" in table.data else "xid_critical_codes",
            f"XID {', '.join(map(str, both))} is both in xid_critical_codes and in "
            "xid_ignored_codes (in [health]); remove it from one of them",
        )
