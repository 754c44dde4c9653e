"""Who may do what: every action's role, and an identity's role from ``[roles]``.

Checked once, in ``ControlPlane``, for every action whatever the front end (and by the service
for its reads); deny by default: an identity with no role may do nothing. The table below is
the whole policy, and a test walks every action against every role.

An identity is a login name (the console's and CLI's user, or the service's socket peer) and
the groups the system gives it. Without ``[roles]`` in cluster.toml, the owner of the file and
root are admins and nobody else has a role: a fresh install works for the one who set it up
and for no one else.
"""

from __future__ import annotations

import grp
import os
import pwd
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Final

from tidectl.console.config.model import Role, RolesSettings

__all__ = ["ACTION_ROLES", "POLICY_ACTIONS", "POLICY_ACTOR", "Access", "Roles", "groups_of"]

#: The least role each action needs. Reads (the fleet, nodes, waits, prices) need a viewer.
ACTION_ROLES: Final[Mapping[str, Role]] = MappingProxyType(
    {
        "read": Role.VIEWER,
        "burst": Role.OPERATOR,
        "drain": Role.OPERATOR,
        "resume": Role.OPERATOR,
        "cancel": Role.OPERATOR,  # takes back a burst's nodes that never joined
        "run": Role.OPERATOR,  # tidectl run: a command on nodes over SSH
        "slurm-resume": Role.OPERATOR,  # Slurm's power saving launching CLOUD nodes
        "terminate": Role.ADMIN,
        # Trusting a machine with the fleet's commands: in the console only, after a person
        # compared its fingerprint (control/host_keys.py).
        "accept-host-key": Role.ADMIN,
        "slurm-powered-down": Role.ADMIN,  # Slurm's SuspendProgram ends instances
        "slurm-never-registered": Role.ADMIN,  # Slurm's ResumeFailProgram ends instances
        # Changing policies: a pool's min/max and bursting on pressure at run time (the
        # notebook's Adaptive mode; control/pool_policy.py).
        "set-pool-policy": Role.ADMIN,
    }
)


#: The policy loop's name in the audit log and the nodes' history, and what it may do when
#: ``[policies]`` is enabled (``console/policy``): the cluster's own config allows it.
POLICY_ACTOR: Final = "policy"
POLICY_ACTIONS: Final = frozenset({"burst", "drain", "terminate"})


@dataclass(frozen=True, slots=True)
class Access:
    """A decision: allowed or not, with the rule that decided (for the audit record) and,
    when denied, the sentence that says why and what to do."""

    allowed: bool
    rule: str
    sentence: str = ""


def groups_of(user: str) -> frozenset[str]:
    """The user's groups as the system knows them (primary and supplementary); none for a
    name the system does not know."""
    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        return frozenset()
    names = set()
    for gid in os.getgrouplist(user, entry.pw_gid):
        try:
            names.add(grp.getgrgid(gid).gr_name)
        except KeyError:
            continue
    return frozenset(names)


class Roles:
    """``settings`` (None: no ``[roles]`` table, see the module's docstring), the file they
    came from, and how to find a user's groups (the system's, or a test's)."""

    def __init__(
        self,
        settings: RolesSettings | None,
        config_path: Path,
        *,
        groups: Callable[[str], frozenset[str]] = groups_of,
    ) -> None:
        self.settings = settings
        self.config_path = config_path
        self._groups = groups

    def role_of(self, user: str) -> tuple[Role | None, str]:
        """The user's strongest role and the rule that gives it (None: no role)."""
        if self.settings is None:
            owner = _owner(self.config_path)
            if user in ("root", owner):
                who = "root" if user == "root" else f"the owner of {self.config_path.name}"
                return Role.ADMIN, f"no [roles] table: {who} is admin"
            return None, "no [roles] table: only the file's owner and root have a role"
        groups = self._groups(user)
        best: tuple[Role | None, str] = (None, f"{user} is in no [roles] entry")
        for role in sorted(self.settings.members, reverse=True):
            for entry in self.settings.members[role]:
                matched = entry == user or (entry.startswith("@") and entry[1:] in groups)
                if matched and (best[0] is None or role > best[0]):
                    best = (role, f"[roles] {role.word} lists {entry}")
        return best

    def check(self, user: str, action: str) -> Access:
        """May ``user`` do ``action`` (a key of ``ACTION_ROLES``)?"""
        needed = ACTION_ROLES[action]
        role, rule = self.role_of(user)
        if role is not None and role >= needed:
            return Access(True, rule)
        has = f"has the {role.word} role ({rule})" if role else f"has no role ({rule})"
        what = "read the cluster" if action == "read" else action
        return Access(
            False,
            rule,
            f"{user} may not {what}: that needs the {needed.word} role, and {user} {has}; "
            f"an admin adds {user} to [roles] in {self.config_path}",
        )


def _owner(path: Path) -> str | None:
    try:
        return pwd.getpwuid(path.stat().st_uid).pw_name
    except (OSError, KeyError):
        return None
