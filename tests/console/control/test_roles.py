"""Roles, checked in the ControlPlane for every action whatever the front end: the whole matrix
of actions by roles against the core API (not a UI), deny by default, the strongest role an
identity's entries give, groups, and the default without a ``[roles]`` table."""

from __future__ import annotations

import itertools
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from pathlib import Path

import pytest

from tests.console.lifecycle.world import POOL, World
from tidectl.console.config.loader import parse_config
from tidectl.console.config.model import Role, RolesSettings
from tidectl.console.control.caller import Caller, Frontend
from tidectl.console.control.errors import Refused
from tidectl.console.control.plane import ControlPlane
from tidectl.console.control.roles import Roles

ROLES = """
[roles]
admin = ["ada"]
operator = ["opal", "ada"]
viewer = ["vic"]
"""
#: Who may call what, written out here, independently of the code's table.
MAY: dict[str, set[str]] = {
    "burst": {"ada", "opal"},
    "drain": {"ada", "opal"},
    "resume": {"ada", "opal"},
    "cancel": {"ada", "opal"},
    "slurm_resume": {"ada", "opal"},
    "terminate": {"ada"},
    "slurm_suspend": {"ada"},
    "slurm_resume_failed": {"ada"},
    "accept_host_key": {"ada"},
    "set_pool_policy": {"ada"},
}
PEOPLE = ("ada", "opal", "vic", "nobody")
Call = Callable[[ControlPlane, Caller], Awaitable[object]]
CALLS: dict[str, Call] = {
    "burst": lambda p, c: p.burst(c, "gpu", count=1),
    "drain": lambda p, c: p.drain(c, "gpu-x", reason="r"),
    "resume": lambda p, c: p.resume(c, "gpu-x"),
    "cancel": lambda p, c: p.cancel(c, "no-such-intent"),
    "slurm_resume": lambda p, c: p.slurm_resume(c, "cloud9"),
    "terminate": lambda p, c: p.terminate(c, "gpu-x", reason="r"),
    "slurm_suspend": lambda p, c: p.slurm_suspend(c, "cloud9"),
    "slurm_resume_failed": lambda p, c: p.slurm_resume_failed(c, "cloud9"),
    "accept_host_key": lambda p, c: p.accept_host_key(c, "gpu1", fingerprint="SHA256:x"),
    "set_pool_policy": lambda p, c: p.set_pool_policy(c, "gpu", burst_on_pressure=True),
}


@pytest.fixture
async def plane(world: World, tmp_path: Path) -> AsyncIterator[ControlPlane]:
    (tmp_path / "known_hosts").write_text("")
    text = (
        '[cluster]\nname = "c1"\n[ssh]\nuser = "t"\nknown_hosts = "known_hosts"\n'
        '[[nodes]]\nnames = "gpu[1-2]"\n' + ROLES
    )
    config = replace(parse_config(text, tmp_path / "cluster.toml"), pools=(POOL,))
    yield ControlPlane(config, world.store, world.engine(), scheduler=world.scheduler)


@pytest.mark.parametrize(("action", "who"), list(itertools.product(CALLS, PEOPLE)), ids=str)
async def test_every_action_against_every_role(
    plane: ControlPlane, world: World, action: str, who: str
) -> None:
    caller = Caller(who, Frontend.NOTEBOOK)
    before = len(world.store.intents())
    try:
        await CALLS[action](plane, caller)
    except Refused as error:
        denied = " may not " in str(error)
        if denied:
            assert len(world.store.intents()) == before, "a denied action wrote an intent"
    else:
        denied = False
    assert denied is (who not in MAY[action]), (action, who)


def test_the_denial_says_who_what_which_role_and_what_to_do(tmp_path: Path) -> None:
    config = tmp_path / "cluster.toml"
    roles = Roles(RolesSettings({Role.VIEWER: ("vic",)}), config)
    access = roles.check("vic", "terminate")
    assert not access.allowed
    assert access.sentence == (
        "vic may not terminate: that needs the admin role, and vic has the viewer role "
        f"([roles] viewer lists vic); an admin adds vic to [roles] in {config}"
    )
    assert roles.check("vic", "read").allowed
    nobody = roles.check("mallory", "read")
    assert not nobody.allowed and "mallory may not read the cluster" in nobody.sentence
    assert "has no role (mallory is in no [roles] entry)" in nobody.sentence


def test_groups_give_roles_and_the_strongest_entry_wins(tmp_path: Path) -> None:
    members = {Role.ADMIN: ("@hpc-admins",), Role.OPERATOR: ("@ml-ops", "bo"), Role.VIEWER: ("bo",)}
    groups = {"ana": frozenset({"ml-ops", "staff"}), "cy": frozenset({"hpc-admins"})}
    roles = Roles(
        RolesSettings(members),
        tmp_path / "cluster.toml",
        groups=lambda user: groups.get(user, frozenset()),
    )
    assert roles.role_of("ana") == (Role.OPERATOR, "[roles] operator lists @ml-ops")
    assert roles.role_of("bo") == (Role.OPERATOR, "[roles] operator lists bo")
    assert roles.role_of("cy")[0] is Role.ADMIN
    assert roles.role_of("dee")[0] is None
    assert roles.check("ana", "burst").allowed and not roles.check("ana", "terminate").allowed


def test_without_roles_the_files_owner_and_root_are_admins_and_nobody_else(
    tmp_path: Path,
) -> None:
    config = tmp_path / "cluster.toml"
    config.write_text("")
    os.chown(config, 65534, -1)  # nobody's file (the tests run as root)
    roles = Roles(None, config)
    assert roles.role_of("nobody") == (
        Role.ADMIN,
        "no [roles] table: the owner of cluster.toml is admin",
    )
    assert roles.role_of("root")[0] is Role.ADMIN
    assert roles.role_of("daemon") == (
        None,
        "no [roles] table: only the file's owner and root have a role",
    )
    assert not roles.check("daemon", "read").allowed
