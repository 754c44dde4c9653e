"""Data sovereignty through the ControlPlane, over a real store and the sim cloud: a burst into
a region its data class may not go to is refused before anything is written or launched; an
allowed one tags its instances with the class; with classes declared a burst must carry one;
an instance running where its class may no longer go is reported by reconcile, not killed."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest

from tests.console.lifecycle.world import CLUSTER, POOL, World
from tests.console.roles import TEST_ROLES
from tidectl.console.config.loader import parse_config
from tidectl.console.config.model import DataClass
from tidectl.console.control.caller import Caller, Frontend
from tidectl.console.control.errors import Refused
from tidectl.console.control.plane import ControlPlane
from tidectl.console.lifecycle.engine import Engine
from tidectl.console.providers.base import DATA_CLASS_TAG

ANA = Caller("ana", Frontend.CLI)
CLASSES = """
[[data_classes]]
name = "pii"
regions = ["eu-west-1"]
[[data_classes]]
name = "public"
regions = ["*"]
"""
EU = replace(POOL, name="eu", region="eu-west-1", data_class="pii")
US = replace(POOL, name="us", region="us-east-1")


def plane_with(world: World, tmp_path: Path, classes: str) -> ControlPlane:
    (tmp_path / "known_hosts").write_text("")
    text = (
        '[cluster]\nname = "c1"\n[ssh]\nuser = "t"\nknown_hosts = "known_hosts"\n'
        '[[nodes]]\nnames = "gpu[1-2]"\n' + TEST_ROLES + classes
    )
    config = replace(parse_config(text, tmp_path / "cluster.toml"), pools=(EU, US))
    engine = Engine(
        world.store,
        {EU.name: world.cloud, US.name: world.cloud},
        world.scheduler,
        {EU.name: EU, US.name: US},
        CLUSTER,
        health=lambda name: True,
        clock=world.clock,
        data_classes={c.name: c for c in config.data_classes},
    )
    return ControlPlane(config, world.store, engine, scheduler=world.scheduler)


@pytest.fixture
async def plane(world: World, tmp_path: Path) -> AsyncIterator[ControlPlane]:
    yield plane_with(world, tmp_path, CLASSES)


async def test_a_burst_into_a_region_its_class_may_not_go_to_is_refused_before_anything(
    plane: ControlPlane, world: World
) -> None:
    with pytest.raises(Refused) as refused:
        await plane.burst(ANA, "us", count=2, data_class="pii", request_id="r-pii")
    assert str(refused.value) == (
        "data of class pii may not be processed in us-east-1 (pool us): pii may go to "
        "eu-west-1 only; burst into a pool in one of those regions"
    )
    assert refused.value.request_id == "r-pii"
    assert world.store.intents() == [] and world.store.nodes() == []
    assert await world.instances() == []  # no provider call was made


async def test_an_allowed_burst_tags_its_instances_with_its_class(
    plane: ControlPlane, world: World
) -> None:
    eu = await plane.burst(ANA, "eu", count=1)  # the pool's class: pii, in eu-west-1
    us = await plane.burst(ANA, "us", count=1, data_class="public")
    assert eu.launched == us.launched == 1
    tags = {i.tags["tidectl:pool"]: i.tags.get(DATA_CLASS_TAG) for i in await world.instances()}
    assert tags == {"eu": "pii", "us": "public"}
    intent = world.store.intent(eu.intent_id or "")
    assert intent is not None and intent.detail["data_class"] == "pii"


async def test_with_classes_declared_a_burst_must_carry_a_known_one(
    plane: ControlPlane, world: World
) -> None:
    with pytest.raises(Refused, match="names no data class and pool us has none"):
        await plane.burst(ANA, "us", count=1)
    with pytest.raises(Refused, match="data class 'secret' is not defined"):
        await plane.burst(ANA, "eu", count=1, data_class="secret")
    assert await world.instances() == []


async def test_without_classes_any_burst_goes_and_naming_one_is_an_error(
    world: World, tmp_path: Path
) -> None:
    plane = plane_with(world, tmp_path, "")
    plane.config = replace(plane.config, pools=(replace(EU, data_class=None), US))
    assert (await plane.burst(ANA, "us", count=1)).launched == 1
    with pytest.raises(Refused, match="declares no"):
        await plane.burst(ANA, "us", count=1, data_class="pii")


async def test_an_instance_where_its_class_may_no_longer_go_is_reported(
    world: World, tmp_path: Path
) -> None:
    first = plane_with(world, tmp_path, CLASSES)
    result = await first.burst(ANA, "us", count=1, data_class="public")
    # "public" is narrowed to Europe in cluster.toml; the service restarts with it.
    narrowed = CLASSES.replace('regions = ["*"]', 'regions = ["eu-west-1", "eu-central-1"]')
    again = plane_with(world, tmp_path, narrowed)
    assert again.config.data_classes[1] == DataClass("public", ("eu-west-1", "eu-central-1"))
    passed = await again.reconcile_now()
    (node,) = result.nodes
    said = [r.sentence for r in passed.reports if r.node == node]
    assert len(said) == 1 and said[0].endswith(
        "runs in us-east-1, but data of class public may not be processed there "
        "(eu-west-1, eu-central-1 only): drain and terminate it"
    )
    record = world.store.node(node)
    assert record is not None and record.state.value != "terminating"  # reported, not killed
