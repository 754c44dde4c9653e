"""``set-pool-policy`` over the service's socket: ``RemotePlane`` and ``AttachedPlane`` change
the service's pool (as the socket peer, checked by the plane), and an attached front end's
``pools()`` shows it at once."""

from __future__ import annotations

import os
import pwd

import pytest

from tests.console.lifecycle.world import POOL
from tidectl.console.config.model import Role, RolesSettings
from tidectl.console.control.caller import Caller, Frontend
from tidectl.console.control.errors import Refused
from tidectl.console.control.roles import Roles
from tidectl.console.fleet import Fleet
from tidectl.console.server.attach import AttachedPlane
from tidectl.console.server.client import RemotePlane
from tidectl.console.server.service import Service

ME = pwd.getpwuid(os.getuid()).pw_name
ANY = Caller("ignored", Frontend.NOTEBOOK)  # the service reads the user from the socket


async def test_an_attached_panel_changes_the_services_pool(service: Service) -> None:
    plane = service.plane
    plane.fleet = Fleet(plane.config.nodes, plane.config.health)  # what the stream serves
    fleet = Fleet(plane.config.nodes, plane.config.health)
    async with AttachedPlane(service.path, fleet, frontend=Frontend.NOTEBOOK) as attached:
        changed = await attached.set_pool_policy(
            ANY, "gpu", min_nodes=1, max_nodes=4, burst_on_pressure=True
        )
        assert attached.pools() == (changed,)
    assert plane.pool("gpu") == changed
    assert (changed.policy.min_nodes, changed.max_nodes) == (1, 4)
    assert changed.policy.burst_on_pressure is True


async def test_a_refusal_comes_back_typed_and_changes_nothing(service: Service) -> None:
    plane = service.plane
    async with RemotePlane(service.path, Frontend.NOTEBOOK) as remote:
        with pytest.raises(Refused, match="at most 8 nodes"):
            await remote.set_pool_policy(ANY, "gpu", max_nodes=99)
        plane.roles = Roles(RolesSettings({Role.OPERATOR: (ME,)}), plane.config.path)
        with pytest.raises(Refused, match=f"{ME} may not set-pool-policy: that needs the admin"):
            await remote.set_pool_policy(ANY, "gpu", burst_on_pressure=True)
    assert plane.pool("gpu") == POOL
