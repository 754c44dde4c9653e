"""``[roles]``: who may see, operate and administer the cluster.

    [roles]
    admin = ["alice", "@hpc-admins"]       # login names, and @groups (their members)
    operator = ["bob", "@ml-ops", "slurm"] # Slurm's SlurmUser runs tidectl slurm ...
    viewer = ["@staff"]

An identity has the strongest role any entry gives it; one with none can only read the help.
Without a ``[roles]`` table, the owner of cluster.toml and root are admins and nobody else has
a role (docs/config.md).
"""

from __future__ import annotations

import re
from typing import Final

from tidectl.console.config.model import Role, RolesSettings
from tidectl.console.config.table import Table

__all__ = ["read_roles"]

#: A login or group name (POSIX portable names, as useradd takes them).
_NAME: Final = re.compile(r"@?[A-Za-z_][A-Za-z0-9_.-]{0,31}\$?")


def read_roles(table: Table | None) -> RolesSettings | None:
    if table is None:
        return None
    members: dict[Role, tuple[str, ...]] = {}
    for role in Role:
        names = table.list_of(role.word, str)
        if names is None:
            continue
        for index, name in enumerate(names):
            if _NAME.fullmatch(name) is None:
                raise table.file.error(
                    (*table.where, role.word, index),
                    f"[roles] {role.word} item {index + 1}, {name!r}, is not a login name or an "
                    '@group: write "alice" for a user, "@hpc-admins" for a group\'s members',
                )
        members[role] = tuple(dict.fromkeys(names))
    table.finish()
    return RolesSettings(members)
